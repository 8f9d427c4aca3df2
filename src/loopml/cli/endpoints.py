"""``loopml endpoints``: named inference endpoints hosted by ``loopml server``.

$ loopml endpoints create churn --model churn@champion
$ loopml endpoints update churn --canary churn@challenger:10 --reason "try v7"
$ loopml endpoints update churn --shadow churn/8 --max-batch-size 32
$ loopml endpoints show churn --json
$ loopml endpoints traffic churn --metric quality
$ loopml endpoints list
$ loopml endpoints delete churn
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer

from loopml.cli._common import JsonOption
from loopml.errors import InvalidInput

if TYPE_CHECKING:
    from loopml.serving.records import BatchingConfig, Endpoint, TrafficPolicy, Variant
    from loopml.serving.service import EndpointService

app = typer.Typer(help="Create, inspect, update and delete inference endpoints.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="Endpoint name (letters, digits, '_', '.', '-').")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Primary model: NAME@ALIAS, NAME/VERSION or a URI.")
]
CanaryOpt = Annotated[
    str | None,
    typer.Option("--canary", help="MODEL:PERCENT, e.g. churn@challenger:10 (PERCENT=0 removes it)."),
]
ShadowOpt = Annotated[
    list[str] | None, typer.Option("--shadow", help="MODEL[:PERCENT] gets a copy (repeatable).")
]
ABOpt = Annotated[str | None, typer.Option("--ab", help="MODEL:WEIGHT as variant b of an A/B test.")]
BatchOpt = Annotated[int | None, typer.Option("--max-batch-size", min=0, help="Micro-batch size (0: off).")]
LatencyOpt = Annotated[
    float | None, typer.Option("--max-latency-ms", min=0, help="Longest wait for a batch.")
]


def _service() -> EndpointService:
    from loopml import serving

    return serving.service()


def _split(spec: str, option: str, default: float | None) -> tuple[str, float]:
    uri, sep, amount = spec.rpartition(":")
    if sep and amount.replace(".", "", 1).isdigit() and uri and not uri.endswith(":/"):
        return uri, float(amount)
    if default is None:
        raise InvalidInput(
            f"{option} {spec!r} needs MODEL:PERCENT, e.g. churn@challenger:10", details={"field": option}
        )
    return spec, default


def _policy(
    base: TrafficPolicy | None, model: str | None, canary: str | None, shadows: list[str], ab: str | None
) -> TrafficPolicy:
    from loopml.serving.records import TrafficPolicy, Variant

    if base is None and model is None:
        raise InvalidInput("--model is required to create an endpoint", details={"field": "model"})
    primary = Variant("primary", model) if model else base.primary  # type: ignore[union-attr]
    others: list[Variant] = [] if base is None else [v for v in base.variants if v.role != "primary"]
    if canary is not None:
        uri, pct = _split(canary, "--canary", None)
        others = [v for v in others if v.role != "canary"]
        others += [Variant("canary", uri, pct, "canary")] if pct > 0 else []
    if ab is not None:
        uri, weight = _split(ab, "--ab", None)
        others = [v for v in others if v.role != "b"] + (
            [Variant("b", uri, weight, "b")] if weight > 0 else []
        )
    for i, spec in enumerate(shadows):
        uri, pct = _split(spec, "--shadow", 100.0)
        others = [v for v in others if v.name != f"shadow{i or ''}"]
        others += [Variant(f"shadow{i or ''}", uri, pct, "shadow")] if pct > 0 else []
    live_others = sum(v.weight for v in others if v.role == "canary")
    primary = replace(primary, weight=max(0.0, 100.0 - live_others) if live_others else 100.0)
    return TrafficPolicy((primary, *others)) if base is None else replace(base, variants=(primary, *others))


def _batching(base: BatchingConfig | None, size: int | None, latency: float | None) -> BatchingConfig | None:
    from loopml.serving.records import BatchingConfig

    if size is None and latency is None:
        return base
    current = base or BatchingConfig()
    if size is not None:
        current = replace(current, enabled=size > 0, max_batch_size=max(1, size))
    if latency is not None:
        current = replace(current, max_latency_ms=latency)
    return current


@app.command("create")
def create(
    name: Name,
    model: ModelOpt = None,
    canary: CanaryOpt = None,
    shadow: ShadowOpt = None,
    ab: ABOpt = None,
    max_batch_size: BatchOpt = None,
    max_latency_ms: LatencyOpt = None,
    description: Annotated[str, typer.Option(help="What the endpoint is for.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create an endpoint routing to --model (plus an optional canary, shadows or A/B arm)."""
    policy = _policy(None, model, canary, shadow or [], ab)
    found = _service().create_endpoint(
        name, policy, _batching(None, max_batch_size, max_latency_ms), description
    )
    _print(found, as_json)


