"""Datasets (versions, schema, profile plots, diff of two versions) and the feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from loopml.data.diff import diff
from loopml.data.profile import ColumnProfile
from loopml.data.service import LocalDataService
from loopml.errors import LoopmlError
from loopml.features.online import open_online_store
from loopml.features.registry import DefinitionRecord, FeatureRegistry
from loopml.ui._common import empty_state, fmt_ms, page

router = APIRouter()


def _svc(request: Request) -> LocalDataService:
    svc: LocalDataService = request.app.state.data
    return svc


@router.get("/datasets")
def datasets(request: Request) -> Response:
    found = _svc(request).list_datasets()
    if not found:
        return empty_state(
            request,
            "datasets",
            "No datasets registered yet",
            [
                "A dataset version records a table's content hash, schema and statistical profile; "
                "runs that read it point to it, and monitoring uses its profile as the drift reference.",
            ],
            ["loopml data register churn data/churn.parquet", "loopml data diff churn@1 churn@2"],
        )
    return page(request, "datasets.html", "datasets", datasets=found)


def _profile_chart(col: ColumnProfile) -> dict[str, Any] | None:
    """A bar chart of one column: histogram bins, or the top categories."""
    if col.edges and col.hist:
        mids = [(a + b) / 2 for a, b in zip(col.edges[:-1], col.edges[1:], strict=False)]
        return {"x": mids, "y": list(col.hist), "kind": "hist"}
    if col.top:
        return {"x": [str(v) for v, _ in col.top], "y": [int(n) for _, n in col.top], "kind": "top"}
    return None


@router.get("/datasets/{name}")
def dataset_page(request: Request, name: str, version: str | None = None) -> Response:
    svc = _svc(request)
    versions = svc.list_versions(name)
    current = svc.get(name, version)
    columns = list(current.profile.columns.values())
    charts = {c.name: chart for c in columns if (chart := _profile_chart(c)) is not None}
    return page(
        request,
        "dataset.html",
        "datasets",
        name=name,
        versions=versions[::-1],
        current=current,
        columns=columns,
        charts=charts,
    )


@router.get("/datasets/{name}/diff")
def dataset_diff(request: Request, name: str, a: str, b: str) -> Response:
    svc = _svc(request)
    va, vb = svc.get(name, a), svc.get(name, b)
    return page(request, "dataset_diff.html", "datasets", name=name, a=va, b=vb, diff=diff(va, vb))


def _freshness(request: Request, views: list[DefinitionRecord]) -> dict[str, str]:
    """Per feature view, the time materialization has reached (from the online store's watermark)."""
    if not views:
        return {}
    settings = request.app.state.ui_settings
    try:
        store = open_online_store(settings.online_store, home=Path(settings.home))
    except (LoopmlError, OSError) as exc:
        return {v.name: f"online store unavailable: {exc}" for v in views}
    try:
        out = {}
        for v in views:
            mark = store.get_meta(f"materialized_until:{v.name}")
            out[v.name] = fmt_ms(int(mark) // 1000) if mark else "never materialized"
        return out
    finally:
        store.close()


@router.get("/features")
def features(request: Request) -> Response:
    registry = FeatureRegistry(request.app.state.tracking.db)
    records = registry.list_definitions()
    if not records:
        return empty_state(
            request,
            "features",
            "No feature definitions yet",
            [
                "Define entities, feature views and feature services in a Python file; "
                "loopml serves the same definitions offline (point-in-time joins) and online.",
            ],
            ["loopml features apply features.py", "loopml features list"],
        )
    by_kind: dict[str, list[DefinitionRecord]] = {}
    for r in records:
        by_kind.setdefault(r.kind, []).append(r)
    fresh = _freshness(request, by_kind.get("feature_view", []))
    return page(request, "features.html", "features", by_kind=by_kind, freshness=fresh)
