"""Every (method, path template) the server answers, read from the app itself.

The FastAPI router table (included routers flattened, mounts walked) plus the routes of the
pure-ASGI fast path (the MLflow API, mlflow-artifacts, the registry and any other route a
router registered there), so a new route is attacked without anyone listing it here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.routing import Mount

from loopml.config import Settings
from loopml.server.app import create_app
from loopml.server.dispatch import FastPathDispatcher

PARAM = re.compile(r"\{(\w+)(:path)?\}")
SKIP = ("/docs", "/redoc", "/openapi.json", "/static")


def _walk(routes: list[Any], prefix: str, out: set[tuple[str, str]]) -> None:
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            _walk(route.original_router.routes, prefix + route.include_context.prefix, out)
        elif isinstance(route, Mount):
            _walk(list(route.routes), prefix + route.path, out)
        elif getattr(route, "methods", None):
            out.update((m, prefix + route.path) for m in route.methods if m != "HEAD")


def route_table(home: Path) -> list[tuple[str, str]]:
    """Sorted (method, path template) pairs; the interactive docs and static files left out."""
    app = create_app(Settings.load(env={"LOOPML_HOME": str(home), "LOOPML_MONITOR_SCHEDULER": "0"}))
    try:
        found: set[tuple[str, str]] = set()
        _walk(app.router.routes, "", found)
        for mw in app.user_middleware:
            if mw.cls is FastPathDispatcher:
                found.update((m, p) for m, p, _ in mw.kwargs["routes"])
        return sorted((m, p) for m, p in found if not p.startswith(SKIP))
    finally:
        app.state.tracking.db.dispose()


def params(template: str) -> list[tuple[str, bool]]:
    """The template's parameters as (name, is_a_path)."""
    return [(m[1], bool(m[2])) for m in PARAM.finditer(template)]


def fill(template: str, values: dict[str, str]) -> str:
    return PARAM.sub(lambda m: values[m[1]], template)
