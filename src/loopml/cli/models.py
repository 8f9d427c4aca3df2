"""``loopml models``: the registry from the shell, usable as a CI deployment gate.

    $ loopml models gate churn "accuracy >= 0.90" "roc_auc >= champion.roc_auc - 0.005"
    $ loopml models evaluate churn 4 --data holdout@2 --target churned
    $ loopml models promote churn 4 --to production --reason "weekly retrain"   # exit 3 on a failed gate

The registry and its dependencies are imported inside each command, so ``loopml --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import JsonOption
from loopml.errors import GateFailed

if TYPE_CHECKING:
    from loopml.registry.records import GateResult, ModelVersion, PromotionRequest
    from loopml.registry.service import RegistryService

app = typer.Typer(
    help="Registered models: versions, aliases, gates, promotion, lineage.", no_args_is_help=True
)

GATE_FAILED_EXIT = 3  # distinct from usage (2) and other errors (1), so CI can tell them apart
Name = Annotated[str, typer.Argument(help="Registered model name.")]
Version = Annotated[str, typer.Argument(help="Version number.")]
Reason = Annotated[str | None, typer.Option("--reason", "-r", help="Why (kept in the audit trail).")]


def _registry() -> RegistryService:
    from loopml.registry import service

    return service()


def _dump(record: Any) -> Any:
    from loopml.registry.codec import to_dict

    return to_dict(record)


@app.command("list")
def list_models(
    filter_string: Annotated[str, typer.Option("--filter", help="e.g. \"name LIKE 'churn%'\".")] = "",
    as_json: JsonOption = False,
) -> None:
    """List registered models with their aliases and latest versions."""
    from loopml.cli import render

    models = _registry().search_registered_models(filter_string, max_results=1000).models
    if as_json:
        render.print_json([_dump(m) for m in models])
        return
    table = render._table("Name", "Versions (stage)", "Aliases", "Updated", "Description")
    for m in models:
        latest = ", ".join(f"v{v.version} ({v.current_stage.value})" for v in m.latest_versions)
        aliases = ", ".join(f"{a}=v{v}" for a, v in m.aliases.items())
        table.add_row(m.name, latest, aliases, render.fmt_time(m.last_updated_timestamp), m.description[:60])
    render.print_table(table)


@app.command("show")
def show(
    name: Name,
    version: Annotated[str | None, typer.Argument(help="A version (default: the model).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a registered model, or one of its versions."""
    from loopml.cli import render

    reg = _registry()
    if version is None:
        model = reg.get_registered_model(name)
        gate = reg.get_gate(name)
        if as_json:
            render.print_json({**_dump(model), "gate": None if gate is None else _dump(gate)})
            return
        typer.echo(f"{model.name}: {model.description or '(no description)'}")
        typer.echo(f"  tags: {model.tags or '-'}   aliases: {model.aliases or '-'}")
        if gate is not None:
            approval = ", human approval required" if gate.require_approval else ""
            typer.echo(f"  gate: {'; '.join(gate.thresholds) or '(no thresholds)'}{approval}")
        _print_versions(model.latest_versions)
        return
    mv = reg.get_model_version(name, version)
    features = reg.lineage(name, version).features
    if as_json:
        render.print_json({**_dump(mv), "features": features})
    else:
        _print_versions([mv])
        if features:
            typer.echo(f"features: {features[0]} ({', '.join(features[1:])})")


@app.command("versions")
def versions(name: Name, as_json: JsonOption = False) -> None:
    """Every version of a model, newest first."""
    from loopml.cli import render

    found = _registry().search_model_versions(f"name = '{_quote(name)}'").versions
    if as_json:
        render.print_json([_dump(v) for v in found])
    else:
        _print_versions(found)


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _print_versions(found: list[ModelVersion]) -> None:
    from loopml.cli import render

    table = render._table("Version", "Stage", "Aliases", "Run", "Digest", "Created", "By")
    for v in found:
        table.add_row(
            str(v.version),
            v.current_stage.value,
            ", ".join(v.aliases),
            v.run_id or "-",
            v.digest[:12],
            render.fmt_time(v.creation_timestamp),
            v.user_id,
        )
    render.print_table(table)