@app.command("update")
def update(
    name: Name,
    model: ModelOpt = None,
    canary: CanaryOpt = None,
    shadow: ShadowOpt = None,
    ab: ABOpt = None,
    max_batch_size: BatchOpt = None,
    max_latency_ms: LatencyOpt = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="Make the canary the primary (full rollout).")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (kept in the endpoint's events).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Change an endpoint's traffic or batching; running servers swap without downtime."""
    svc = _service()
    current = svc.get_endpoint(name)
    policy = _policy(current.policy, model, canary, shadow or [], ab)
    kind = "updated"
    if promote:
        policy, kind = _promoted(policy), "promoted"
    batching = _batching(current.batching, max_batch_size, max_latency_ms)
    found = svc.update_endpoint(name, policy=policy, batching=batching, reason=reason, kind=kind)  # type: ignore[arg-type]
    _print(found, as_json)


def _promoted(policy: TrafficPolicy) -> TrafficPolicy:
    from loopml.serving.records import Variant

    canary = next((v for v in policy.variants if v.role == "canary"), None)
    if canary is None:
        raise InvalidInput(
            "--promote needs a canary to promote; add one with --canary", details={"field": "promote"}
        )
    return replace(policy, variants=(Variant("primary", canary.model_uri),))


@app.command("list")
def list_endpoints(as_json: JsonOption = False) -> None:
    """List endpoints with their variants and batching."""
    from loopml.cli import render

    found = _service().list_endpoints()
    if as_json:
        render.print_json([e.to_dict() for e in found])
        return
    table = render._table("Name", "Variants", "Batching", "Revision", "Updated")
    for e in found:
        table.add_row(
            e.name,
            _variants(e.policy.variants),
            _batch_text(e),
            str(e.revision),
            render.fmt_time(e.updated_at),
        )
    render.print_table(table)


@app.command("show")
def show(name: Name, as_json: JsonOption = False) -> None:
    """Show an endpoint and its latest deployment events (rollbacks with their evidence)."""
    svc = _service()
    endpoint = svc.get_endpoint(name)
    events = svc.list_events(name, limit=20)
    if as_json:
        from loopml.cli import render

        render.print_json({**endpoint.to_dict(), "events": [ev.to_dict() for ev in events]})
        return
    _print(endpoint, False)
    from loopml.cli import render

    table = render._table("When", "Kind", "User", "Reason")
    for ev in events:
        table.add_row(render.fmt_time(ev.timestamp), ev.kind, ev.user, ev.reason[:80])
    render.print_table(table)


@app.command("traffic")
def traffic(
    name: Name,
    metric: Annotated[
        str | None,
        typer.Option(help="A/B metric: error_rate, latency_ms or quality (default: the policy's)."),
    ] = None,
    alpha: Annotated[float, typer.Option(min=0, max=1, help="Significance level of the A/B test.")] = 0.05,
    as_json: JsonOption = False,
) -> None:
    """Per-variant statistics and the A/B report, as the serving process gathered them."""
    from loopml.cli import render
    from loopml.client.http_serving import HttpEndpointService

    svc = _service()
    if not isinstance(svc, HttpEndpointService):
        raise InvalidInput(
            "traffic statistics live in the server that hosts the endpoint; set "
            "LOOPML_TRACKING_URI to that `loopml server`",
            details={"field": "tracking_uri"},
        )
    report = svc.traffic(name, metric, alpha)
    if as_json:
        render.print_json(report)
        return
    table = render._table("Variant", "Requests", "Error rate", "p50 ms", "p99 ms", "Quality (n)")
    for variant, s in report["stats"].items():
        quality = "-" if s["quality_mean"] is None else f"{s['quality_mean']:.4g} ({s['quality_n']})"
        table.add_row(
            variant,
            str(s["requests"]),
            f"{s['error_rate']:.4f}",
            f"{s['latency_p50_ms']:.2f}",
            f"{s['latency_p99_ms']:.2f}",
            quality,
        )
    render.print_table(table)
    ab = report["ab"]
    compared = f"{ab['metric']} vs {ab['baseline']}"
    table = render._table("Arm", compared, "Difference", "p-value", "Significant")
    for arm, c in ab["arms"].items():
        p_value = "-" if c["p_value"] is None else f"{c['p_value']:.4g}"
        table.add_row(
            arm,
            f"{c['value']:.4g} vs {c['baseline']:.4g}",
            f"{c['difference']:+.4g}",
            p_value,
            "yes" if c["significant"] else f"no (alpha {ab['alpha']:g})",
        )
    render.print_table(table)


@app.command("delete")
def delete(name: Name) -> None:
    """Delete an endpoint (its event history is kept)."""
    _service().delete_endpoint(name)
    typer.echo(f"deleted endpoint {name!r}", err=True)


def _variants(variants: tuple[Variant, ...]) -> str:
    return ", ".join(
        f"{v.name}={v.model_uri.removeprefix('models:/')} ({v.role} {v.weight:g})" for v in variants
    )


def _batch_text(e: Endpoint) -> str:
    b = e.batching
    return f"{b.max_batch_size} / {b.max_latency_ms:g} ms" if b.enabled else "off"


def _print(endpoint: Endpoint, as_json: bool) -> None:
    from loopml.cli import render

    if as_json:
        render.print_json(endpoint.to_dict())
        return
    table = render._table("Field", "Value", title=f"endpoint {endpoint.name}")
    table.add_row("variants", _variants(endpoint.policy.variants))
    table.add_row("batching", _batch_text(endpoint))
    table.add_row("revision", str(endpoint.revision))
    table.add_row("created", f"{render.fmt_time(endpoint.created_at)} by {endpoint.created_by}")
    table.add_row("v2", f"/v2/models/{endpoint.name}/infer")
    table.add_row("mlflow", f"/endpoints/{endpoint.name}/invocations")
    render.print_table(table)
