"""The ``mlflow-artifacts`` proxy: upload, download and list under the artifact root.

Every path is confined by :func:`loopml.store.paths.safe_relpath` before the
store sees it; a missing file or a directory answers 404, which the MLflow
client relies on to fall back to logged models.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from loopml.errors import LoopmlError, NotFound
from loopml.server.dispatch import Endpoint
from loopml.server.mlflow_json import error_response
from loopml.server.responses import JSONResponse, spool_body
from loopml.store.artifacts import ArtifactRepository
from loopml.store.paths import safe_relpath

PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")


def _repo(request: Request) -> ArtifactRepository:
    repo: ArtifactRepository = request.app.state.tracking.artifacts
    return repo


async def upload(request: Request) -> Response:
    try:
        path = safe_relpath(request.path_params["path"])
        spooled = await spool_body(request)
        try:
            await run_in_threadpool(_repo(request).put, path, spooled)
        finally:
            spooled.close()
    except LoopmlError as exc:
        return error_response(exc)
    return JSONResponse({})


async def download(request: Request) -> Response:
    try:
        path = safe_relpath(request.path_params["path"])
        repo = _repo(request)
        info = await run_in_threadpool(repo.lookup, path)
        if info is None or info.digest is None:
            raise NotFound(f"No such artifact: {path!r}")
        chunks = repo.blobs.iter_verified(info.digest)
    except LoopmlError as exc:
        return error_response(exc)
    headers = {"Content-Length": str(info.file_size)}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


async def list_files(request: Request) -> Response:
    try:
        path = safe_relpath(request.query_params.get("path", ""), allow_root=True)
        found = await run_in_threadpool(_repo(request).list, path)
    except LoopmlError as exc:
        return error_response(exc)
    start = len(path) + 1 if path else 0
    files = []
    for f in found:
        entry: dict[str, object] = {"path": f.path[start:], "is_dir": f.is_dir}
        if not f.is_dir:
            entry["file_size"] = f.file_size
        files.append(entry)
    return JSONResponse({"files": files})


async def delete(request: Request) -> Response:
    try:
        path = safe_relpath(request.path_params["path"])
        await run_in_threadpool(_repo(request).delete_tree, path)
    except LoopmlError as exc:
        return error_response(exc)
    return JSONResponse({})


def routes() -> list[tuple[str, str, Endpoint]]:
    out: list[tuple[str, str, Endpoint]] = []
    for prefix in PREFIXES:
        out += [
            ("GET", f"{prefix}/artifacts", list_files),
            ("PUT", f"{prefix}/artifacts/{{path:path}}", upload),
            ("GET", f"{prefix}/artifacts/{{path:path}}", download),
            ("DELETE", f"{prefix}/artifacts/{{path:path}}", delete),
        ]
    return out
