"""Encoding of figures, images and tables into the files ``loopml.log_figure`` / ``log_image`` /
``log_table`` store as run artifacts.

Images are encoded to PNG here (zlib, no imaging library needed); matplotlib and plotly
figures are rendered by their own library, which is only imported by the caller's object.

>>> import numpy as np
>>> png_bytes(np.zeros((2, 3), dtype=np.uint8))[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from loopml.errors import InvalidInput
from loopml.models.signature import is_dataframe

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type by channel count: grey, grey+alpha, RGB, RGBA.
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
MATPLOTLIB_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")
PLOTLY_FORMATS = ("html", "json")
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"


def suffix_of(artifact_file: str, allowed: tuple[str, ...], what: str) -> str:
    """The lower-case suffix of ``artifact_file`` (without the dot), checked against ``allowed``."""
    suffix = PurePosixPath(artifact_file).suffix.lower().lstrip(".")
    if suffix not in allowed:
        raise InvalidInput(
            f"artifact_file {artifact_file!r} has no supported suffix for {what}; "
            f"end it with one of {', '.join('.' + s for s in allowed)}",
            details={"field": "artifact_file"},
        )
    return suffix


def image_array(image: Any) -> NDArray[np.uint8]:
    """``image`` (a NumPy array or a PIL image) as an HxWxC uint8 array (C in 1..4).

    Integer arrays must hold 0..255; float arrays 0..1 (scaled to 0..255); booleans are black/white.
    """
    if type(image).__module__.startswith("PIL."):
        if image.mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGBA")
        image = np.asarray(image)
    arr = np.asarray(image)
    shape = arr.shape
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in _COLOR_TYPE or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInput(
            f"an image has shape HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA); got shape {shape}",
            details={"field": "image", "shape": list(shape)},
        )
    return _to_uint8(arr, shape)


def _to_uint8(arr: NDArray[Any], shape: tuple[int, ...]) -> NDArray[np.uint8]:
    if arr.dtype == np.bool_:
        return np.where(arr, np.uint8(255), np.uint8(0)).astype(np.uint8)
    if arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 255:
            raise InvalidInput(
                f"integer image of shape {shape} has values outside 0..255 "
                f"(min {arr.min()}, max {arr.max()}); clip or rescale it",
                details={"field": "image"},
            )
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise InvalidInput(
                f"float image of shape {shape} must hold values in 0..1; rescale it (or pass uint8 0..255)",
                details={"field": "image"},
            )
        scaled: NDArray[np.float64] = np.rint(arr.astype(np.float64) * 255.0)
        return scaled.astype(np.uint8)
    raise InvalidInput(
        f"image of shape {shape} has dtype {arr.dtype}; pass uint8 (0..255) or float (0..1) pixels",
        details={"field": "image"},
    )


def png_bytes(image: Any) -> bytes:
    """A PNG file (8 bits per channel, no interlace) of ``image`` (see :func:`image_array`)."""
    arr = image_array(image)
    height, width, channels = arr.shape
    # Each scanline is prefixed by its filter type, 0 (none).
    raw = np.zeros((height, 1 + width * channels), dtype=np.uint8)
    raw[:, 1:] = arr.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def figure_bytes(figure: Any, artifact_file: str) -> bytes:
    """A matplotlib figure as PNG/SVG/PDF/JPEG, or a plotly figure as HTML/JSON, by suffix."""
    module = type(figure).__module__
    if module.startswith("matplotlib") and hasattr(figure, "savefig"):
        fmt = suffix_of(artifact_file, MATPLOTLIB_FORMATS, "a matplotlib figure")
        buf = io.BytesIO()
        figure.savefig(buf, format=fmt)
        return buf.getvalue()
    if module.startswith("plotly") and hasattr(figure, "to_json"):
        fmt = suffix_of(artifact_file, PLOTLY_FORMATS, "a plotly figure")
        if fmt == "json":
            return str(figure.to_json()).encode()
        return str(figure.to_html(full_html=True, include_plotlyjs="cdn")).encode()
    raise InvalidInput(
        f"log_figure takes a matplotlib or plotly figure; got a {module}.{type(figure).__name__}",
        details={"field": "figure"},
    )


def table_frame(data: Any) -> Any:
    """``data`` (a DataFrame or a mapping of column name to values) as a pandas DataFrame."""
    import pandas as pd

    if is_dataframe(data):
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except ValueError as exc:  # columns of different lengths
            raise InvalidInput(f"log_table data: {exc}", details={"field": "data"}) from None
    raise InvalidInput(
        f"log_table takes a pandas DataFrame or a dict of columns; got a {type(data).__name__}",
        details={"field": "data"},
    )


def table_json(data: Any, existing: bytes | None = None) -> bytes:
    """MLflow's table file, ``{"columns": [...], "data": [[...], ...]}``; rows are appended to
    ``existing`` (a table file already logged at that path), as MLflow's ``log_table`` does."""
    import pandas as pd

    frame = table_frame(data)
    if existing is not None:
        old = orjson.loads(existing)
        if not isinstance(old, dict) or "columns" not in old or "data" not in old:
            raise InvalidInput(
                "the artifact already logged at this path is not a table file; pick another artifact_file",
                details={"field": "artifact_file"},
            )
        frame = pd.concat([pd.DataFrame(old["data"], columns=old["columns"]), frame], ignore_index=True)
    text = frame.to_json(orient="split", index=False, date_format="iso")
    return str(text).encode()


def logged_tables(tag_value: str | None, artifact_file: str) -> str | None:
    """The ``mlflow.loggedArtifacts`` tag value with ``artifact_file`` added as a table, or None
    when it is already listed. Written with ``json.dumps``' separators, as MLflow does: its
    ``load_table`` finds runs with a LIKE pattern on that exact spacing."""
    try:
        entries = json.loads(tag_value) if tag_value else []
    except ValueError:
        entries = []
    if not isinstance(entries, list):
        entries = []
    entry = {"path": artifact_file, "type": "table"}
    if entry in entries:
        return None
    return json.dumps([*entries, entry])
