"""The inference ASGI app: endpoints behind the v2 and MLflow protocols.

One :class:`InferenceServer` serves either a single implicit endpoint (``loopml serve``) or
every endpoint of an :class:`~loopml.serving.service.EndpointService` (inside
``loopml server``). Per request it picks a variant with the endpoint's traffic router,
validates the body against that version's signature, predicts (through the micro-batcher
when batching is on), answers with the request id (``x-request-id`` header, ``id`` in v2),
and then, off the request path, appends a prediction-log record, counts metrics, feeds the
rollback judge and runs shadow copies.

Routes (``E`` is an endpoint name):

* Open Inference Protocol v2: ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2``,
  ``/v2/models/E[/versions/V]``, ``.../ready``; ``POST .../infer``;
* MLflow scoring: ``POST /endpoints/E/invocations`` (and ``/invocations``, ``/ping``,
  ``/health``, ``/version`` for the single endpoint of ``loopml serve``);
* ``GET /metrics`` in Prometheus text format.

Endpoints load lazily on their first request; an updated endpoint (a higher ``revision``,
checked at most every ``refresh_s``) is rebuilt beside the running one and swapped in, so
in-flight requests finish on the old version.

>>> server = InferenceServer.single(Endpoint(...))    # doctest: +SKIP
>>> app = server.app()                                # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast, get_args

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from loopml import __version__
from loopml.errors import InvalidInput, LoopmlError, NotFound, Unavailable
from loopml.serving.batching import MicroBatcher
from loopml.serving.host import EndpointRuntime, LoadedVersion, Loader, build_runtime, load_version
from loopml.serving.metrics import ServingMetrics
from loopml.serving.predlog import PredictionLog
from loopml.serving.protocols import mlflow as mlflow_protocol
from loopml.serving.protocols import v2
from loopml.serving.records import DeploymentEvent, Endpoint, QualitySignal, Variant
from loopml.serving.service import EndpointService
from loopml.serving.validation import output_columns

log = logging.getLogger("loopml.serving")
MAX_BODY_BYTES = 64 * 1024 * 1024
_JSON = "application/json"
_V2_TYPES = ("", _JSON, "application/octet-stream")
AB_METRICS: tuple[str, ...] = get_args(QualitySignal)


class PayloadTooLarge(LoopmlError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"


class EndpointSource(Protocol):
    """Where endpoint definitions come from: a fixed one, or an :class:`EndpointService`."""

    def get(self, name: str) -> Endpoint: ...

    def rollback(self, name: str, event: DeploymentEvent) -> None: ...


class FixedEndpoints:
    """The endpoints of ``loopml serve``: given at start, changed only by rollbacks in memory."""

    def __init__(self, *endpoints: Endpoint) -> None:
        self.endpoints = {e.name: e for e in endpoints}
        self.events: list[DeploymentEvent] = []

    def get(self, name: str) -> Endpoint:
        if name not in self.endpoints:
            raise NotFound(
                f"endpoint {name!r} is not served here; this server serves {', '.join(self.endpoints)}",
                details={"name": name},
            )
        return self.endpoints[name]

    def rollback(self, name: str, event: DeploymentEvent) -> None:
        self.events.append(event)


class ServiceEndpoints:
    """Endpoints from an :class:`EndpointService` (the server's metadata database)."""

    def __init__(self, service: EndpointService) -> None:
        self.service = service

    def get(self, name: str) -> Endpoint:
        return self.service.get_endpoint(name)

    def rollback(self, name: str, event: DeploymentEvent) -> None:
        self.service.rollback(name, event)


@dataclass(slots=True)
class _Entry:
    runtime: EndpointRuntime
    checked: float
    swapping: bool = False


@dataclass(slots=True)
class _Outcome:
    """What the background bookkeeping of one request needs."""

    runtime: EndpointRuntime
    variant: Variant
    handle: LoadedVersion
    request_id: str
    model_input: Any
    result: Any
    latency_ms: float
    status: str


class InferenceServer:
    """Hosts endpoints and answers inference requests (see the module docstring)."""

    def __init__(
        self,
        source: EndpointSource,
        *,
        loader: Loader = load_version,
        metrics: ServingMetrics | None = None,
        prediction_log: PredictionLog | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        refresh_s: float = 1.0,
        default_endpoint: str | None = None,
    ) -> None:
        self.source = source
        self.loader = loader
        self.metrics = metrics or ServingMetrics()
        self.prediction_log = prediction_log
        if prediction_log is not None:
            self.metrics.track_log_dropped(lambda: prediction_log.dropped)
        self.max_body_bytes = max_body_bytes
        self.refresh_s = refresh_s
        self.default_endpoint = default_endpoint
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._models: dict[tuple[str, bool], LoadedVersion] = {}
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    def single(cls, endpoint: Endpoint, **kwargs: Any) -> InferenceServer:
        """Serve one endpoint, also at the root paths (``/invocations``, ``/v2/models/NAME``)."""
        return cls(FixedEndpoints(endpoint), default_endpoint=endpoint.name, **kwargs)

    # ---- endpoint runtimes -----------------------------------------------------------------
    def invalidate(self, name: str) -> None:
        """Re-read ``name`` on its next request (the native API calls this after an update)."""
        entry = self._entries.get(name)
        if entry is not None:
            entry.checked = 0.0

    def warm(self, name: str) -> None:
        """Load (or reload) ``name`` in the background now, so its next request finds it ready
        (the native API calls this after a create or an update; call on the event loop)."""
        self.invalidate(name)

        async def load() -> None:
            try:
                await self.runtime(name)
            except Exception as exc:  # reported to the first request that needs it
                log.warning("endpoint %s: preload failed: %s", name, exc)

        self._spawn(load())

    async def runtime(self, name: str) -> EndpointRuntime:
        """The runtime serving ``name`` now: loaded on first use, swapped after an update."""
        entry = self._entries.get(name)
        now = time.monotonic()
        if entry is not None and (now - entry.checked < self.refresh_s or entry.swapping):
            return entry.runtime
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            entry = self._entries.get(name)
            if entry is not None and time.monotonic() - entry.checked < self.refresh_s:
                return entry.runtime
            try:
                endpoint = await asyncio.to_thread(self.source.get, name)
            except NotFound:
                await self._drop(name)
                raise
            if entry is not None and endpoint.revision == entry.runtime.endpoint.revision:
                entry.checked = time.monotonic()
                return entry.runtime
            if entry is None:
                runtime = await asyncio.to_thread(self._build, endpoint)
                self._entries[name] = _Entry(runtime, time.monotonic())
                return runtime
            # An update: keep serving the old revision while the new one loads.
            entry.swapping = True
            self._spawn(self._swap(name, entry, endpoint))
            return entry.runtime

    def _build(self, endpoint: Endpoint) -> EndpointRuntime:
        def on_batch(version: str, size: int) -> None:
            self.metrics.batch(endpoint.name, version, size)

        runtime = build_runtime(endpoint, self.loader, cache=self._models, on_batch=on_batch)
        for variant_name, batcher in runtime.batchers.items():
            version = runtime.versions[variant_name].version
            self.metrics.track_queue_depth(endpoint.name, version, _depth_of(batcher))
        self.metrics.set_weights(endpoint.name, {v.name: v.weight for v in endpoint.policy.variants})
        return runtime

    async def _swap(self, name: str, entry: _Entry, endpoint: Endpoint) -> None:
        try:
            runtime = await asyncio.to_thread(self._build, endpoint)
        except Exception:
            log.exception(
                "endpoint %s: revision %d failed to load; still serving %d",
                name,
                endpoint.revision,
                entry.runtime.endpoint.revision,
            )
            entry.swapping, entry.checked = False, time.monotonic()
            return
        old = entry.runtime
        runtime.adopt(old)
        self._entries[name] = _Entry(runtime, time.monotonic())
        self._prune()
        self._forget_queues(old, runtime)
        await old.close()  # its queued requests finish on the old version

    async def _drop(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._prune()
            self._forget_queues(entry.runtime, None)
            await entry.runtime.close()

    def _forget_queues(self, old: EndpointRuntime, new: EndpointRuntime | None) -> None:
        """Drop the queue-depth gauges of versions ``new`` no longer batches (retired)."""
        kept = {new.versions[v].version for v in new.batchers} if new is not None else set()
        for variant in old.batchers:
            version = old.versions[variant].version
            if version not in kept:
                self.metrics.forget(old.name, version)

    def _prune(self) -> None:
        used = {
            (h.uri, e.runtime.endpoint.trust_pickle)
            for e in self._entries.values()
            for h in e.runtime.versions.values()
        }
        for key in [k for k in self._models if k not in used]:
            del self._models[key]

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- the request path ------------------------------------------------------------------
    async def infer(
        self,
        request: Request,
        name: str,
        decode: Callable[[bytes, LoadedVersion], Any],
        encode: Callable[[Any, LoadedVersion, str], Response],
        version: str | None = None,
    ) -> Response:
        """Read, route, validate, predict, answer; bookkeeping is scheduled after."""
        start = time.perf_counter()
        request_id = request.headers.get("x-request-id") or os.urandom(16).hex()
        runtime: EndpointRuntime | None = None
        variant: Variant | None = None
        try:
            body = await self._read_body(request)
            runtime = await self.runtime(name)
            variant, shadows = self._route(runtime, request, version)
            handle = runtime.versions[variant.name]
            model_input = decode(body, handle)
            result = await runtime.predict(variant.name, model_input)
            response = encode(result, handle, request_id)
        except LoopmlError as exc:
            return self._failed(exc, name, runtime, variant, request_id, start)
        except Exception:
            log.exception("endpoint %s: predict failed", name)
            err = LoopmlError(f"endpoint {name!r}: the model failed to predict; see the server log")
            return self._failed(err, name, runtime, variant, request_id, start)
        latency = (time.perf_counter() - start) * 1000.0
        response.headers["x-request-id"] = request_id
        outcome = _Outcome(runtime, variant, handle, request_id, model_input, result, latency, "ok")
        self._after(outcome)
        for shadow in shadows:
            self._spawn(self._shadow(runtime, shadow, request_id, model_input))
        return response

    def _route(
        self, runtime: EndpointRuntime, request: Request, version: str | None
    ) -> tuple[Variant, list[Variant]]:
        if version is None:
            decision = runtime.router.choose(request.headers.get(runtime.router.policy.sticky_header))
            return decision.variant, decision.shadows
        found = runtime.by_version(version)
        if found is None:
            served = sorted({h.version for h in runtime.versions.values()})
            raise NotFound(
                f"endpoint {runtime.name!r} serves no version {version}; it serves {', '.join(served)}",
                details={"version": version},
            )
        return found[0], []

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large(size)
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body of {size} bytes exceeds the limit of {self.max_body_bytes}; "
            "send fewer rows per request",
            details={"field": "body", "expected": f"<= {self.max_body_bytes} bytes"},
        )

    def _failed(
        self,
        exc: LoopmlError,
        name: str,
        runtime: EndpointRuntime | None,
        variant: Variant | None,
        request_id: str,
        start: float,
    ) -> Response:
        latency = (time.perf_counter() - start) * 1000.0
        kind = exc.error_code.lower()
        version = runtime.versions[variant.name].version if runtime and variant else ""
        vname = variant.name if variant else ""
        model_error = type(exc) is LoopmlError  # the model itself failed, not the request
        if runtime is not None and variant is not None and model_error:
            self.metrics.request(name, version, vname, latency, error=True, kind="predict")
            self._judge(runtime, variant, latency, error=True)
        else:
            self.metrics.error(name, version, vname, kind=kind)
        return error_response(exc, request_id)

    def _after(self, o: _Outcome) -> None:
        name, version = o.runtime.name, o.handle.version
        self.metrics.request(name, version, o.variant.name, o.latency_ms)
        o.runtime.recent.add(o.request_id, o.variant)
        self._log(o)
        self._judge(o.runtime, o.variant, o.latency_ms, error=False)

    def _log(self, o: _Outcome) -> None:
        if self.prediction_log is None:
            return
        self.prediction_log.append(
            {
                "request_id": o.request_id,
                "endpoint": o.runtime.name,
                "model_name": o.handle.model_name,
                "model_version": o.handle.version,
                "variant": o.variant.name,
                "ts": int(time.time() * 1000),
                "inputs": o.model_input,
                "outputs": o.result,
                "latency_ms": o.latency_ms,
                "status": o.status,
            }
        )

    def _judge(self, runtime: EndpointRuntime, variant: Variant, latency: float, *, error: bool) -> None:
        self._rolled_back(runtime, runtime.router.observe(variant, latency, error))

    def _rolled_back(self, runtime: EndpointRuntime, event: DeploymentEvent | None) -> None:
        if event is not None:
            self.metrics.rollback(runtime.name)
            # loopml serve keeps no revisions: publish the rolled-back split here, not on a rebuild
            policy = runtime.router.policy
            self.metrics.set_weights(runtime.name, {v.name: v.weight for v in policy.variants})
            log.warning("endpoint %s: rolled back: %s", runtime.name, event.reason)
            self._spawn(asyncio.to_thread(self.source.rollback, runtime.name, event))

    async def _shadow(
        self, runtime: EndpointRuntime, variant: Variant, request_id: str, model_input: Any
    ) -> None:
        """Predict a copy on a shadow variant; its output is logged, never returned."""
        handle = runtime.versions[variant.name]
        start = time.perf_counter()
        status, result = "ok", None
        try:
            result = await asyncio.to_thread(handle.predict, model_input)
        except Exception as exc:  # a failing shadow must never affect the live answer
            status = f"error: {type(exc).__name__}"
        latency = (time.perf_counter() - start) * 1000.0
        self.metrics.request(runtime.name, handle.version, variant.name, latency, error=status != "ok")
        runtime.router.observe(variant, latency, status != "ok")
        self._log(_Outcome(runtime, variant, handle, request_id, model_input, result, latency, status))

    # ---- statistics and feedback (the native API's /traffic and /feedback) ----------------
    async def traffic(self, name: str, metric: str | None = None, alpha: float = 0.05) -> dict[str, Any]:
        """Per-variant statistics and the A/B report of ``name`` (``metric`` defaults to the
        policy's ``ab_metric``), as gathered by this process since the variants joined."""
        if metric is not None and metric not in AB_METRICS:
            raise InvalidInput(
                f"A/B metric {metric!r} is unknown; use {', '.join(AB_METRICS)}",
                details={"field": "metric", "expected": list(AB_METRICS)},
            )
        if not 0.0 < alpha < 1.0:
            raise InvalidInput(f"alpha {alpha} must be between 0 and 1", details={"field": "alpha"})
        runtime = await self.runtime(name)
        router = runtime.router
        return {
            "endpoint": name,
            "revision": runtime.endpoint.revision,
            "policy": router.policy.to_dict(),
            "stats": router.stats(),
            "ab": router.ab_report(cast(QualitySignal | None, metric), alpha=alpha),
        }

    async def feedback(self, name: str, request_id: str, quality: float) -> dict[str, Any]:
        """Credit a quality score (higher is better; e.g. a delayed label's correctness) to the
        variant that answered ``request_id``; it feeds the rollback judge and the A/B report."""
        if not math.isfinite(quality):
            raise InvalidInput(f"quality {quality} must be a finite number", details={"field": "quality"})
        runtime = await self.runtime(name)
        variant = runtime.recent.get(request_id)
        if variant is None:
            raise NotFound(
                f"endpoint {name!r} has no recent request {request_id!r} in this server process; "
                f"send feedback for one of its last {runtime.recent.limit} answered requests",
                details={"request_id": request_id},
            )
        self._rolled_back(runtime, runtime.router.observe_quality(variant, quality))
        return {"endpoint": name, "request_id": request_id, "variant": variant.name, "quality": quality}

    async def close(self) -> None:
        for name in list(self._entries):
            await self._drop(name)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)

    # ---- ASGI ------------------------------------------------------------------------------
    def routes(self, *, root: bool | None = None) -> list[BaseRoute]:
        """The routes; ``root`` adds MLflow's root paths for the default endpoint."""
        return build_routes(self, root=self.default_endpoint is not None if root is None else root)

    def app(self) -> Starlette:
        """A standalone ASGI app (``loopml serve``) that closes the server on shutdown."""
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def lifespan(_app: Starlette) -> Any:
            yield
            await self.close()

        return Starlette(routes=self.routes(), lifespan=lifespan)


