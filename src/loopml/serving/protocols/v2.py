"""The Open Inference Protocol v2 (KServe v2 / Triton) over REST: pure encode and decode.

Requests and responses are JSON, or JSON followed by raw tensors (the *binary tensor
extension*): the ``Inference-Header-Content-Length`` header gives the JSON's length, each
binary input carries ``parameters.binary_data_size``, and the tensors follow the JSON in
input order. Outputs are sent binary when the request asks (``binary_data_output`` for all,
or ``parameters.binary_data`` per requested output). Tensors are row-major; BYTES elements
are each a 4-byte little-endian length followed by the bytes.

How a model maps to v2 inputs (its metadata says the same):

* a **tensor** signature: one input named ``input`` with the signature's datatype and shape;
* a **columns** signature (a DataFrame): one 1-D input per column (``[-1]``, or ``[-1, 1]``),
  named and typed like the column; when every column has one numeric dtype, a single 2-D
  input ``[-1, n_columns]`` (any name that is not a column) is accepted as well.

Outputs: a DataFrame prediction gives one output per column; anything else one output
named ``predictions``.

>>> import numpy as np
>>> body, headers = encode_response("m", "1", "r1", [("predictions", np.array([1, 0]))], None, True)
>>> headers["inference-header-content-length"], body[-16:] == np.array([1, 0]).tobytes()
('151', True)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from loopml.errors import InvalidInput
from loopml.models.signature import Signature
from loopml.serving.validation import V2_TO_NUMPY, InputSpec, v2_datatype

HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class V2Request:
    """A decoded inference request: named arrays, plus what the caller wants back."""

    id: str | None
    inputs: list[tuple[str, np.ndarray[Any, Any]]]
    outputs: list[RequestedOutput] | None
    binary_output: bool


def decode_request(body: bytes, header_length: int | None) -> V2Request:
    """Parse a v2 inference request (JSON, or JSON + binary tensors)."""
    head = body if header_length is None else body[:header_length]
    if header_length is not None and not 0 < header_length <= len(body):
        raise _bad("Inference-Header-Content-Length", f"is {header_length} for a body of {len(body)} bytes")
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError:
        raise _bad("body", "is not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise InvalidInput(
            "a v2 inference request is an object with a non-empty 'inputs' list",
            details={"field": "inputs", "expected": "list of {name, shape, datatype, data}"},
        )
    offset = 0 if header_length is None else header_length
    inputs = []
    for raw in doc["inputs"]:
        name, arr, offset = _decode_input(raw, body, offset, header_length is not None)
        inputs.append((name, arr))
    if header_length is not None and offset != len(body):
        raise _bad("body", f"has {len(body) - offset} bytes beyond the declared binary inputs")
    params = doc.get("parameters") or {}
    outputs = None
    if isinstance(doc.get("outputs"), list):
        outputs = [_requested(o, bool(params.get("binary_data_output", False))) for o in doc["outputs"]]
    rid = doc.get("id")
    return V2Request(
        None if rid is None else str(rid), inputs, outputs, bool(params.get("binary_data_output", False))
    )


def _requested(raw: Any, default: bool) -> RequestedOutput:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise _bad("outputs", "entries must be objects with a 'name'")
    params = raw.get("parameters") or {}
    return RequestedOutput(raw["name"], bool(params.get("binary_data", default)))


def _decode_input(raw: Any, body: bytes, offset: int, binary_ok: bool) -> tuple[str, Any, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise _bad("inputs", "entries must be objects with 'name', 'shape', 'datatype' and 'data'")
    name = raw["name"]
    datatype = raw.get("datatype")
    dtype = V2_TO_NUMPY.get(datatype) if isinstance(datatype, str) else None
    if dtype is None or not isinstance(datatype, str):
        raise InvalidInput(
            f"input {name!r} has datatype {str(datatype)[:20]!r}; use one of {', '.join(V2_TO_NUMPY)}",
            details={"field": name, "expected": list(V2_TO_NUMPY)},
        )
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise _bad(name, "needs 'shape', a list of non-negative integers", "shape")
    count = int(np.prod(shape)) if shape else 1
    size = (raw.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not binary_ok or not isinstance(size, int) or size < 0 or offset + size > len(body):
            raise _bad(name, "declares binary_data_size beyond the request body", "binary_data_size")
        chunk = body[offset : offset + size]
        arr = _from_bytes(name, chunk, dtype, datatype, count)
        offset += size
    else:
        arr = _from_json(name, raw.get("data"), dtype, datatype, count)
    return name, arr.reshape(shape), offset


def _from_bytes(name: str, chunk: bytes, dtype: np.dtype[Any], datatype: str, count: int) -> Any:
    if datatype == "BYTES":
        items = deserialize_bytes(chunk)
        if len(items) != count:
            raise _bad(name, f"holds {len(items)} BYTES elements, its shape says {count}", "shape")
        return np.array(items, dtype=object)
    if datatype == "BOOL":
        dtype = np.dtype(np.uint8)
    if len(chunk) != count * dtype.itemsize:
        raise _bad(
            name, f"has {len(chunk)} bytes; its shape and {datatype} need {count * dtype.itemsize}", "shape"
        )
    arr = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
    return arr.astype(np.bool_) if datatype == "BOOL" else arr


def _from_json(name: str, data: Any, dtype: np.dtype[Any], datatype: str, count: int) -> Any:
    if not isinstance(data, list):
        raise _bad(name, "has no 'data' list (and no binary_data_size)", "data")
    try:
        arr = np.asarray(data, dtype=object if datatype == "BYTES" else None)
    except ValueError:
        raise _bad(name, "has ragged nested 'data'", "shape") from None
    arr = arr.reshape(-1) if arr.ndim != 1 else arr
    if arr.size != count:
        raise _bad(name, f"has {arr.size} values; its shape says {count}", "shape")
    if datatype == "BYTES":
        return arr
    kind = arr.dtype.kind
    compatible = (
        kind == dtype.kind or (dtype.kind == "f" and kind in "biu") or (dtype.kind in "iu" and kind in "iu")
    )
    if arr.size and not compatible:
        raise InvalidInput(
            f"input {name!r} declares {datatype} but its data holds other values",
            details={"field": name, "expected": datatype},
        )
    return arr.astype(dtype, copy=False)


def deserialize_bytes(chunk: bytes) -> list[bytes]:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes."""
    out, offset, end = [], 0, len(chunk)
    while offset < end:
        if offset + 4 > end:
            raise _bad("BYTES", "element length is truncated", "data")
        (n,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + n > end:
            raise _bad("BYTES", "element is truncated", "data")
        out.append(bytes(chunk[offset : offset + n]))
        offset += n
    return out


def serialize_bytes(arr: np.ndarray[Any, Any]) -> bytes:
    parts = []
    for item in arr.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def to_model_input(spec: InputSpec, inputs: list[tuple[str, np.ndarray[Any, Any]]]) -> Any:
    """The decoded tensors as the model's input, checked against its signature."""
    if spec.kind == "columns":
        if len(inputs) == 1 and inputs[0][0] not in spec.names and inputs[0][1].ndim == 2:
            return spec.from_tensor(inputs[0][1], inputs[0][0])
        cols = {n: (a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a) for n, a in inputs}
        if len(cols) != len(inputs):
            raise _bad(inputs[0][0], "is given twice", "inputs")
        return spec.from_columns(cols)
    if len(inputs) != 1:
        raise InvalidInput(
            f"the model takes one input tensor {spec.names or ['input']}, got {len(inputs)}",
            details={"field": "inputs", "expected": spec.names or ["input"]},
        )
    name, arr = inputs[0]
    if spec.kind == "tensor" and name != spec.names[0]:
        raise InvalidInput(
            f"unexpected input {name!r}; the model's input is named {spec.names[0]!r}",
            details={"field": name, "expected": spec.names[0]},
        )
    return spec.from_tensor(arr, name)


def encode_response(
    model_name: str,
    version: str,
    request_id: str,
    outputs: Sequence[tuple[str, np.ndarray[Any, Any]]],
    requested: list[RequestedOutput] | None,
    binary_default: bool,
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (``inference-header-content-length`` when binary)."""
    wanted = _select(outputs, requested, binary_default)
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for (name, arr), binary in wanted:
        datatype = v2_datatype(arr.dtype if arr.dtype.kind != "O" else None)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            blob = _to_bytes(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _to_json(arr, datatype)
        entries.append(entry)
    doc = {"model_name": model_name, "model_version": version, "id": request_id, "outputs": entries}
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
    return b"".join([head, *blobs]), headers


def _select(
    outputs: Sequence[tuple[str, np.ndarray[Any, Any]]],
    requested: list[RequestedOutput] | None,
    binary_default: bool,
) -> list[tuple[tuple[str, np.ndarray[Any, Any]], bool]]:
    if requested is None:
        return [(o, binary_default) for o in outputs]
    by_name = {name: (name, arr) for name, arr in outputs}
    chosen = []
    for r in requested:
        if r.name not in by_name:
            raise InvalidInput(
                f"unknown output {r.name!r}; the model's outputs are {list(by_name)}",
                details={"field": "outputs", "expected": list(by_name)},
            )
        chosen.append((by_name[r.name], r.binary))
    return chosen


def _to_bytes(arr: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        return serialize_bytes(arr)
    if datatype == "BOOL":
        return np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _to_json(arr: np.ndarray[Any, Any], datatype: str) -> Any:
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat]
    return np.ascontiguousarray(flat)


def tensor_metadata(name: str, dtype: np.dtype[Any] | None, shape: Sequence[int]) -> dict[str, Any]:
    return {"name": name, "datatype": v2_datatype(dtype), "shape": list(shape)}


def model_metadata(
    name: str, versions: list[str], spec: InputSpec, signature: Signature | None
) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs from the signature (see the module docstring)."""
    inputs = [tensor_metadata(f.name, f.dtype, f.shape) for f in spec.fields]
    outputs: list[dict[str, Any]] = []
    out = signature.outputs if signature is not None else None
    if out is not None and out.kind == "columns":
        outputs = [tensor_metadata(c.name, _dtype(c.dtype), [-1]) for c in out.columns]
    elif out is not None:
        outputs = [tensor_metadata("predictions", _dtype(out.dtype), out.shape)]
    return {"name": name, "versions": versions, "platform": "loopml", "inputs": inputs, "outputs": outputs}


def _dtype(text: str) -> np.dtype[Any] | None:
    try:
        return np.dtype(text)
    except TypeError:
        return None


def server_metadata(version: str) -> dict[str, Any]:
    """``GET /v2``."""
    return {"name": "loopml", "version": version, "extensions": ["binary_tensor_data"]}


def _bad(field: str, problem: str, expected: str = "body") -> InvalidInput:
    return InvalidInput(f"{field} {problem}", details={"field": field, "expected": expected})
