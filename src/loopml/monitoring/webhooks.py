"""Alert delivery to webhooks: URLs checked against SSRF, POSTs retried with backoff.

A webhook URL is refused unless it is ``http(s)://`` and *every* address its host resolves
to is public: loopback (127.0.0.0/8, ::1, ``localhost``), private (10/8, 172.16/12,
192.168/16, fc00::/7), link-local (169.254/16 — cloud metadata — and fe80::/10),
unspecified (0.0.0.0, ::), multicast, reserved and any other non-global address (shared
100.64/10, benchmarking; IPv4 inside 6to4/Teredo/mapped IPv6) are refused, because a monitor
definition is user input and the server would otherwise POST into its own network. A
monitor that really targets an internal receiver says so with ``allow_private_webhooks``.

The check runs when the monitor is saved and again before every delivery (DNS can change
in between); redirects are not followed, so a public URL cannot bounce to a private one.

>>> validate_url("http://127.0.0.1:9/hook")
Traceback (most recent call last):
loopml.errors.InvalidInput: webhook URL 'http://127.0.0.1:9/hook' resolves to 127.0.0.1, a loopback ...
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from loopml.errors import InvalidInput

log = logging.getLogger("loopml.monitoring.webhooks")

ATTEMPTS = 4
BACKOFF_S = 0.5  # waits 0.5, 1, 2 s between the 4 attempts
TIMEOUT_S = 10.0


def _kind(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 is loopback too; 6to4 and Teredo addresses carry an IPv4 one inside.
        embedded = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if embedded is not None and (kind := _kind(embedded)) is not None:
            return kind
    for kind, flag in (
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("unspecified", addr.is_unspecified),
        ("multicast", addr.is_multicast),
        ("private", addr.is_private),
        ("reserved", addr.is_reserved),
        # Shared address space (100.64/10, where some clouds keep their metadata service at
        # 100.100.100.200), benchmarking and other special ranges are not private, but not
        # public either.
        ("non-public", not addr.is_global),
    ):
        if flag:
            return kind
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(
            f"webhook host {host!r} does not resolve ({exc}); check the URL",
            details={"field": "webhooks"},
        ) from None
    return sorted({str(info[4][0]) for info in infos})


def validate_url(url: str, *, allow_private: bool = False) -> str:
    """Return ``url`` if it is safe to POST to, else raise ``InvalidInput`` naming the field.

    >>> validate_url("http://127.0.0.1:8080/hook", allow_private=True)
    'http://127.0.0.1:8080/hook'
    """
    if not isinstance(url, str) or len(url) > 2048:
        raise InvalidInput(
            f"webhook URL {url!r} must be text of at most 2048 characters", details={"field": "webhooks"}
        )
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInput(
            f"webhook URL {url!r} is malformed: {exc}", details={"field": "webhooks"}
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"webhook URL {url!r} must be http:// or https:// with a host", details={"field": "webhooks"}
        )
    if parts.username or parts.password:
        raise InvalidInput(
            f"webhook URL {url!r} carries credentials; put a token in the path or query instead",
            details={"field": "webhooks"},
        )
    if allow_private:
        return url
    for address in resolve(parts.hostname, port):
        kind = _kind(ipaddress.ip_address(address.split("%", 1)[0]))
        if kind is not None:
            raise InvalidInput(
                f"webhook URL {url!r} resolves to {address}, a {kind} address; loopml does not "
                "post alerts into private networks unless the monitor sets allow_private_webhooks",
                details={"field": "webhooks", "address": address},
            )
    return url


def deliver(
    url: str,
    payload: dict[str, Any],
    *,
    allow_private: bool = False,
    attempts: int = ATTEMPTS,
    backoff_s: float | None = None,
    timeout_s: float = TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST ``payload`` as JSON to ``url``, retrying connection errors, timeouts, 429 and 5xx
    with exponential backoff. Never raises: returns the delivery record that is stored on the
    alert (``{"url", "ok", "attempts", "status", "error"}``).

    >>> deliver("https://hooks.example.com/x", {"alert": "..."})   # doctest: +SKIP
    {'url': 'https://hooks.example.com/x', 'ok': True, 'attempts': 1, 'status': 200, 'error': None}
    """
    backoff_s = BACKOFF_S if backoff_s is None else backoff_s
    record: dict[str, Any] = {"url": url, "ok": False, "attempts": 0, "status": None, "error": None}
    try:
        validate_url(url, allow_private=allow_private)  # again: DNS may have changed since saving
    except InvalidInput as exc:
        record["error"] = exc.message
        log.warning("webhook refused: %s", exc.message)
        return record
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        for attempt in range(max(1, attempts)):
            record["attempts"] = attempt + 1
            try:
                response = client.post(url, json=payload)
                record["status"] = response.status_code
                if response.status_code < 300:
                    record["ok"], record["error"] = True, None
                    return record
                record["error"] = f"answered {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # a 4xx other than 429 will not get better by retrying
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < attempts:
                sleep(backoff_s * 2**attempt)
    log.warning("webhook %s failed after %d attempt(s): %s", url, record["attempts"], record["error"])
    return record
