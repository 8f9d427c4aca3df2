"""Fast JSON responses and request-body parsing shared by the routers."""

from __future__ import annotations

import tempfile
from typing import IO, Any

import orjson
import starlette.responses
from fastapi import Request

from loopml.errors import InvalidInput

MAX_BODY_BYTES = 64 * 1024 * 1024


class JSONResponse(starlette.responses.JSONResponse):
    """orjson-encoded; several times cheaper than the stdlib encoder on large runs. A JSONResponse
    subclass, so FastAPI documents each route's response schema (not ``{"type": "string"}``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or ``InvalidInput`` saying what is wrong with it."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInput(f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", details={"field": "body"}) from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object", details={"field": "body"})
    return body


SPOOL_MEMORY_BYTES = 8 * 1024 * 1024


async def spool_body(request: Request) -> IO[bytes]:
    """The request body in a temp file (memory up to 8 MiB), rewound, for streaming uploads."""
    spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - caller closes
    try:
        async for chunk in request.stream():
            spooled.write(chunk)
    except BaseException:  # e.g. PayloadTooLarge from the hardening middleware: no leaked file
        spooled.close()
        raise
    spooled.seek(0)
    return spooled  # type: ignore[return-value]
