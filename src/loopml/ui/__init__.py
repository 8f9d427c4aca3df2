"""The web UI: server-rendered pages under ``/ui/`` over the capability services in-process.

Jinja2 renders every page; a small script of our own swaps table fragments, sorts, asks for
confirmations and draws charts with plotly.js, which is served from the installed plotly
package (nothing comes from a CDN, so the UI works offline).

``loopml.server.app.create_app`` mounts it:

>>> install(app, settings)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import plotly
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, RedirectResponse, Response

from loopml.config import Settings
from loopml.errors import LoopmlError, NotFound
from loopml.ui import artifacts, data, endpoints, ops, pipelines, registry, runs
from loopml.ui._common import STATIC_DIR, page

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC_FILES = {
    "app.css": STATIC_DIR / "app.css",
    "app.js": STATIC_DIR / "app.js",
    "plotly.min.js": PLOTLY_JS,
}


def _version_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "missing"


def create_ui(app_state: object, settings: Settings) -> FastAPI:
    """The UI as an app of its own (its errors render as HTML pages, not JSON)."""
    ui = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    ui.state = app_state  # type: ignore[assignment]  # the server's services, shared
    ui.state.ui_settings = settings
    ui.state.static_versions = {name: _version_of(p) for name, p in STATIC_FILES.items()}
    for module in (runs, artifacts, registry, data, endpoints, ops, pipelines):
        ui.include_router(module.router)
    ui.add_api_route("/static/{name}", _static, methods=["GET"])
    ui.add_exception_handler(LoopmlError, _error_page)  # type: ignore[arg-type]
    ui.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    ui.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    return ui


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the UI at ``/ui`` and send ``/`` there."""
    app.mount("/ui", create_ui(app.state, settings))

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/", status_code=307)


def _static(request: Request, name: str) -> Response:
    path = STATIC_FILES.get(name)
    if path is None or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    versioned = request.query_params.get("v") == request.app.state.static_versions.get(name)
    cache = "public, max-age=31536000, immutable" if versioned else "public, max-age=3600"
    return FileResponse(path, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})


async def _error_page(request: Request, exc: LoopmlError) -> Response:
    return page(request, "error.html", "", status_code=exc.status_code, error=exc)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        err: LoopmlError = NotFound(f"there is no page at {request.url.path}; start from the experiments")
    else:
        err = LoopmlError(str(exc.detail))
    return page(request, "error.html", "", status_code=exc.status_code, error=err)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    err = LoopmlError(f"{where}: {first.get('msg', 'invalid')}")
    return page(request, "error.html", "", status_code=400, error=err)
