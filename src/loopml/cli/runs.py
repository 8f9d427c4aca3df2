"""``loopml runs``: list, show, compare and search runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from loopml.cli._common import (
    ExperimentOption,
    JsonOption,
    MaxOption,
    all_experiments,
    resolve_experiment,
    tracking,
)
from loopml.errors import InvalidInput

if TYPE_CHECKING:
    from loopml.tracking.records import Run
    from loopml.tracking.service import TrackingService

app = typer.Typer(help="List, show, compare and search runs.", no_args_is_help=True)


@app.command("list")
def list_runs(
    experiment: ExperimentOption = None, max_results: MaxOption = 100, as_json: JsonOption = False
) -> None:
    """List runs, newest first."""
    _search_and_print("", experiment, (), max_results, as_json)


@app.command("search")
def search_runs(
    filter_string: Annotated[
        str, typer.Argument(metavar="FILTER", help="e.g. \"metrics.acc > 0.9 AND params.model = 'rf'\".")
    ],
    experiment: ExperimentOption = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", help='e.g. "metrics.acc DESC" (repeatable).'),
    ] = None,
    max_results: MaxOption = 100,
    as_json: JsonOption = False,
) -> None:
    """Search runs with MLflow's filter language."""
    _search_and_print(filter_string, experiment, order_by or (), max_results, as_json)


@app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show one run: info, params, latest metrics, tags and dataset inputs."""
    from loopml.cli import render
    from loopml.tracking.codec import run_to_dict

    svc = tracking()
    run = svc.get_run(run_id)
    if as_json:
        render.print_json(run_to_dict(run))
    else:
        exp = svc.get_experiment(run.info.experiment_id)
        render.print_run(run, exp.name)


@app.command("compare")
def compare_runs(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID...", help="Two or more run ids.")],
    as_json: JsonOption = False,
) -> None:
    """Params and latest metrics of several runs side by side; differing params are highlighted."""
    from loopml.cli import render
    from loopml.tracking.codec import comparison_to_dict

    if len(run_ids) < 2:
        raise typer.BadParameter("give at least two run ids to compare", param_hint="RUN_ID...")
    comparison = tracking().compare_runs(run_ids)
    if as_json:
        render.print_json(comparison_to_dict(comparison))
    else:
        render.print_table(render.comparison_table(comparison))


def _search_and_print(
    filter_string: str,
    experiment: list[str] | None,
    order_by: Sequence[str],
    max_results: int,
    as_json: bool,
) -> None:
    from loopml.cli import render
    from loopml.tracking.codec import run_to_dict

    svc = tracking()
    if experiment:
        exps = {e.experiment_id: e for e in (resolve_experiment(svc, x) for x in experiment)}
    else:
        exps = {e.experiment_id: e for e in all_experiments(svc)}
    found = _search(svc, list(exps), filter_string, order_by, max_results) if exps else []
    if as_json:
        render.print_json([run_to_dict(r) for r in found])
    else:
        names = {eid: e.name for eid, e in exps.items()}
        render.print_runs(found, names)


def _search(
    svc: TrackingService,
    experiment_ids: list[str],
    filter_string: str,
    order_by: Sequence[str],
    max_results: int,
) -> list[Run]:
    """Up to ``max_results`` matching runs, following pages; a bad filter names itself."""
    runs: list[Run] = []
    token: str | None = None
    try:
        while len(runs) < max_results:
            page = svc.search_runs(
                experiment_ids,
                filter_string,
                max_results=max_results - len(runs),
                order_by=order_by,
                page_token=token,
            )
            runs += page.runs
            token = page.next_page_token
            if not token:
                break
    except InvalidInput as exc:
        raise _explain(exc, filter_string, order_by) from None
    return runs


def _explain(exc: InvalidInput, filter_string: str, order_by: Sequence[str]) -> InvalidInput:
    field = exc.details.get("field")
    if field == "filter":
        reason = exc.message.removeprefix("filter: ")
        return InvalidInput(f"invalid filter {filter_string!r}: {reason}", details=exc.details)
    if field == "order_by":
        reason = exc.message.removeprefix("order_by: ")
        given = ", ".join(repr(o) for o in order_by)
        return InvalidInput(f"invalid --order-by {given}: {reason}", details=exc.details)
    return exc
