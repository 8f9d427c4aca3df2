"""Request hardening in front of every route: DNS rebinding, cross-site POSTs, body limits.

One pure-ASGI middleware, outermost, so the MLflow fast path, the inference routes and the
FastAPI routers are all covered by the same checks:

- **Foreign ``Host`` -> 400.** A DNS-rebinding page reaches a loopback server under the
  attacker's own host name; loopml answers only host names it knows: loopback names
  (``localhost``, ``*.localhost``), IP literals (a rebinding attack needs a name), the host
  it is bound to, the machine's own name and ``LOOPML_ALLOWED_HOSTS`` (``*`` turns it off).
- **Cross-site "simple" POSTs -> 415.** A browser sends ``text/plain``, form-encoded and
  multipart POSTs to any site without asking (no CORS preflight); they are refused, and so
  is a POST body with no ``Content-Type`` under ``/api/`` (``mlflow`` and loopml's clients
  always send one; tritonclient does not, so untyped inference bodies are still served).
  The web UI under ``/ui/`` posts forms and checks its own CSRF token (:mod:`loopml.ui`),
  so it is exempt.
- **Body limits -> 413.** ``LOOPML_MAX_REQUEST_BYTES`` (64 MiB) for API calls, read before
  the route sees them; ``LOOPML_MAX_UPLOAD_BYTES`` (8 GiB) for artifact and dataset uploads,
  counted as they stream. A declared ``Content-Length`` over the limit is refused unread.
- **Deep JSON -> 400.** More than :data:`MAX_JSON_DEPTH` nested arrays/objects is refused
  before any parser recurses into it.
- **Refusals are audited.** ``on_refused`` (given at install time; the app appends an audit
  entry with it) is called in a worker thread for every refusal with the request's scope, a
  short reason (:data:`REASONS`) and the error; accepted requests never reach it.
- **Artifacts as attachments.** Every response carries ``X-Content-Type-Options: nosniff``;
  artifact downloads also ``Content-Disposition: attachment`` and a sandboxing CSP, so an
  HTML or SVG artifact never runs as a page of the server's origin.

>>> host_allowed("evil.example.com", HostPolicy.build(()))
False
>>> host_allowed("localhost:5000", HostPolicy.build(()))
True
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.config import Settings
from loopml.errors import InvalidInput, LoopmlError, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_DEPTH = 64
# Form posts a cross-site page can make without a CORS preflight (the "simple" content types).
SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
CSRF_EXEMPT_PREFIXES = ("/ui/",)
JSON_API_PREFIXES = ("/api/", "/ajax-api/")
_UPLOAD_POST_PREFIXES = ("/api/v1/datasets/",)
_ARTIFACT_DOWNLOADS = re.compile(r"/(artifact-content|mlflow-artifacts/artifacts)/.")  # a file, not a listing
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = np.zeros(256, dtype=np.int64)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
# The ``reason`` passed to ``on_refused``, one per check.
HOST, CONTENT_TYPE, BODY_TOO_LARGE, JSON_TOO_DEEP = "host", "content-type", "body-too-large", "json-too-deep"
REASONS = (HOST, CONTENT_TYPE, BODY_TOO_LARGE, JSON_TOO_DEEP)

OnRefused = Callable[[Scope, str, LoopmlError], None]
"""``on_refused(scope, reason, error)``: runs in a worker thread (it may write to the database)."""


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` header names the server answers (IP literals and loopback names always)."""

    names: frozenset[str]
    any_host: bool = False

    @classmethod
    def build(cls, allowed: Iterable[str], bind_host: str = "") -> HostPolicy:
        """The machine's name, the bind host and ``allowed`` (``*`` allows any host)."""
        names = {_normalise(n) for n in allowed if n.strip()}
        if bind_host not in _WILDCARD_BINDS:
            names.add(_normalise(bind_host))
        with contextlib.suppress(OSError):  # no host name configured: nothing to add
            names.add(_normalise(socket.gethostname()))
        return cls(frozenset(names - {"*"}), any_host="*" in names)


