"""Safe by default: pickles need explicit trust, altered artifacts are refused, paths stay confined."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import loopml.models
from loopml import sdk
from loopml.errors import IntegrityError, InvalidInput, PermissionDenied
from loopml.models import MANIFEST_NAME
from tests.unit.models.test_flavors import linear_graph


class Payload:
    """Unpickling this object opens (creates) ``marker``: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def predict(self, data: Any) -> Any:
        return data

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_a_pickle_is_never_executed_without_trust(run: sdk.ActiveRun, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    info = loopml.models.log_model(Payload(marker), "evil", trust_pickle=True)
    assert not marker.exists()
    with pytest.raises(PermissionDenied, match="pass trust_pickle=True"):
        loopml.models.load(info.model_uri)
    assert not marker.exists()
    # The payload is live: with trust it runs, so the check above could have failed.
    loaded = loopml.models.load(info.model_uri, trust_pickle=True)
    loaded.predictor.close()  # type: ignore[attr-defined]
    assert marker.exists()


def test_a_pickle_relabelled_as_skops_is_refused(run: sdk.ActiveRun, tmp_path: Path) -> None:
    """Rewriting the manifest to dodge the trust check breaks its recorded digest."""
    marker = tmp_path / "pwned"
    info = loopml.models.log_model(Payload(marker), "evil", trust_pickle=True)
    svc = sdk.service()
    manifest = json.loads(b"".join(svc.iter_artifact(run.run_id, f"evil/{MANIFEST_NAME}")))
    manifest.update(flavor="sklearn", loader="skops")
    svc.put_artifact(run.run_id, f"evil/{MANIFEST_NAME}", io.BytesIO(json.dumps(manifest).encode()))
    with pytest.raises(IntegrityError, match=MANIFEST_NAME):
        loopml.models.load(info.model_uri)
    assert not marker.exists()


def test_sklearn_objects_outside_the_allow_list_need_trust(run: sdk.ActiveRun, numeric: Any) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, classes, _ = numeric
    from sklearn.linear_model import LogisticRegression

    pipe = make_pipeline(FunctionTransformer(lambda a: a * 2), LogisticRegression()).fit(x, classes)
    with pytest.raises(InvalidInput, match="trust_pickle=True"):
        loopml.models.log_model(pipe)
    info = loopml.models.log_model(pipe, trust_pickle=True)
    assert info.flavor == "sklearn"
    with pytest.raises(PermissionDenied):
        loopml.models.load(info.model_uri)
    np.testing.assert_array_equal(
        loopml.models.load(info.model_uri, trust_pickle=True).predict(x), pipe.predict(x)
    )


def _fitted(numeric: Any) -> Any:
    from sklearn.linear_model import LogisticRegression

    x, classes, _ = numeric
    return LogisticRegression(max_iter=200).fit(x, classes)


def test_a_replaced_model_file_is_refused(run: sdk.ActiveRun, numeric: Any) -> None:
    info = loopml.models.log_model(_fitted(numeric))
    other = run.run_id
    # Another model's bytes at the same path: the artifact store is consistent, the manifest is not.
    loopml.models.log_model(_fitted(numeric).set_params(C=0.01).fit(numeric[0], numeric[1]), "other")
    svc = sdk.service()
    forged = b"".join(svc.iter_artifact(other, "other/model.skops"))
    svc.put_artifact(run.run_id, "model/model.skops", io.BytesIO(forged))
    with pytest.raises(IntegrityError, match=r"'model\.skops'") as caught:
        loopml.models.load(info.model_uri)
    assert caught.value.details["file"] == "model.skops"


def test_an_altered_cached_copy_is_refused(run: sdk.ActiveRun, numeric: Any, home: Path) -> None:
    info = loopml.models.log_model(_fitted(numeric))
    loopml.models.load(info.model_uri)
    cached = home / "cache" / "models" / info.manifest_digest / "model.skops"
    cached.write_bytes(cached.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=r"model\.skops"):
        loopml.models.load(info.model_uri)


def test_an_altered_stored_blob_is_refused(run: sdk.ActiveRun, numeric: Any, home: Path) -> None:
    info = loopml.models.log_model(_fitted(numeric))
    digest = loopml.models.load(info.model_uri).metadata["files"]["model.skops"]
    blob = home / "artifacts" / "sha256" / digest[:2] / digest[2:]
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    for cached in (home / "cache").rglob("*"):
        if cached.is_file():
            cached.unlink()
    with pytest.raises(IntegrityError):
        loopml.models.load(info.model_uri)


def test_a_pinned_manifest_digest_must_match(run: sdk.ActiveRun, numeric: Any) -> None:
    info = loopml.models.log_model(_fitted(numeric))
    assert loopml.models.load(info.model_uri, manifest_digest=info.manifest_digest).flavor == "sklearn"
    with pytest.raises(IntegrityError, match="was recorded"):
        loopml.models.load(info.model_uri, manifest_digest="0" * 64)


def _save_external(folder: Path, location: str) -> Path:
    """A model file whose weights claim to live at ``location``."""
    import onnx

    proto = linear_graph(np.ones((4, 2), dtype="float32"))
    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(folder / "m.onnx"))
    return folder / "m.onnx"


@pytest.mark.parametrize(
    "location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin", "C:\\secret.bin"]
)
def test_onnx_external_data_outside_the_directory_is_refused(
    run: sdk.ActiveRun, tmp_path: Path, location: str
) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 32)
    path = _save_external(tmp_path / "model", location)
    with pytest.raises(PermissionDenied, match="outside the model directory"):
        loopml.models.log_model(path)


def test_onnx_external_data_through_a_symlink_out_is_refused(run: sdk.ActiveRun, tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 32)
    path = _save_external(tmp_path / "model", "weights.bin")
    (tmp_path / "model" / "weights.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(PermissionDenied, match=r"'weights\.bin'"):
        loopml.models.log_model(path)


def test_a_tampered_manifest_cannot_point_outside_the_model(run: sdk.ActiveRun, numeric: Any) -> None:
    """A manifest naming '../x' is refused before anything is written or read."""
    info = loopml.models.log_model(_fitted(numeric))
    svc = sdk.service()
    manifest = json.loads(b"".join(svc.iter_artifact(run.run_id, f"model/{MANIFEST_NAME}")))
    manifest["files"]["../../escape"] = "a" * 64
    data = json.dumps(manifest).encode()
    svc.put_artifact(run.run_id, f"model/{MANIFEST_NAME}", io.BytesIO(data))
    import hashlib

    with pytest.raises(InvalidInput, match="not allowed"):
        loopml.models.load(info.model_uri, manifest_digest=hashlib.sha256(data).hexdigest())
