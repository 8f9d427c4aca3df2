"""ONNX models, run with onnxruntime; external data must stay inside the model directory.

A tensor stored outside the ``.onnx`` file names its file by a relative path;
loopml refuses absolute paths, ``..`` and symlinks that lead out of the model's
directory, both when logging a model file and before opening one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from loopml.errors import InvalidInput, PermissionDenied
from loopml.models.flavors.base import Flavor, Predictor, Saved

MODEL_FILE = "model.onnx"
_EXTERNAL_THRESHOLD = 1 << 30  # protobuf cannot hold more than 2 GB: spill weights beyond 1 GB
_NUMPY_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


class OnnxFlavor(Flavor):
    name = "onnx"
    loaders = ("onnx",)

    def matches(self, model: Any) -> bool:
        if isinstance(model, str | Path):
            return str(model).endswith(".onnx")
        return type(model).__module__.startswith("onnx") and type(model).__name__ == "ModelProto"

    def save(self, model: Any, dest: Path, *, trust_pickle: bool) -> Saved:
        import onnx

        packages = ("onnx", "onnxruntime", "numpy")
        if isinstance(model, str | Path):
            source = Path(model)
            if not source.is_file():
                raise InvalidInput(f"ONNX file {str(source)!r} does not exist", details={"field": "model"})
            for location in external_locations(source, source.parent):
                (dest / location).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source.parent / location, dest / location)
            shutil.copyfile(source, dest / MODEL_FILE)
            return Saved("onnx", {}, packages)
        if any(_is_external(t) for t in _tensors(model.graph)):
            raise InvalidInput(
                "this ModelProto refers to external data it does not hold; pass the path of its .onnx "
                "file instead, so loopml can copy the data next to it",
                details={"field": "model"},
            )
        big = model.ByteSize() > _EXTERNAL_THRESHOLD
        onnx.save_model(
            model, str(dest / MODEL_FILE), save_as_external_data=big, location=f"{MODEL_FILE}.data"
        )
        return Saved("onnx", {}, packages)

    def load(self, src: Path, saved: Saved, *, trust_pickle: bool) -> Predictor:
        return load_onnx(src / MODEL_FILE, src)

    def predictor(self, model: Any) -> Predictor:
        import onnxruntime as ort

        data = Path(model).read_bytes() if isinstance(model, str | Path) else model.SerializeToString()
        return OnnxPredictor(ort.InferenceSession(data, providers=["CPUExecutionProvider"]))


def load_onnx(path: Path, root: Path) -> OnnxPredictor:
    """A CPU session over ``path``, once its external data is checked to lie inside ``root``."""
    import onnxruntime as ort

    external_locations(path, root)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # predictable on shared machines; batch scoring is vectorised
    return OnnxPredictor(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))


def external_locations(model_file: Path, root: Path) -> list[str]:
    """The external-data files ``model_file`` uses, each checked to lie inside ``root``."""
    import onnx

    proto = onnx.load(str(model_file), load_external_data=False)
    real_root = root.resolve()
    found: list[str] = []
    for tensor in _tensors(proto.graph):
        if not _is_external(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        _check_location(location, root, real_root)
        if location not in found:
            found.append(location)
    return found


def _check_location(location: str, root: Path, real_root: Path) -> None:
    parts = PurePosixPath(location.replace("\\", "/")).parts
    escapes = (
        not location
        or PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or bool(PureWindowsPath(location).drive)
        or ".." in parts
        or not (root / location).resolve().is_relative_to(real_root)
    )
    if escapes:
        raise PermissionDenied(
            f"ONNX external data location {location!r} is outside the model directory; "
            "save the model with its external data in files next to the .onnx file",
            details={"field": "location", "location": location},
        )


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of a graph: initializers, sparse initializers, attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _is_external(tensor: Any) -> bool:
    import onnx

    return bool(tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL)


class OnnxPredictor:
    """An onnxruntime session fed from a DataFrame (one input per column) or an array."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = session.get_inputs()

    def _feeds(self, data: Any) -> dict[str, Any]:
        import numpy as np

        from loopml.models.signature import is_dataframe

        if len(self.inputs) == 1:
            arr = data.to_numpy() if is_dataframe(data) else np.asarray(data)
            return {self.inputs[0].name: _cast(arr, self.inputs[0].type)}
        if not is_dataframe(data):
            names = [i.name for i in self.inputs]
            raise InvalidInput(
                f"this ONNX model takes {len(names)} inputs ({', '.join(names)}); pass a DataFrame "
                "with one column per input",
                details={"field": "input"},
            )
        return {i.name: _cast(data[i.name].to_numpy().reshape(-1, 1), i.type) for i in self.inputs}

    def run(self, data: Any) -> list[Any]:
        outputs: list[Any] = self.session.run(None, self._feeds(data))
        return outputs

    def predict(self, data: Any) -> Any:
        return self.run(data)[0]

    def predict_proba(self, data: Any) -> Any:
        import numpy as np

        outputs = self.run(data)
        if len(outputs) < 2:
            raise InvalidInput("this ONNX model has one output: it gives no probabilities", details={})
        probs = outputs[1]
        if isinstance(probs, list):  # skl2onnx's ZipMap: one {label: probability} per row
            return np.array([[row[k] for k in sorted(row)] for row in probs])
        return probs


def _cast(arr: Any, onnx_type: str) -> Any:
    dtype = _NUMPY_TYPES.get(onnx_type)
    return arr if dtype is None or arr.dtype == dtype else arr.astype(dtype)
