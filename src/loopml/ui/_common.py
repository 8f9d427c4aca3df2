"""What every UI page shares: the Jinja2 environment, the CSRF token, formatting filters.

CSRF: a per-browser random token lives in an HttpOnly ``SameSite=Strict`` cookie and in a
hidden field of every form; a POST is accepted only when both are present and equal. A
cross-site page can neither read the cookie nor make the browser send it.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from markupsafe import Markup
from starlette.responses import HTMLResponse, Response

from loopml.errors import PermissionDenied

CSRF_COOKIE = "loopml_csrf"
CSRF_FIELD = "csrf_token"
_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"

NAV = [
    ("experiments", "Experiments", "/ui/"),
    ("models", "Models", "/ui/models"),
    ("datasets", "Datasets", "/ui/datasets"),
    ("features", "Features", "/ui/features"),
    ("endpoints", "Endpoints", "/ui/endpoints"),
    ("monitoring", "Monitoring", "/ui/monitoring"),
    ("pipelines", "Pipelines", "/ui/pipelines"),
    ("audit", "Audit", "/ui/audit"),
]


def fmt_ms(ms: int | float | None) -> str:
    """A millisecond epoch as ``2024-05-01 12:00:00`` UTC; '' when unset."""
    if not ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ms) / 1000.0))


def fmt_duration(start: int | None, end: int | None) -> str:
    """``1.5s``, ``3.2min`` or ``1.1h``; '' while running."""
    if not start or not end:
        return ""
    s = (end - start) / 1000.0
    if s < 60:
        return f"{s:.1f}s"
    return f"{s / 60:.1f}min" if s < 3600 else f"{s / 3600:.1f}h"


def fmt_num(value: Any) -> str:
    """Numbers with 6 significant digits; anything else as given."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def to_json(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<`` is escaped so no tag can end it."""
    text = json.dumps(value, default=str, allow_nan=False).replace("<", "\\u003c")
    return Markup(text)


def static_url(request: Request, name: str) -> str:
    """``/ui/static/NAME?v=<content hash>``: cached for a year, busted when the file changes."""
    version = request.app.state.static_versions.get(name, "")
    return f"/ui/static/{name}?v={version}"


def _make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=fmt_ms, num=fmt_num, tojson_safe=to_json)
    env.globals.update(duration=fmt_duration, nav=NAV, static_url=static_url)
    return env


ENV = _make_env()


def csrf_token(request: Request) -> str:
    """This browser's token (a new one when it has none yet; :func:`page` sets the cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) != 43:
        token = getattr(request.state, "new_csrf", "") or secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def check_csrf(request: Request, form_token: object) -> None:
    """Refuse a form whose hidden token does not match the cookie (a cross-site POST)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not isinstance(form_token, str) or not hmac.compare_digest(cookie, form_token):
        raise PermissionDenied(
            "the form's CSRF token does not match this browser's; reload the page and submit again",
            details={"field": CSRF_FIELD},
        )


def page(request: Request, template: str, section: str, status_code: int = 200, **context: Any) -> Response:
    """Render ``template`` inside the layout; sets the CSRF cookie on a browser's first page."""
    token = csrf_token(request)
    html = ENV.get_template(template).render(
        request=request, section=section, csrf=token, csrf_field=CSRF_FIELD, **context
    )
    response = HTMLResponse(html, status_code=status_code)
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/ui")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def fragment(template: str, **context: Any) -> HTMLResponse:
    """A partial (no layout) for the page script to swap in."""
    response = HTMLResponse(ENV.get_template(template).render(**context))
    response.headers["Cache-Control"] = "no-store"
    return response


def empty_state(
    request: Request, section: str, title: str, lines: list[str], commands: list[str]
) -> Response:
    """A page for a capability with no data yet: what it is and how to start."""
    return page(request, "empty.html", section, title=title, lines=lines, commands=commands)
