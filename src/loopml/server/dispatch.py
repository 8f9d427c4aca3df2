"""A pure-ASGI fast path: the MLflow routes by dictionary lookup, ahead of FastAPI's router.

FastAPI matches routes one regex at a time; with the MLflow API's ~100 routes in front of
it, that scan cost more server CPU than logging a metric. Static paths are one dict
lookup here; the few parameterised ones are matched against their own short list.
Anything else falls through to the FastAPI app unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from loopml.server.responses import JSONResponse

Endpoint = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("loopml.server")
_PARAM = re.compile(r"\{(\w+)(:path)?\}")


def _compile(path: str) -> re.Pattern[str]:
    pattern = _PARAM.sub(
        lambda m: f"(?P<{m[1]}>{'.+' if m[2] else '[^/]+'})",
        re.escape(path).replace(r"\{", "{").replace(r"\}", "}"),
    )
    return re.compile(f"^{pattern}$")


class FastPathDispatcher:
    """ASGI middleware serving ``routes`` (method, path, endpoint) directly."""

    def __init__(self, app: ASGIApp, routes: Sequence[tuple[str, str, Endpoint]]) -> None:
        self.app = app
        self.static: dict[tuple[str, str], Endpoint] = {}
        self.dynamic: list[tuple[str, re.Pattern[str], Endpoint]] = []
        for method, path, endpoint in routes:
            if "{" in path:
                self.dynamic.append((method, _compile(path), endpoint))
            else:
                self.static[(method, path)] = endpoint
        self.prefixes = tuple({path.split("/{", 1)[0].rsplit("/", 1)[0] for _, path, _ in routes})

    def _match(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        endpoint = self.static.get((method, path))
        if endpoint is not None:
            return endpoint, {}
        if path.startswith(self.prefixes):
            for route_method, pattern, candidate in self.dynamic:
                if route_method == method and (m := pattern.match(path)):
                    return candidate, m.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._match(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        endpoint, params = found
        scope = {**scope, "path_params": params}
        try:
            response = await endpoint(Request(scope, receive))
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            body = {"error_code": "INTERNAL_ERROR", "message": "internal server error"}
            response = JSONResponse(body, status_code=500)
        await response(scope, receive, send)
