"""``loopml.log_image`` / ``log_table`` / ``log_figure``: files other tools (and MLflow) can read."""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

import loopml
from loopml.errors import InvalidInput


@pytest.fixture(params=["embedded", "remote"])
def run_id(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An active run on a fresh local store, or (remote) on the session's live server."""
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    loopml.reset()
    if request.param == "remote":
        loopml.set_tracking_uri(request.getfixturevalue("server_url"))
    loopml.set_experiment(f"media-{uuid.uuid4().hex[:8]}")
    with loopml.start_run(capture_env=False) as run:
        yield run.run_id
    loopml.reset()


def _artifact(run_id: str, path: str) -> bytes:
    return b"".join(loopml.service().iter_artifact(run_id, path))


def _decode_png(data: bytes) -> np.ndarray:
    """A strict little PNG reader for what log_image writes: 8-bit, unfiltered scanlines."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()  # filter type "none" on every scanline
    return rows[:, 1:].reshape(height, width, channels)


@pytest.mark.parametrize("channels", [None, 3, 4])
def test_log_image_png_decodes_to_the_same_pixels(run_id: str, channels: int | None) -> None:
    rng = np.random.default_rng(channels or 0)
    shape = (5, 7) if channels is None else (5, 7, channels)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    loopml.log_image(pixels, "images/pic.png")
    decoded = _decode_png(_artifact(run_id, "images/pic.png"))
    np.testing.assert_array_equal(decoded, pixels.reshape(5, 7, channels or 1))


def test_float_images_are_scaled_and_readable_by_pil(run_id: str) -> None:
    image = np.linspace(0.0, 1.0, 4 * 6 * 3).reshape(4, 6, 3)
    loopml.log_image(image, "float.png")
    data = _artifact(run_id, "float.png")
    np.testing.assert_array_equal(_decode_png(data), np.rint(image * 255).astype(np.uint8))
    pil = pytest.importorskip("PIL.Image")
    np.testing.assert_array_equal(np.asarray(pil.open(io.BytesIO(data))), _decode_png(data))


def test_a_pil_image_is_logged_as_png(run_id: str) -> None:
    pil = pytest.importorskip("PIL.Image")
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    loopml.log_image(pil.fromarray(pixels), "pil.png")
    np.testing.assert_array_equal(_decode_png(_artifact(run_id, "pil.png")), pixels)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros(5, dtype=np.uint8), r"got shape \(5,\)"),
        (np.zeros((2, 2, 5), dtype=np.uint8), r"got shape \(2, 2, 5\)"),
        (np.full((2, 2), 1.5), r"values in 0\.\.1"),
        (np.full((2, 2), 300), r"outside 0\.\.255"),
        (np.array([["a"]]), "dtype <U1"),
    ],
)
def test_what_is_not_an_image_is_refused_by_name(run_id: str, image: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        loopml.log_image(image, "bad.png")
    with pytest.raises(InvalidInput, match=r"\.png"):
        loopml.log_image(np.zeros((2, 2), dtype=np.uint8), "bad.jpg")


def test_log_table_writes_mlflows_format_and_appends(run_id: str) -> None:
    loopml.log_table({"text": ["a", "b"], "score": [0.5, 0.25]}, "eval/table.json")
    first = orjson.loads(_artifact(run_id, "eval/table.json"))
    assert first == {"columns": ["text", "score"], "data": [["a", 0.5], ["b", 0.25]]}
    loopml.log_table(pd.DataFrame({"text": ["c"], "score": [1.0]}), "eval/table.json")
    frame = pd.read_json(io.BytesIO(_artifact(run_id, "eval/table.json")), orient="split")
    assert frame.to_dict("list") == {"text": ["a", "b", "c"], "score": [0.5, 0.25, 1.0]}
    tag = loopml.get_run(run_id).tags["mlflow.loggedArtifacts"]  # listed once, as MLflow lists it
    assert tag == '[{"path": "eval/table.json", "type": "table"}]'
    with pytest.raises(InvalidInput, match="dict of columns"):
        loopml.log_table([1, 2], "t.json")
    with pytest.raises(InvalidInput, match=r"\.json"):
        loopml.log_table({"a": [1]}, "t.csv")


@pytest.mark.server
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_mlflow_load_table_reads_a_logged_table(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    for var in ("LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    loopml.reset()
    loopml.set_tracking_uri(server_url)
    exp = loopml.set_experiment(f"media-mlflow-{uuid.uuid4().hex[:8]}")
    try:
        with loopml.start_run(capture_env=False) as run:
            loopml.log_table({"q": ["x", "y"], "n": [1, 2]}, "table.json")
        mlflow.set_tracking_uri(server_url)
        mlflow.set_experiment(experiment_id=exp.experiment_id)
        got = mlflow.load_table("table.json", run_ids=[run.run_id])
        assert got[["q", "n"]].to_dict("list") == {"q": ["x", "y"], "n": [1, 2]}
    finally:
        loopml.reset()


def test_log_figure_matplotlib_by_suffix(run_id: str) -> None:
    figure_mod = pytest.importorskip("matplotlib.figure", reason="matplotlib is not installed")
    fig = figure_mod.Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    loopml.log_figure(fig, "plots/line.png")
    loopml.log_figure(fig, "plots/line.svg")
    loopml.log_figure(fig, "plots/line.pdf")
    png = _decode_png_header(_artifact(run_id, "plots/line.png"))
    assert png == (200, 200)  # 2 in at matplotlib's default 100 dpi
    assert b"<svg" in _artifact(run_id, "plots/line.svg")
    assert _artifact(run_id, "plots/line.pdf").startswith(b"%PDF")
    with pytest.raises(InvalidInput, match=r"\.png, \.svg"):
        loopml.log_figure(fig, "plots/line.gif")


def _decode_png_header(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_log_figure_plotly_html_and_json(run_id: str) -> None:
    go = pytest.importorskip("plotly.graph_objects", reason="plotly is not installed")
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    loopml.log_figure(fig, "plots/fig.html")
    loopml.log_figure(fig, "plots/fig.json")
    assert b"<html>" in _artifact(run_id, "plots/fig.html")
    spec = orjson.loads(_artifact(run_id, "plots/fig.json"))
    assert spec["data"][0]["type"] == "scatter" and spec["data"][0]["y"] == [3, 4]


def test_log_figure_refuses_other_objects(run_id: str) -> None:
    with pytest.raises(InvalidInput, match=r"matplotlib or plotly figure; got a builtins\.dict"):
        loopml.log_figure({"not": "a figure"}, "x.png")
