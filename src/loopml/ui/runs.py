"""Experiments, the runs table (filter, sort, columns, pages), a run's page and run comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from loopml.errors import InvalidInput
from loopml.tracking.records import Metric, Run, ViewType
from loopml.tracking.search import encode_page_token
from loopml.tracking.service import TrackingService
from loopml.ui._common import fragment, page

router = APIRouter()

PAGE_SIZES = (25, 50, 100, 200)
MAX_OFFSET = 100_000  # deeper than this, narrow the filter instead of paging
MAX_COMPARE = 10
MAX_CHART_METRICS = 24
MAX_CHART_POINTS = 2_000
CODE_TAGS = (
    ("Source", "mlflow.source.name"),
    ("Commit", "mlflow.source.git.commit"),
    ("Branch", "mlflow.source.git.branch"),
    ("Repository", "mlflow.source.git.repoURL"),
    ("Dirty", "loopml.git.dirty"),
)


def _svc(request: Request) -> TrackingService:
    svc: TrackingService = request.app.state.tracking
    return svc


@router.get("/")
def experiments(request: Request) -> Response:
    exps = _svc(request).search_experiments(max_results=1000).experiments
    return page(request, "experiments.html", "experiments", experiments=exps)


@dataclass(frozen=True, slots=True)
class Column:
    kind: str  # metrics, params or tags
    key: str

    @property
    def ident(self) -> str:
        return f"{self.kind}.{self.key}"

    @property
    def order_key(self) -> str:
        return f"{self.kind}.`{self.key}`"

    def value(self, run: Run) -> Any:
        if self.kind == "metrics":
            m = run.metrics.get(self.key)
            return None if m is None else m.value
        return (run.params if self.kind == "params" else run.tags).get(self.key)


def _parse_columns(raw: str) -> list[Column]:
    cols = []
    for item in filter(None, (c.strip() for c in raw.split(","))):
        kind, _, key = item.partition(".")
        if kind not in ("metrics", "params", "tags") or not key:
            raise InvalidInput(
                f"column {item!r}: write metrics.KEY, params.KEY or tags.KEY", details={"field": "cols"}
            )
        cols.append(Column(kind, key))
    return cols


def _default_columns(runs: list[Run]) -> list[Column]:
    metrics = sorted({k for r in runs for k in r.metrics})[:8]
    params = sorted({k for r in runs for k in r.params})[:6]
    return [Column("metrics", k) for k in metrics] + [Column("params", k) for k in params]


@router.get("/experiments/{experiment_id}")
def runs_table(
    request: Request,
    experiment_id: str,
    filter: str = "",
    order_by: str = "",
    cols: str | None = None,
    page_size: int = Query(50),
    offset: int = Query(0, ge=0),
    partial: bool = False,
) -> Response:
    svc = _svc(request)
    exp = svc.get_experiment(experiment_id)
    size = page_size if page_size in PAGE_SIZES else 50
    offset = min(offset, MAX_OFFSET)
    error = ""
    runs: list[Run] = []
    more = False
    try:
        result = svc.search_runs(
            [exp.experiment_id],
            filter_string=filter,
            view_type=ViewType.ACTIVE_ONLY,
            max_results=size,
            order_by=[order_by] if order_by else [],
            page_token=encode_page_token(offset) if offset else None,
        )
        runs, more = result.runs, result.next_page_token is not None
        columns = _parse_columns(cols) if cols is not None else _default_columns(runs)
    except InvalidInput as exc:
        error = exc.message
        columns = _parse_columns(cols) if cols and "cols" not in error else []
    available = sorted(
        {Column("metrics", k) for r in runs for k in r.metrics}
        | {Column("params", k) for r in runs for k in r.params}
        | set(columns),
        key=lambda c: (c.kind, c.key),
    )
    ctx: dict[str, Any] = {
        "experiment": exp,
        "runs": runs,
        "columns": columns,
        "available": available,
        "filter": filter,
        "order_by": order_by,
        "cols": ",".join(c.ident for c in columns),
        "page_size": size,
        "page_sizes": PAGE_SIZES,
        "offset": offset,
        "more": more and offset + size <= MAX_OFFSET,
        "error": error,
    }
    base = {k: ctx[k] for k in ("filter", "order_by", "cols", "page_size", "offset")}
    ctx["link"] = lambda **changes: _link(exp.experiment_id, {**base, **changes})
    ctx["sort_link"] = lambda col: _link(
        exp.experiment_id, {**base, "offset": 0, "order_by": _next_order(order_by, col)}
    )
    ctx["sorted_as"] = lambda col: _sorted_as(order_by, col)
    status = 400 if error else 200
    if partial:
        response = fragment("_runs_table.html", **ctx)
        response.status_code = status
        return response
    return page(request, "runs.html", "experiments", status_code=status, **ctx)


def _link(experiment_id: str, params: dict[str, Any]) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in ("", None, 0) or k == "cols"})
    return f"/ui/experiments/{experiment_id}?{query}"


def _sorted_as(order_by: str, ident: str) -> str:
    """'asc', 'desc' or '' for the column ``ident`` (``metrics.`acc```, ``attributes.start_time``)."""
    words = order_by.rsplit(None, 1)
    if not words or words[0] != ident:
        return ""
    return "asc" if len(words) == 1 or words[1].upper() == "ASC" else "desc"


def _next_order(order_by: str, ident: str) -> str:
    """A click on a header: sort by it descending, then ascending."""
    return f"{ident} ASC" if _sorted_as(order_by, ident) == "desc" else f"{ident} DESC"


def _thin(points: list[Metric]) -> list[Metric]:
    """At most MAX_CHART_POINTS evenly spaced points (the last one kept): a chart of a million
    steps is no clearer than one of a few thousand, and far heavier to send and draw."""
    if len(points) <= MAX_CHART_POINTS:
        return points
    stride = -(-len(points) // MAX_CHART_POINTS)
    thinned = points[::stride]
    return thinned if thinned[-1] is points[-1] else [*thinned, points[-1]]


def _charts(svc: TrackingService, runs: list[Run]) -> dict[str, Any]:
    """Per metric key: one series per run, by step and by wall time (relative to run start)."""
    keys = sorted({k for r in runs for k in r.metrics})[:MAX_CHART_METRICS]
    charts: dict[str, Any] = {}
    for key in keys:
        series = []
        for run in runs:
            if key not in run.metrics:
                continue
            history = _thin(svc.get_metric_history(run.info.run_id, key))
            series.append(
                {
                    "name": run.info.run_name,
                    "step": [m.step for m in history],
                    "time": [(m.timestamp - run.info.start_time) / 1000.0 for m in history],
                    "value": [None if m.value != m.value else m.value for m in history],
                }
            )
        charts[key] = series
    return charts


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> Response:
    svc = _svc(request)
    run = svc.get_run(run_id)
    exp = svc.get_experiment(run.info.experiment_id)
    artifacts = svc.list_artifacts(run_id, recursive=True)
    code = [(label, run.tags[tag]) for label, tag in CODE_TAGS if tag in run.tags]
    return page(
        request,
        "run.html",
        "experiments",
        run=run,
        experiment=exp,
        charts=_charts(svc, [run]),
        artifacts=artifacts,
        code=code,
        user_tags={k: v for k, v in sorted(run.tags.items()) if not k.startswith("mlflow.")},
        system_tags={k: v for k, v in sorted(run.tags.items()) if k.startswith("mlflow.")},
    )


def _parcoords(runs: list[Run]) -> dict[str, Any]:
    """Numeric params and latest metrics as parallel-coordinate dimensions."""
    dims = []
    for kind in ("params", "metrics"):
        for key in sorted({k for r in runs for k in getattr(r, kind)}):
            values: list[float | None] = []
            for r in runs:
                raw = r.params.get(key) if kind == "params" else getattr(r.metrics.get(key), "value", None)
                try:
                    values.append(None if raw is None else float(raw))
                except ValueError:
                    break
            else:
                if any(v is not None for v in values):
                    dims.append({"label": f"{kind[:-1]}: {key}", "values": values})
    return {"dimensions": dims[:20], "names": [r.info.run_name for r in runs]}


@router.get("/compare")
def compare(request: Request, run: list[str] = Query(default=[])) -> Response:
    svc = _svc(request)
    ids = list(dict.fromkeys(run))
    if not 2 <= len(ids) <= MAX_COMPARE:
        raise InvalidInput(
            f"compare takes 2 to {MAX_COMPARE} runs, got {len(ids)}: tick them in the runs table",
            details={"field": "run"},
        )
    runs = [svc.get_run(r) for r in ids]
    comparison = svc.compare_runs(ids)
    return page(
        request,
        "compare.html",
        "experiments",
        runs=runs,
        comparison=comparison,
        differing=set(comparison.differing_params()),
        charts=_charts(svc, runs),
        parcoords=_parcoords(runs),
    )
