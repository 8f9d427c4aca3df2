"""``loopml experiments``: list and create experiments."""

from __future__ import annotations

from typing import Annotated

import typer

from loopml.cli._common import JsonOption, all_experiments, tracking

app = typer.Typer(help="List and create experiments.", no_args_is_help=True)


@app.command("list")
def list_experiments(
    include_deleted: Annotated[bool, typer.Option("--all", help="Include deleted experiments.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List experiments, newest first."""
    from loopml.cli import render
    from loopml.tracking.codec import experiment_to_dict

    exps = all_experiments(tracking(), include_deleted)
    if as_json:
        render.print_json([experiment_to_dict(e) for e in exps])
    else:
        render.print_table(render.experiments_table(exps, show_stage=include_deleted))


def _parse_tags(items: list[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags


@app.command("create")
def create_experiment(
    name: Annotated[str, typer.Argument(help="Name of the new experiment.")],
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="KEY=VALUE tag (repeatable).")] = None,
    artifact_location: Annotated[
        str | None, typer.Option(help="Artifact root for its runs (default: the store's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an experiment and print its id."""
    from loopml.cli import render
    from loopml.tracking.codec import experiment_to_dict

    tags = _parse_tags(tag or [])
    svc = tracking()
    exp = svc.get_experiment(svc.create_experiment(name, artifact_location=artifact_location, tags=tags))
    if as_json:
        render.print_json(experiment_to_dict(exp))
    else:
        render.console().print(f"created experiment [bold]{exp.name}[/] (id {exp.experiment_id})")