@app.command("alias")
def alias(
    name: Name,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. champion, challenger.")],
    version: Annotated[str | None, typer.Argument(help="Version to point at.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias instead.")] = False,
) -> None:
    """Point an alias at a version (or remove it with --delete)."""
    reg = _registry()
    if delete:
        reg.delete_registered_model_alias(name, alias_name)
        typer.echo(f"removed alias {alias_name!r} of {name}")
        return
    if version is None:
        raise typer.BadParameter("give the VERSION the alias should point at", param_hint="VERSION")
    reg.set_registered_model_alias(name, alias_name, version)
    typer.echo(f"{name}@{alias_name} -> version {version}")


@app.command("gate")
def gate(
    name: Name,
    thresholds: Annotated[list[str], typer.Argument(help='e.g. "accuracy >= 0.90".')],
    require_approval: Annotated[
        bool, typer.Option("--require-approval", help="A second person must approve promotions.")
    ] = False,
) -> None:
    """Declare the thresholds a version must meet to reach Production."""
    declared = _registry().set_gate(name, thresholds, require_approval)
    typer.echo(f"gate of {name}: " + "; ".join(declared.thresholds))
    if declared.require_approval:
        typer.echo("promotions to Production need approval by a different user")


@app.command("evaluate")
def evaluate(
    name: Name,
    version: Version,
    data: Annotated[str, typer.Option("--data", help="Held-out dataset version, NAME@VERSION.")],
    target: Annotated[str, typer.Option("--target", help="The label column.")],
    task: Annotated[str, typer.Option(help="auto, classification or regression.")] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Compute and record the metrics of the version and of the champion on a dataset version."""
    from loopml.cli import render
    from loopml.registry import evaluation

    ev = evaluation.evaluate(_registry(), name, version, data, target, task=task)
    if as_json:
        render.print_json(_dump(ev))
        return
    champ = f"champion v{ev.champion_version}" if ev.champion_version else "champion (none)"
    table = render._table(
        "Metric", f"v{ev.version}", champ, title=f"{name} on {ev.dataset_name}@{ev.dataset_version}"
    )
    for key in sorted(set(ev.metrics) | set(ev.champion_metrics)):
        champ_value = ev.champion_metrics.get(key)
        table.add_row(key, _num(ev.metrics.get(key)), _num(champ_value))
    render.print_table(table)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


@app.command("promote")
def promote(
    name: Name,
    version: Version,
    to: Annotated[str, typer.Option("--to", help="Target stage.")] = "production",
    reason: Reason = None,
    as_json: JsonOption = False,
) -> None:
    """Run the gate and move the version; exits 3 when the gate fails (use it in CI)."""
    from loopml.cli import render

    try:
        done = _registry().promote(name, version, to, reason)
    except GateFailed as exc:
        _print_gate_failure(exc, as_json)
        raise typer.Exit(GATE_FAILED_EXIT) from None
    if as_json:
        render.print_json(_dump(done))
        return
    _print_results(done.gate)
    if done.request is not None:
        typer.echo(
            f"request {done.request.request_id} is pending: another user approves it with "
            f"`loopml models approve {done.request.request_id}`"
        )
    else:
        typer.echo(f"{name} version {done.version.version} is now in {done.version.current_stage.value}")


def _print_gate_failure(exc: GateFailed, as_json: bool) -> None:
    from loopml.cli import render

    if as_json:
        render.print_json(exc.to_dict())
    else:
        typer.echo(f"error: {exc.message}", err=True)


def _print_results(result: GateResult) -> None:
    for r in result.results:
        typer.echo(f"  {r.line()}")
    if result.note:
        typer.echo(f"  {result.note}")


@app.command("requests")
def requests(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Decided requests too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Promotion requests waiting for approval."""
    from loopml.cli import render

    found = _registry().list_requests(name, status=None if all_ else "pending")
    if as_json:
        render.print_json([_dump(r) for r in found])
        return
    _print_requests(found)


def _print_requests(found: list[PromotionRequest]) -> None:
    from loopml.cli import render

    table = render._table("Request", "Model", "Version", "To", "Status", "Requested by", "When", "Reason")
    for r in found:
        table.add_row(
            r.request_id,
            r.name,
            str(r.version),
            r.to_stage.value,
            r.status.value,
            r.requested_by,
            render.fmt_time(r.requested_at),
            r.reason,
        )
    render.print_table(table)


@app.command("approve")
def approve(request_id: Annotated[str, typer.Argument(help="Request id.")], reason: Reason = None) -> None:
    """Approve another user's promotion request (the gate is checked again).

    What is shown here is what moves: the version's artifact digest and the Production version
    are compared again when the approval is applied, and nothing moves if either changed."""
    from loopml.errors import NotFound
    from loopml.registry.records import CHAMPION_ALIAS

    reg = _registry()
    pending = reg.get_request(request_id)
    version = reg.get_model_version(pending.name, pending.version)
    try:
        champion = int(reg.get_model_version_by_alias(pending.name, CHAMPION_ALIAS).version)
    except NotFound:
        champion = 0
    now = f"version {champion}" if champion else "no version"
    typer.echo(
        f"approving {pending.name} version {pending.version} (artifacts {version.digest[:12]}) "
        f"to {pending.to_stage.value}; Production is {now}",
        err=True,
    )
    try:
        done = reg.approve(request_id, reason, digest=version.digest, expected_champion=champion)
    except GateFailed as exc:
        _print_gate_failure(exc, False)
        raise typer.Exit(GATE_FAILED_EXIT) from None
    typer.echo(f"approved: {done.version.name} version {done.version.version} is now in Production")


@app.command("reject")
def reject(request_id: Annotated[str, typer.Argument(help="Request id.")], reason: Reason = None) -> None:
    """Reject another user's promotion request."""
    request = _registry().reject(request_id, reason)
    typer.echo(f"rejected request {request.request_id} ({request.name} version {request.version})")


@app.command("lineage")
def lineage(
    name: Annotated[str | None, typer.Argument(help="Registered model name.")] = None,
    version: Annotated[str | None, typer.Argument(help="Version number.")] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Reverse query: models trained on NAME@VERSION.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """model version -> run -> commit -> datasets; or with --dataset, the models trained on it."""
    from loopml.cli import render

    reg = _registry()
    if dataset is not None:
        ds_name, _, ds_version = dataset.partition("@")
        if not ds_version:
            raise typer.BadParameter("use NAME@VERSION, e.g. churn@3", param_hint="--dataset")
        found = reg.models_trained_on(ds_name, ds_version)
        if as_json:
            render.print_json([_dump(v) for v in found])
        else:
            _print_versions(found)
        return
    if name is None or version is None:
        raise typer.BadParameter("give NAME VERSION, or --dataset NAME@VERSION", param_hint="NAME VERSION")
    found_lineage = reg.lineage(name, version)
    if as_json:
        render.print_json(_dump(found_lineage))
        return
    _print_lineage(found_lineage)


def _print_lineage(lin: Any) -> None:
    mv, run = lin.model, lin.run
    typer.echo(f"model   {mv.name} v{mv.version} [{mv.current_stage.value}] digest {mv.digest[:16]}")
    if run is None:
        typer.echo("run     (none recorded)")
    else:
        typer.echo(f"run     {run.run_id} {run.run_name!r} in {run.experiment_name or run.experiment_id}")
        dirty = {True: "dirty", False: "clean", None: "dirty: unknown"}[run.dirty]
        branch = f" on {run.branch}" if run.branch else ""
        typer.echo(f"commit  {run.commit or 'unknown'}{branch} ({dirty})")
    for d in lin.datasets:
        rows = "" if d.num_rows is None else f", {d.num_rows} rows"
        typer.echo(f"data    {d.ref} [{d.context or '-'}] digest {d.digest[:16]}{rows}")
    if not lin.datasets:
        typer.echo("data    (no dataset inputs recorded)")
    typer.echo(f"features {', '.join(lin.features) or '(none)'}")


@app.command("card")
def card(
    name: Name,
    version: Version,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Write the model card (Markdown) of a version."""
    text = _registry().card(name, version)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
