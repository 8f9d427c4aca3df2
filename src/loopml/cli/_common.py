"""What every command shares: the service, experiment lookup and option types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from loopml.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from loopml.tracking.records import Experiment
    from loopml.tracking.service import TrackingService

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
MaxOption = Annotated[int, typer.Option("--max", min=1, max=50_000, help="At most this many runs.")]
ExperimentOption = Annotated[
    list[str] | None,
    typer.Option("--experiment", "-e", help="Experiment name or id (repeatable; default: all)."),
]


def tracking() -> TrackingService:
    """The tracking service the environment configures (local store or server)."""
    from loopml.sdk import service

    return service()


def resolve_experiment(svc: TrackingService, name_or_id: str) -> Experiment:
    """The experiment named ``name_or_id``, else the one with that id."""
    exp = svc.get_experiment_by_name(name_or_id)
    if exp is not None:
        return exp
    try:
        return svc.get_experiment(name_or_id)
    except (NotFound, InvalidInput):  # InvalidInput: not even shaped like an id
        raise NotFound(
            f"experiment {name_or_id!r} does not exist; see `loopml experiments list`",
            details={"experiment": name_or_id},
        ) from None


def all_experiments(svc: TrackingService, include_deleted: bool = False) -> list[Experiment]:
    """Every experiment, following pagination."""
    from loopml.tracking.records import ViewType

    view = ViewType.ALL if include_deleted else ViewType.ACTIVE_ONLY
    out: list[Experiment] = []
    token: str | None = None
    while True:
        page = svc.search_experiments(view_type=view, page_token=token)
        out += page.experiments
        token = page.next_page_token
        if not token:
            return out
