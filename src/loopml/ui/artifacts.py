"""A run's artifact files: a preview page (text, images, tables) and the raw bytes.

Only formats that cannot run script are shown inline (plain text, PNG/JPEG/GIF/WebP);
everything else, HTML and SVG in particular, is served as an attachment with ``nosniff``,
so an artifact can never execute in the UI's origin.
"""

from __future__ import annotations

import csv
import io
import json
import mimetypes
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from loopml.store.paths import safe_relpath
from loopml.tracking.service import TrackingService
from loopml.ui._common import page

router = APIRouter()

TEXT_EXT = {".txt", ".log", ".md", ".json", ".yaml", ".yml", ".py", ".toml", ".cfg", ".ini", ".mlmodel"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
IMAGE_TYPES[".webp"] = "image/webp"
TABLE_EXT = {".csv", ".tsv", ".parquet"}
# Formats a browser would run script from: never served with their own type.
ACTIVE_EXT = {".html", ".htm", ".xhtml", ".svg", ".xml", ".js", ".mjs"}
PREVIEW_BYTES = 256 * 1024
PREVIEW_ROWS = 100


def _ext(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    if name == "mlmodel":
        return ".mlmodel"
    return "." + name.rsplit(".", 1)[-1] if "." in name else ""


def _head(chunks: Iterator[bytes], limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes and whether there was more."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            return bytes(buf[:limit]), True
    return bytes(buf), False


def _table_preview(svc: TrackingService, run_id: str, path: str, ext: str) -> dict[str, Any]:
    if ext == ".parquet":
        data = b"".join(svc.iter_artifact(run_id, path))
        table = pq.ParquetFile(io.BytesIO(data)).read_row_group(0) if data else None
        if table is None:
            return {"header": [], "rows": [], "truncated": False}
        head = table.slice(0, PREVIEW_ROWS).to_pylist()
        header = table.column_names
        return {
            "header": header,
            "rows": [[r[c] for c in header] for r in head],
            "truncated": table.num_rows > PREVIEW_ROWS,
        }
    raw, more = _head(svc.iter_artifact(run_id, path), PREVIEW_BYTES)
    text = raw.decode("utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t" if ext == ".tsv" else ","))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    return {"header": header, "rows": body[:PREVIEW_ROWS], "truncated": more or len(body) > PREVIEW_ROWS}


def _logged_table(raw: bytes, more: bool) -> dict[str, Any] | None:
    """A table logged with ``log_table`` (MLflow's ``{"columns": [...], "data": [[...]]}``), or None."""
    if more:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not (isinstance(doc, dict) and set(doc) == {"columns", "data"}):
        return None
    header, data = doc["columns"], doc["data"]
    if not (isinstance(header, list) and isinstance(data, list)):
        return None
    if not all(isinstance(row, list) and len(row) == len(header) for row in data):
        return None
    rows, truncated = data[:PREVIEW_ROWS], len(data) > PREVIEW_ROWS
    return {"header": [str(c) for c in header], "rows": rows, "truncated": truncated}


@router.get("/runs/{run_id}/artifacts/{path:path}")
def artifact_page(request: Request, run_id: str, path: str) -> Response:
    svc: TrackingService = request.app.state.tracking
    path = safe_relpath(path, field="path")
    run = svc.get_run(run_id)
    ext = _ext(path)
    ctx: dict[str, Any] = {"run": run, "path": path, "kind": "download", "text": "", "table": None}
    if ext in IMAGE_TYPES:
        ctx["kind"] = "image"
    elif ext in TABLE_EXT:
        ctx["kind"], ctx["table"] = "table", _table_preview(svc, run_id, path, ext)
    elif ext in TEXT_EXT:
        raw, more = _head(svc.iter_artifact(run_id, path), PREVIEW_BYTES)
        table = _logged_table(raw, more) if ext == ".json" else None
        if table is not None:
            ctx["kind"], ctx["table"] = "table", table
        else:
            ctx["kind"], ctx["text"], ctx["truncated"] = "text", raw.decode("utf-8", errors="replace"), more
    return page(request, "artifact.html", "experiments", **ctx)


@router.get("/runs/{run_id}/raw/{path:path}")
def artifact_raw(request: Request, run_id: str, path: str) -> Response:
    """The file's bytes: images inline, everything else as a download."""
    svc: TrackingService = request.app.state.tracking
    path = safe_relpath(path, field="path")
    chunks = svc.iter_artifact(run_id, path)
    first = next(chunks, b"")  # raises NotFound before the response starts

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    ext = _ext(path)
    name = path.rsplit("/", 1)[-1]
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    if ext in IMAGE_TYPES:
        media, disposition = IMAGE_TYPES[ext], "inline"
    else:
        guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
        media = "application/octet-stream" if ext in ACTIVE_EXT or "html" in guessed else guessed
        disposition = "attachment"
    headers = {
        "Content-Disposition": f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=300",
    }
    return StreamingResponse(body(), media_type=media, headers=headers)