def _depth_of(batcher: MicroBatcher[Any, Any]) -> Callable[[], int]:
    return lambda: batcher.queue_depth


def error_response(exc: LoopmlError, request_id: str) -> Response:
    """Loopml's error body plus v2's ``error`` field, so tritonclient shows the message too."""
    body = {**exc.to_dict(), "error": exc.message}
    headers = {"x-request-id": request_id}
    if isinstance(exc, Unavailable):
        headers["retry-after"] = str(int(max(1, float(exc.details.get("retry_after", 1)))))
    return Response(orjson.dumps(body), status_code=exc.status_code, media_type=_JSON, headers=headers)


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type=_JSON
    )


def v2_decoder(request: Request) -> Callable[[bytes, LoadedVersion], Any]:
    """Decode a v2 body for the chosen version; remembers what outputs the caller asked for."""
    kind = mlflow_protocol.media_type(request.headers.get("content-type"))
    if kind not in _V2_TYPES:
        raise mlflow_protocol.UnsupportedMediaType(
            f"content type {kind!r} is not supported by v2 infer; send application/json "
            "(or the binary tensor extension with Inference-Header-Content-Length)",
            details={"field": "content-type", "expected": list(_V2_TYPES[1:])},
        )
    raw = request.headers.get(v2.HEADER_LENGTH)
    header_length = int(raw) if raw is not None and raw.isdigit() else None
    if raw is not None and header_length is None:
        raise v2._bad("Inference-Header-Content-Length", "is not a non-negative integer")
    state: dict[str, v2.V2Request] = {}

    def decode(body: bytes, handle: LoadedVersion) -> Any:
        parsed = v2.decode_request(body, header_length)
        state["request"] = parsed
        return v2.to_model_input(handle.spec, parsed.inputs)

    decode.state = state  # type: ignore[attr-defined]
    return decode


