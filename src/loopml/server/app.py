"""The loopml server: one FastAPI app assembling the routers over capability services.

>>> app = create_app(Settings.load(env={"LOOPML_HOME": "/tmp/lm"}))  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from loopml import __version__, ui
from loopml.config import Settings
from loopml.errors import InvalidInput, LoopmlError
from loopml.governance import audit
from loopml.governance.identity import IdentityService
from loopml.monitoring.labels import default_root as labels_root
from loopml.monitoring.local import LocalMonitorService
from loopml.registry.local import LocalRegistryService
from loopml.server import (
    api_v1,
    api_v1_data,
    api_v1_features,
    api_v1_governance,
    api_v1_monitoring,
    api_v1_pipelines,
    api_v1_registry,
    api_v1_serving,
    mlflow_artifacts,
    mlflow_compat,
    mlflow_registry,
)
from loopml.server.auth import AuthMiddleware, Gatekeeper, auth_required, refusal_recorder
from loopml.server.dispatch import FastPathDispatcher
from loopml.server.hardening import HardeningMiddleware
from loopml.server.responses import JSONResponse
from loopml.serving.app import InferenceServer, ServiceEndpoints
from loopml.serving.local import LocalEndpointService
from loopml.serving.predlog import PredictionLog, default_root
from loopml.tracking.local import LocalTrackingService

log = logging.getLogger("loopml.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.load()
    app = FastAPI(
        title="loopml",
        version=__version__,
        description="loopml's native API (/api/v1) and the MLflow REST API (/api/2.0/mlflow).",
        default_response_class=JSONResponse,
    )
    app.state.tracking = LocalTrackingService.from_settings(settings)
    app.state.registry = LocalRegistryService.over(app.state.tracking, settings.user)
    app.include_router(api_v1.router)
    app.include_router(api_v1_registry.router)
    api_v1_data.install(app, app.state.tracking, settings)
    app.include_router(api_v1_serving.router)
    _mount_inference(app, settings)
    _mount_monitoring(app, settings)
    api_v1_pipelines.install(app, settings, app.state.monitoring)
    ui.install(app, settings)
    feature_routes = api_v1_features.install(app, app.state.tracking, settings)
    fast_routes = [*mlflow_compat.routes(), *mlflow_artifacts.routes(), *mlflow_registry.routes()]
    fast_routes += feature_routes
    app.add_middleware(FastPathDispatcher, routes=fast_routes)
    _install_governance(app, settings)  # auth sees every route, the fast path included
    # Outermost (added last): Host, cross-site POST, body-size and JSON-depth checks for every route.
    # Each refusal is appended to the audit log (in a worker thread), like auth's own refusals.
    refused = refusal_recorder(app.state.tracking.db)
    app.add_middleware(HardeningMiddleware, **HardeningMiddleware.options(settings), on_refused=refused)  # type: ignore[arg-type]
    app.add_exception_handler(LoopmlError, _loopml_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)

    @app.get("/health", include_in_schema=False)
    def health() -> Response:
        return Response("OK", media_type="text/plain")

    return app


def _install_governance(app: FastAPI, settings: Settings) -> None:
    """Users, tokens and roles under /api/v1/auth, the audit log under /api/v1/audit, and the
    middleware that authenticates (when auth is on), authorizes and binds the audit context."""
    audit.install()
    app.state.identity = IdentityService(app.state.tracking.db)
    api_v1_governance.install(app)
    tracking, registry = app.state.tracking, app.state.registry

    def run_experiment(run_id: str) -> str | None:
        try:
            return str(tracking.get_run(run_id).info.experiment_id)
        except LoopmlError:
            return None

    def request_model(request_id: str) -> str | None:
        try:
            return str(registry.get_request(request_id).name)
        except LoopmlError:
            return None

    enabled = auth_required(settings)
    app.state.auth_enabled = enabled
    gk = Gatekeeper(app.state.identity, enabled, run_experiment, request_model)
    app.add_middleware(AuthMiddleware, gatekeeper=gk)  # type: ignore[arg-type]


def _mount_inference(app: FastAPI, settings: Settings) -> None:
    """Endpoints answer at /v2/models/{endpoint}/... and /endpoints/{endpoint}/invocations,
    loaded on their first request and reloaded when updated."""
    app.state.endpoints = LocalEndpointService(app.state.tracking.db, settings.user)
    plog = PredictionLog(default_root(settings))
    inference = InferenceServer(ServiceEndpoints(app.state.endpoints), prediction_log=plog)
    app.state.inference = inference
    app.router.routes.extend(inference.routes(root=False))
    app.router.on_shutdown.append(inference.close)


def _mount_monitoring(app: FastAPI, settings: Settings) -> None:
    """Labels, performance and monitors under /api/v1; scheduled monitors run in the background
    unless LOOPML_MONITOR_SCHEDULER=0. A run first writes the queued prediction log."""
    svc = LocalMonitorService(
        app.state.tracking.db, app.state.data, default_root(settings), labels_root(settings), settings.user
    )
    svc.before_run = app.state.inference.prediction_log.flush
    api_v1_monitoring.install(app, svc, settings)


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own app)."""
    app = create_app(Settings.load())
    # Everything built so far lives as long as the process: move it out of the cyclic GC's
    # sight, so the collections that ingest's many small allocations trigger stay cheap.
    gc.collect()
    gc.freeze()
    return app


async def _loopml_error(_request: Request, exc: LoopmlError) -> Response:
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    err = InvalidInput(
        f"field {where!r}: {first.get('msg', 'invalid')}",
        details={
            "field": where,
            "errors": [{"loc": e.get("loc"), "msg": e.get("msg")} for e in errors],
        },
    )
    return JSONResponse(err.to_dict(), status_code=400)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {
        "error_code": "INTERNAL_ERROR",
        "message": f"internal error: {type(exc).__name__}",
        "details": {},
    }
    return JSONResponse(body, status_code=500)
