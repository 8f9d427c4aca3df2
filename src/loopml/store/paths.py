"""Confinement of user-supplied artifact paths to their root.

Every path a user sends is checked here before it touches a filesystem: raw,
URL-decoded and double-decoded forms are all refused if any of them holds a
parent segment, an absolute path, a drive letter, a backslash, ``#``, ``;``,
NUL or another control character.

>>> safe_relpath("model/MLmodel")
'model/MLmodel'
>>> safe_relpath("a/%2e%2e/b")
Traceback (most recent call last):
loopml.errors.InvalidInput: artifact path 'a/%2e%2e/b' is not allowed: ...
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from loopml.errors import InvalidInput

MAX_PATH_LENGTH = 1000
_DRIVE = re.compile(r"^[A-Za-z]:")
_FORBIDDEN_CHARS = ("\\", "#", ";", "\x00")
_DECODE_ROUNDS = 6


def safe_relpath(path: str, *, field: str = "path", allow_root: bool = False) -> str:
    """Return ``path`` normalised (no trailing slash) or raise :class:`InvalidInput`."""
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(
            f"artifact {field} is {len(path)} characters; the limit is {MAX_PATH_LENGTH}",
            details={"field": field},
        )
    form = path
    for _ in range(_DECODE_ROUNDS):
        reason = _reason_refused(form)
        if reason:
            raise InvalidInput(
                f"artifact {field} {path!r} is not allowed: {reason}; "
                "use a relative path of plain segments like 'model/weights.bin'",
                details={"field": field, "path": path},
            )
        decoded = unquote(form)
        if decoded == form:
            break
        form = decoded
    else:
        raise InvalidInput(
            f"artifact {field} {path!r} is not allowed: it is URL-encoded {_DECODE_ROUNDS} times over",
            details={"field": field, "path": path},
        )
    clean = path.rstrip("/")
    if not clean and not allow_root:
        raise InvalidInput(f"artifact {field} must not be empty", details={"field": field})
    return clean


def _reason_refused(form: str) -> str | None:
    if form.startswith("/"):
        return "absolute paths are refused"
    if any(_DRIVE.match(segment) for segment in form.split("/")):
        return "drive letters are refused"
    for ch in _FORBIDDEN_CHARS:
        if ch in form:
            return f"the character {ch!r} is refused"
    if any(ord(c) < 32 or ord(c) == 127 for c in form):
        return "control characters are refused"
    segments = form.rstrip("/").split("/")
    if any(s in ("..", ".") for s in segments):
        return "'.' and '..' segments are refused"
    if form.rstrip("/") and "" in segments:
        return "empty segments ('//') are refused"
    return None


def join(prefix: str, path: str) -> str:
    """Join two already-safe relative paths."""
    if not prefix:
        return path
    return f"{prefix}/{path}" if path else prefix
