"""``loopml serve MODEL_URI``: one model behind the v2 and MLflow protocols.

$ loopml serve models:/churn@champion --port 8080
$ loopml serve churn@champion --max-batch-size 32 --max-latency-ms 5
"""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    model_uri: Annotated[
        str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/PATH.")
    ],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    max_batch_size: Annotated[
        int, typer.Option(min=0, help="Micro-batch up to N concurrent requests (0: no batching).")
    ] = 0,
    max_latency_ms: Annotated[
        float, typer.Option(min=0, help="Longest a request waits for its batch to start.")
    ] = 5.0,
    name: Annotated[str | None, typer.Option(help="Endpoint name (default: the model's name).")] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write the prediction log.")] = False,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Allow pickle-based (pyfunc) models: they run code when loaded."),
    ] = False,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body accepted (413 above).")] = (
        64 * 1024 * 1024
    ),
) -> None:
    """Serve one model: Open Inference Protocol v2 (/v2/...) and MLflow's /invocations.

    The same request hardening as ``loopml server``: a foreign ``Host`` gets 400 (DNS
    rebinding; ``LOOPML_ALLOWED_HOSTS`` adds names), a cross-site text/plain or form POST 415,
    a body over ``--max-body-bytes`` 413 and deeply nested JSON 400."""
    import uvicorn

    from loopml.config import Settings
    from loopml.server.hardening import HardeningMiddleware, HostPolicy, Limits
    from loopml.serving.app import InferenceServer
    from loopml.serving.predlog import PredictionLog, default_root
    from loopml.serving.records import BatchingConfig, Endpoint, TrafficPolicy, normalize_model_uri

    settings = Settings.load()
    uri = normalize_model_uri(model_uri)
    policy = TrafficPolicy.single(uri)
    batching = BatchingConfig(
        enabled=max_batch_size > 0, max_batch_size=max(1, max_batch_size), max_latency_ms=max_latency_ms
    )
    endpoint = Endpoint(
        name or _model_name(uri), policy, batching, 0, 0, settings.user, trust_pickle=trust_pickle
    )
    plog = None if no_log else PredictionLog(default_root(settings))
    server = InferenceServer.single(endpoint, prediction_log=plog, max_body_bytes=max_body_bytes)
    typer.echo(f"serving {uri} as {endpoint.name!r} on http://{host}:{port} (Ctrl+C to stop)", err=True)
    app = HardeningMiddleware(
        server.app(),
        hosts=HostPolicy.build(settings.allowed_hosts, host),
        limits=Limits(max_body_bytes, max_body_bytes),
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _model_name(uri: str) -> str:
    body = uri.split(":/", 1)[-1].strip("/")
    if "@" in body:
        return body.rpartition("@")[0].rsplit("/", 1)[-1] or "model"
    parts = [p for p in body.split("/") if p]
    return parts[-2] if len(parts) >= 2 else (parts[0] if parts else "model")