def _normalise(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _host_name(header: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:80`` -> ``::1``, ``a.b:5000`` -> ``a.b``."""
    header = header.strip()
    if header.startswith("["):
        literal, _, rest = header[1:].partition("]")
        # Only a port may follow an IPv6 literal: "[::1].evil.example" is not loopback.
        return _normalise(literal) if not rest or re.fullmatch(r":\d*", rest) else ""
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return _normalise(header)


def host_allowed(header: str, policy: HostPolicy) -> bool:
    """Whether a request with this ``Host`` header may be answered."""
    if policy.any_host:
        return True
    name = _host_name(header)
    if not name:
        return False
    if name in _LOOPBACK_NAMES or name.endswith(".localhost") or name in policy.names:
        return True
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays/objects in a JSON text, brackets inside strings ignored.

    >>> json_depth(b'{"a": [[1], "]]]"]}')
    3
    """
    # Drop escapes (a backslash pair first, so that \\" still ends a string), keep only quotes
    # and brackets (C-speed byte ops); a bracket is in a string when an odd number of quotes
    # precede it. About one orjson parse of the same body in cost.
    kept = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    chars = np.frombuffer(kept, dtype=np.uint8)
    outside = (np.cumsum(chars == ord('"')) & 1) == 0
    return int(np.cumsum(_STEP[chars] * outside).max(initial=0))


def too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests deeper than ``limit``; bodies with few brackets skip the scan."""
    return raw.count(b"[") + raw.count(b"{") > limit and json_depth(raw) > limit


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _media_type(scope: Scope) -> str | None:
    raw = _header(scope, b"content-type")
    return None if raw is None else raw.split(";", 1)[0].strip().lower()


def _is_upload(method: str, path: str) -> bool:
    return method == "PUT" or (method == "POST" and path.startswith(_UPLOAD_POST_PREFIXES))


def _may_have_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return (length is not None and length.strip() not in ("", "0")) or (
        _header(scope, b"transfer-encoding") is not None
    )


@dataclass(frozen=True)
class Limits:
    """Body limits in bytes: API calls (read before the route) and uploads (streamed)."""

    request_bytes: int
    upload_bytes: int


class HardeningMiddleware:
    """The checks in this module's docstring, as ASGI middleware around the whole app."""

    def __init__(
        self, app: ASGIApp, *, hosts: HostPolicy, limits: Limits, on_refused: OnRefused | None = None
    ) -> None:
        self.app, self.hosts, self.limits, self.on_refused = app, hosts, limits, on_refused

    @classmethod
    def options(cls, settings: Settings) -> dict[str, object]:
        """``add_middleware`` keyword arguments from the settings."""
        return {
            "hosts": HostPolicy.build(settings.allowed_hosts, settings.bind_host),
            "limits": Limits(settings.max_request_bytes, settings.max_upload_bytes),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        reason = HOST
        try:
            self._check_host(scope)
            if scope["type"] == "http":
                reason = CONTENT_TYPE
                self._check_content_type(scope)
                reason = BODY_TOO_LARGE
                receive = await self._checked_body(scope, receive)
        except LoopmlError as exc:
            if reason == BODY_TOO_LARGE and not isinstance(exc, PayloadTooLarge):
                reason = JSON_TOO_DEEP
            await self._notify(scope, reason, exc)
            await _refuse(exc, scope, send)
            return
        await self.app(scope, receive, _with_safe_headers(scope, send))
        if isinstance(receive, _Counted) and receive.over:  # an upload refused inside the route
            await self._notify(scope, BODY_TOO_LARGE, receive.over[0])

    async def _notify(self, scope: Scope, reason: str, exc: LoopmlError) -> None:
        if self.on_refused is not None:
            await run_in_threadpool(self.on_refused, scope, reason, exc)

    def _check_host(self, scope: Scope) -> None:
        host = _header(scope, b"host")
        if host is not None and not host_allowed(host, self.hosts):
            raise InvalidInput(
                f"Host {host!r} is not one this server answers to (DNS rebinding protection); "
                "add it to LOOPML_ALLOWED_HOSTS on the server if it is yours",
                details={"field": "Host", "host": host},
            )

    def _check_content_type(self, scope: Scope) -> None:
        path: str = scope["path"]
        if scope["method"] != "POST" or path.startswith(CSRF_EXEMPT_PREFIXES):
            return
        media = _media_type(scope)
        refused = media in SIMPLE_TYPES or (
            media is None and path.startswith(JSON_API_PREFIXES) and _may_have_body(scope)
        )
        if refused:
            raise UnsupportedMediaType(
                f"POST {path} with Content-Type {media or '(none)'} is refused: send "
                "'Content-Type: application/json' (form and text/plain posts are how a "
                "cross-site page forges requests)",
                details={"field": "Content-Type", "content_type": media},
            )

    async def _checked_body(self, scope: Scope, receive: Receive) -> Receive:
        method, path = scope["method"], scope["path"]
        limit = self.limits.upload_bytes if _is_upload(method, path) else self.limits.request_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        if not _may_have_body(scope):
            return receive
        if _is_upload(method, path):
            return _counting(receive, limit)
        body = await _read_all(receive, limit)
        media = _media_type(scope) or ""
        if (media.endswith("/json") or media.endswith("+json")) and too_deep(body):
            raise InvalidInput(
                f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels; flatten it",
                details={"field": "body", "max_depth": MAX_JSON_DEPTH},
            )
        return _replay(body, receive)


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is {size} bytes or more; the server accepts at most {limit} here "
        "(LOOPML_MAX_REQUEST_BYTES for API calls, LOOPML_MAX_UPLOAD_BYTES for uploads)",
        details={"field": "body", "limit": limit},
    )


async def _read_all(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # the client's disconnect, for streaming responses
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class _Counted:
    """``receive`` that raises :class:`PayloadTooLarge` once the body passes ``limit`` (and keeps
    it in ``over``); the routes spool an upload completely before storing it, so nothing partial
    is written."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive, self.limit, self.size = receive, limit, 0
        self.over: list[PayloadTooLarge] = []

    async def __call__(self) -> Message:
        message = await self.receive()
        self.size += len(message.get("body", b""))
        if self.size > self.limit:
            exc = _too_large(self.size, self.limit)
            self.over.append(exc)
            raise exc
        return message


def _counting(receive: Receive, limit: int) -> Receive:
    return _Counted(receive, limit)


def _with_safe_headers(scope: Scope, send: Send) -> Send:
    download = scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
    download = download and _ARTIFACT_DOWNLOADS.search(scope["path"]) is not None
    name = scope["path"].rstrip("/").rsplit("/", 1)[-1] or "artifact"

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _NOSNIFF[0]]
            headers.append(_NOSNIFF)
            if download and message.get("status", 200) < 300:
                headers = [(k, v) for k, v in headers if k.lower() != b"content-disposition"]
                disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
                headers.append((b"content-disposition", disposition.encode("latin-1")))
                headers.append((b"content-security-policy", b"sandbox; default-src 'none'"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def _refuse(exc: LoopmlError, scope: Scope, send: Send) -> None:
    body = orjson.dumps(exc.to_dict())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        # The request body may be unread: close rather than let it be parsed as the next request.
        (b"connection", b"close"),
    ]
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
