"""The v2 codec (JSON and binary tensors, as tritonclient builds them) and MLflow's formats."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.http._infer_result import InferResult
from tritonclient.http._utils import _get_inference_request

from loopml.errors import InvalidInput
from loopml.models.signature import Column, Schema, Signature
from loopml.serving.protocols import mlflow as mlflow_protocol
from loopml.serving.protocols import v2
from loopml.serving.validation import InputSpec


def _triton_body(
    inputs: list[triton.InferInput], outputs: list[triton.InferRequestedOutput] | None
) -> tuple[bytes, int | None]:
    body, size = _get_inference_request(inputs, "", outputs, 0, False, False, 0, None, None)
    return (body if isinstance(body, bytes) else body.encode()), size


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT8", "INT64", "UINT16", "BOOL", "FP16"])
def test_decode_what_tritonclient_sends(datatype: str, binary: bool) -> None:
    x = (np.arange(12).reshape(3, 4) % 2).astype(v2.V2_TO_NUMPY[datatype])
    inp = triton.InferInput("input", [3, 4], datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    body, size = _triton_body([inp], None)
    req = v2.decode_request(body, size)
    assert req.binary_output is True and req.outputs is None
    np.testing.assert_array_equal(req.inputs[0][1], x)
    assert req.inputs[0][1].shape == (3, 4)


def test_bytes_tensor_round_trip() -> None:
    x = np.array([b"a", "\u00e9t\u00e9".encode(), b""], dtype=object)
    inp = triton.InferInput("s", [3], "BYTES")
    inp.set_data_from_numpy(x, binary_data=True)
    req = v2.decode_request(*_triton_body([inp], None))
    assert list(req.inputs[0][1]) == list(x)
    body, headers = v2.encode_response("m", "1", "r", [("out", x)], None, True)
    result = InferResult.from_response_body(body, header_length=int(headers[v2.HEADER_LENGTH]))
    assert list(result.as_numpy("out")) == list(x)


@pytest.mark.parametrize("binary", [True, False])
def test_encode_is_what_tritonclient_reads(binary: bool) -> None:
    y = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    requested = [v2.RequestedOutput("probs", binary)]
    body, headers = v2.encode_response("m", "3", "req-1", [("probs", y), ("other", y)], requested, False)
    size = headers.get(v2.HEADER_LENGTH)
    result = InferResult.from_response_body(body, header_length=int(size) if size else None)
    np.testing.assert_array_equal(result.as_numpy("probs"), y)
    response = result.get_response()
    assert response["id"] == "req-1" and response["model_version"] == "3" and len(response["outputs"]) == 1


def test_declared_sizes_are_checked() -> None:
    inp = triton.InferInput("input", [2, 2], "FP64")
    inp.set_data_from_numpy(np.ones((2, 2)))
    body, size = _triton_body([inp], None)
    with pytest.raises(InvalidInput):
        v2.decode_request(body[:-8], size)
    with pytest.raises(InvalidInput):
        v2.decode_request(body + b"extra", size)
    bad = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [1.0, 2.0, 3.0]}]}
    with pytest.raises(InvalidInput) as info:
        v2.decode_request(orjson.dumps(bad), None)
    assert info.value.details["field"] == "x"


def test_unknown_requested_output_is_named() -> None:
    with pytest.raises(InvalidInput) as info:
        v2.encode_response(
            "m", "1", "r", [("predictions", np.ones(2))], [v2.RequestedOutput("nope", False)], False
        )
    assert info.value.details["expected"] == ["predictions"]


def test_table_model_inputs_per_column_or_matrix() -> None:
    spec = InputSpec(Signature(Schema("columns", (Column("a", "float64"), Column("b", "float64")))))
    per_column = v2.to_model_input(spec, [("a", np.ones(3)), ("b", np.zeros((3, 1)))])
    matrix = v2.to_model_input(spec, [("rows", np.ones((3, 2)))])
    assert list(per_column.columns) == list(matrix.columns) == ["a", "b"]
    meta = v2.model_metadata("m", ["1"], spec, None)
    assert meta["inputs"] == [
        {"name": "a", "datatype": "FP64", "shape": [-1]},
        {"name": "b", "datatype": "FP64", "shape": [-1]},
    ]


def test_mlflow_formats_decode_the_same_frame() -> None:
    spec = InputSpec(Signature(Schema("columns", (Column("a", "float64"), Column("b", "int64")))))
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": [1, 2]})
    bodies = [
        (orjson.dumps({"dataframe_split": frame.to_dict(orient="split")}), "application/json"),
        (
            orjson.dumps({"dataframe_records": frame.to_dict(orient="records")}),
            "application/json; charset=utf-8",
        ),
        (orjson.dumps({"inputs": {"a": [1.5, 2.5], "b": [1, 2]}}), "application/json"),
        (orjson.dumps({"instances": frame.to_dict(orient="records")}), "application/json"),
        (frame.to_csv(index=False).encode(), "text/csv"),
    ]
    buf = io.BytesIO()
    frame.to_parquet(buf)
    bodies.append((buf.getvalue(), "application/vnd.apache.parquet"))
    for body, content_type in bodies:
        pd.testing.assert_frame_equal(mlflow_protocol.decode(body, content_type, spec), frame)


def test_mlflow_rejects_unknown_media_and_two_formats() -> None:
    spec = InputSpec(None)
    with pytest.raises(mlflow_protocol.UnsupportedMediaType):
        mlflow_protocol.decode(b"<x/>", "application/xml", spec)
    with pytest.raises(InvalidInput):
        mlflow_protocol.decode(b'{"instances": [], "inputs": []}', "application/json", spec)


def test_mlflow_predictions_shapes() -> None:
    assert orjson.loads(mlflow_protocol.encode(np.array([[0.1, 0.9]]))) == {"predictions": [[0.1, 0.9]]}
    frame = pd.DataFrame({"label": ["a"], "p": [0.5]})
    assert orjson.loads(mlflow_protocol.encode(frame)) == {"predictions": [{"label": "a", "p": 0.5}]}
    assert orjson.loads(mlflow_protocol.encode(np.array(["x", "y"], dtype=object))) == {
        "predictions": ["x", "y"]
    }
