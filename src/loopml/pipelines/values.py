"""Values passed between steps, stored in the content-addressed blob store.

A stored value is described by a *ref* (a small JSON dict) whose ``digest`` is what cache
keys use. Supported: JSON values (None, bool, numbers, strings, lists and dicts of them),
pandas DataFrames and Arrow tables (Parquet), NumPy arrays (``.npy``, no pickle), dataset
versions (by reference), models of the safe flavors (scikit-learn via skops, XGBoost,
LightGBM, ONNX; files and a manifest), and lists of stored values (a fan-out's result).
Anything else is refused with the step's name, before a downstream step could see it.

>>> import tempfile
>>> from loopml.store.blobs import open_blob_store
>>> blobs = open_blob_store(tempfile.mkdtemp())
>>> ref = store_value(blobs, {"a": 1})
>>> ref["kind"], load_value(blobs, ref)
('json', {'a': 1})
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path
from typing import Any

import orjson

from loopml.errors import IntegrityError, InvalidInput, NotFound
from loopml.store.blobs import BlobStore

Ref = dict[str, Any]
_MODEL_FLAVORS = ("sklearn", "xgboost", "lightgbm", "onnx")


def json_bytes(value: Any) -> bytes:
    """Canonical JSON (sorted keys), the form hashed and stored."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _put(blobs: BlobStore, data: bytes) -> tuple[str, int]:
    return blobs.put_hashed(data, hashlib.sha256(data).hexdigest())


def store_value(blobs: BlobStore, value: Any, *, what: str = "value") -> Ref:
    """Store ``value`` and return its ref; ``what`` names it in errors (e.g. "output of step x")."""
    kind = type(value).__module__.split(".", 1)[0]
    if kind == "pandas" and type(value).__name__ == "DataFrame":
        return _store_table(blobs, value, "dataframe")
    if kind == "pyarrow" and type(value).__name__ == "Table":
        return _store_table(blobs, value, "arrow")
    if kind == "numpy" and type(value).__name__ == "ndarray":
        return _store_array(blobs, value, what)
    if type(value).__name__ == "DatasetVersion" and kind == "loopml":
        digest, size = _put(blobs, json_bytes(value.to_dict()))
        return {"kind": "dataset", "digest": digest, "size": size, "ref": value.ref}
    if type(value).__name__ == "ModelVersion" and type(value).__module__.startswith("loopml.registry"):
        doc = {"name": value.name, "version": value.version, "digest": value.digest, "run_id": value.run_id}
        digest, size = _put(blobs, json_bytes(doc))
        return {
            "kind": "model_version",
            "digest": digest,
            "size": size,
            "ref": f"{value.name}/{value.version}",
        }
    if value is None or isinstance(value, bool | int | float | str | list | dict | tuple):
        try:
            data = json_bytes(value)
        except TypeError as exc:
            raise _unsupported(value, what, str(exc)) from None
        digest, size = _put(blobs, data)
        return {"kind": "json", "digest": digest, "size": size}
    return _store_model(blobs, value, what)


def _unsupported(value: Any, what: str, why: str = "") -> InvalidInput:
    reason = f" ({why})" if why else ""
    return InvalidInput(
        f"{what} is a {type(value).__module__}.{type(value).__qualname__}{reason}: return JSON values, "
        "DataFrames, Arrow tables, NumPy arrays, dataset or model versions, or models "
        "(scikit-learn, XGBoost, LightGBM, ONNX)",
        details={"type": type(value).__qualname__},
    )


def _store_table(blobs: BlobStore, value: Any, kind: str) -> Ref:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(value) if kind == "dataframe" else value
    sink = io.BytesIO()
    pq.write_table(table, sink)
    digest, size = _put(blobs, sink.getbuffer().tobytes())
    return {"kind": kind, "digest": digest, "size": size, "rows": table.num_rows}