def v2_encoder(
    endpoint: str, state: dict[str, v2.V2Request]
) -> Callable[[Any, LoadedVersion, str], Response]:
    def encode(result: Any, handle: LoadedVersion, request_id: str) -> Response:
        parsed = state["request"]
        outputs = [(n, a if isinstance(a, np.ndarray) else np.asarray(a)) for n, a in output_columns(result)]
        body, headers = v2.encode_response(
            endpoint, handle.version, parsed.id or request_id, outputs, parsed.outputs, parsed.binary_output
        )
        media = headers.pop("content-type")
        return Response(body, media_type=media, headers=headers)

    return encode


def mlflow_codec(
    request: Request,
) -> tuple[Callable[[bytes, LoadedVersion], Any], Callable[[Any, LoadedVersion, str], Response]]:
    content_type = request.headers.get("content-type")

    def decode(body: bytes, handle: LoadedVersion) -> Any:
        return mlflow_protocol.decode(body, content_type, handle.spec)

    def encode(result: Any, _handle: LoadedVersion, _request_id: str) -> Response:
        return Response(mlflow_protocol.encode(result), media_type=_JSON)

    return decode, encode


def build_routes(server: InferenceServer, *, root: bool) -> list[BaseRoute]:
    """All routes; with ``root``, MLflow's ``/invocations``, ``/ping``, ``/health`` and
    ``/version`` answer for the default endpoint (``loopml serve``)."""

    async def live(_request: Request) -> Response:
        return json_response({"live": True})

    async def ready(_request: Request) -> Response:
        return json_response({"ready": True})

    async def metadata(_request: Request) -> Response:
        return json_response(v2.server_metadata(__version__))

    async def model_metadata(request: Request) -> Response:
        name, version = request.path_params["model"], request.path_params.get("version")
        try:
            runtime = await server.runtime(name)
        except LoopmlError as exc:
            return error_response(exc, "")
        handles = list(runtime.versions.values())
        if version is not None:
            found = runtime.by_version(version)
            if found is None:
                return error_response(NotFound(f"endpoint {name!r} serves no version {version}"), "")
            handles = [found[1]]
        primary = handles[0] if version is not None else runtime.primary
        served = sorted({h.version for h in runtime.versions.values()})
        return json_response(v2.model_metadata(name, served, primary.spec, primary.signature))

    async def model_ready(request: Request) -> Response:
        name, version = request.path_params["model"], request.path_params.get("version")
        try:
            runtime = await server.runtime(name)
        except LoopmlError as exc:
            return error_response(exc, "")
        ok = version is None or runtime.by_version(version) is not None
        return json_response({"name": name, "ready": ok}, 200 if ok else 404)

    async def infer(request: Request) -> Response:
        name, version = request.path_params["model"], request.path_params.get("version")
        try:
            decode = v2_decoder(request)
        except LoopmlError as exc:
            server.metrics.error(name, "", "", kind=exc.error_code.lower())
            return error_response(exc, request.headers.get("x-request-id", ""))
        encode = v2_encoder(name, decode.state)  # type: ignore[attr-defined]
        return await server.infer(request, name, decode, encode, version)

    async def invocations(request: Request) -> Response:
        name = request.path_params.get("endpoint") or server.default_endpoint
        assert name is not None
        decode, encode = mlflow_codec(request)
        return await server.infer(request, name, decode, encode)

    async def ping(_request: Request) -> Response:
        return Response("\n", media_type="application/json")

    async def version_info(_request: Request) -> Response:
        return Response(__version__, media_type="application/json")

    async def metrics(_request: Request) -> Response:
        body, content_type = server.metrics.render()
        return Response(body, media_type=content_type)

    model = "/v2/models/{model}"
    versioned = "/v2/models/{model}/versions/{version}"
    # Starlette matches routes in order: the inference paths come first (the hot path).
    routes: list[BaseRoute] = [
        Route(model + "/infer", infer, methods=["POST"]),
        Route("/endpoints/{endpoint}/invocations", invocations, methods=["POST"]),
    ]
    if root:
        routes.append(Route("/invocations", invocations, methods=["POST"]))
    routes += [
        Route(versioned + "/infer", infer, methods=["POST"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", metadata, methods=["GET"]),
        Route(model, model_metadata, methods=["GET"]),
        Route(versioned, model_metadata, methods=["GET"]),
        Route(model + "/ready", model_ready, methods=["GET"]),
        Route(versioned + "/ready", model_ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if root:
        routes += [
            Route("/ping", ping, methods=["GET"]),
            Route("/health", ping, methods=["GET"]),
            Route("/version", version_info, methods=["GET"]),
        ]
    return routes