def _store_array(blobs: BlobStore, value: Any, what: str) -> Ref:
    import numpy as np

    sink = io.BytesIO()
    try:
        np.save(sink, value, allow_pickle=False)
    except ValueError as exc:
        raise _unsupported(value, what, str(exc)) from None
    digest, size = _put(blobs, sink.getvalue())
    return {"kind": "numpy", "digest": digest, "size": size, "shape": list(value.shape)}


def _store_model(blobs: BlobStore, value: Any, what: str) -> Ref:
    from loopml.models.flavors import get_flavor
    from loopml.models.manifest import build_files

    for name in _MODEL_FLAVORS:
        flavor = get_flavor(name)
        if flavor.matches(value):
            break
    else:
        raise _unsupported(value, what)
    with tempfile.TemporaryDirectory(prefix="loopml-step-model-") as tmp:
        saved = flavor.save(value, Path(tmp), trust_pickle=False)
        files = build_files(Path(tmp))
        for rel in files:
            with open(Path(tmp) / rel, "rb") as fh:
                blobs.put(fh)
    manifest = {"flavor": flavor.name, "loader": saved.loader, "options": saved.options, "files": files}
    digest, size = _put(blobs, json_bytes(manifest))
    cls = type(value)
    return {"kind": "model", "digest": digest, "size": size, "flavor": flavor.name,
            "model_class": f"{cls.__module__}.{cls.__qualname__}"}  # fmt: skip


def list_ref(blobs: BlobStore, items: list[Ref]) -> Ref:
    """The ref of a list of stored values (its digest covers every item's digest, in order)."""
    digest, size = _put(blobs, json_bytes([i["digest"] for i in items]))
    return {"kind": "list", "digest": digest, "size": size, "items": items}


def load_value(blobs: BlobStore, ref: Ref) -> Any:
    """The value a ref describes, read back and verified against its digest."""
    kind = ref["kind"]
    if kind == "list":
        return [load_value(blobs, item) for item in ref["items"]]
    if kind == "model":
        return _load_model(blobs, ref)
    data = blobs.read_bytes(ref["digest"])
    if kind == "json":
        return orjson.loads(data)
    if kind in ("dataframe", "arrow"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        return table.to_pandas() if kind == "dataframe" else table
    if kind == "numpy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if kind == "dataset":
        from loopml.data.records import DatasetVersion

        return DatasetVersion.from_dict(orjson.loads(data))
    if kind == "model_version":
        import loopml.registry

        doc = orjson.loads(data)
        return loopml.registry.service().get_model_version(doc["name"], doc["version"])
    raise IntegrityError(f"unknown stored value kind {kind!r}; was it written by a newer loopml?")


def _load_model(blobs: BlobStore, ref: Ref) -> Any:
    from loopml.models.flavors import Saved, get_flavor

    manifest = orjson.loads(blobs.read_bytes(ref["digest"]))
    flavor = get_flavor(manifest["flavor"])
    with tempfile.TemporaryDirectory(prefix="loopml-step-model-") as tmp:
        for rel, digest in manifest["files"].items():
            blobs.copy_to(digest, Path(tmp) / rel)
        saved = Saved(manifest["loader"], dict(manifest["options"]))
        return flavor.load(Path(tmp), saved, trust_pickle=False)


def digests(ref: Ref) -> list[str]:
    """Every blob digest a ref needs (a model's files come from its manifest at verify time)."""
    if ref["kind"] == "list":
        return [ref["digest"], *(d for item in ref["items"] for d in digests(item))]
    return [ref["digest"]]


def verify(blobs: BlobStore, ref: Ref) -> bool:
    """Whether every blob of the value still exists and hashes to its digest."""
    try:
        for digest in digests(ref):
            if ref["kind"] == "model" and digest == ref["digest"]:  # its manifest names its files
                for file_digest in orjson.loads(blobs.read_bytes(digest))["files"].values():
                    blobs.verify(file_digest)
            else:
                blobs.verify(digest)
    except (NotFound, IntegrityError):
        return False
    return True
