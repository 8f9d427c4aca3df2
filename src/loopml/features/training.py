"""Training sets: the result of a point-in-time retrieval registered as a dataset version.

:func:`register_training_set` registers the table ``get_historical_features`` returned through
:mod:`loopml.data` and records which feature definitions, in which registered versions, made
it, in the dataset's ``loopml.features`` tag (a JSON list of lines such as
``"feature_view stats v2"`` and then the ``"view:feature"`` references). ``loopml data show``
prints it, and a model trained on the dataset reaches the feature views through lineage.

>>> table = get_historical_features(entity_df, service=churn, views=[stats])  # doctest: +SKIP
>>> register_training_set(table, "churn_train", service=churn).tags["loopml.features"]  # doctest: +SKIP
'["feature_service churn v1","feature_view stats v2","stats:rate","stats:trips"]'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from loopml.config import Settings
from loopml.data import data_service
from loopml.data.base import DataService
from loopml.data.records import DatasetVersion
from loopml.features.definitions import FeatureService, FeatureView, OnDemandFeatureView, View
from loopml.features.offline import _plan, _requested, _with_service_views
from loopml.features.registry import FeatureRegistry, canonical, kind_of

FEATURES_TAG = "loopml.features"


def _registered(registry: FeatureRegistry, definition: View | FeatureService) -> str:
    """``"kind name vN"`` for the registered version with exactly this spec, else a digest."""
    kind = kind_of(definition)
    digest = canonical(definition.spec())[1]
    for record in reversed(registry.versions(kind, definition.name)):
        if record.digest == digest:
            return f"{kind} {definition.name} v{record.version}"
    return f"{kind} {definition.name} (not registered, spec sha256 {digest[:12]})"


def _views_used(views: Iterable[View]) -> list[View]:
    """The views, then the stored views their on-demand transforms read, once each."""
    out: dict[str, View] = {}
    for view in views:
        out.setdefault(view.name, view)
        if isinstance(view, OnDemandFeatureView):
            for source in view.sources:
                if isinstance(source, FeatureView):
                    out.setdefault(source.name, source)
    return list(out.values())


def feature_lineage(
    registry: FeatureRegistry,
    features: Sequence[str | View] | None = None,
    *,
    service: FeatureService | None = None,
    views: Iterable[View] = (),
) -> list[str]:
    """The definitions (with their registered versions) and references a retrieval used."""
    plans = _plan(_requested(features, service), _with_service_views(views, service), False)
    lines = [] if service is None else [_registered(registry, service)]
    lines += [_registered(registry, view) for view in _views_used(p.view for p in plans)]
    return lines + [f"{p.view.name}:{name}" for p in plans for name in p.features]


def register_training_set(
    result: pa.Table,
    name: str,
    *,
    features: Sequence[str | View] | None = None,
    service: FeatureService | None = None,
    views: Iterable[View] = (),
    registry: FeatureRegistry | None = None,
    data: DataService | None = None,
    description: str = "",
    tags: Mapping[str, Any] | None = None,
) -> DatasetVersion:
    """Register ``result`` (a ``get_historical_features`` table) as the next version of dataset
    ``name``, tagged with the feature definitions the same ``features``/``service``/``views``
    name. ``registry`` and ``data`` default to the configured ones.
    """
    own = registry is None
    registry = registry or FeatureRegistry.from_settings(Settings.load())
    try:
        lines = feature_lineage(registry, features, service=service, views=views)
    finally:
        if own:
            registry.close()
    all_tags = {**(tags or {}), FEATURES_TAG: json.dumps(lines, separators=(",", ":"))}
    text = description or f"training set from {', '.join(line for line in lines if ':' not in line)}"
    return (data or data_service()).register(name, result, description=text, tags=all_tags)


def dataset_features(tags: Mapping[str, str]) -> list[str]:
    """The feature lineage lines a dataset version's tags record (``[]`` when none)."""
    try:
        found = json.loads(tags.get(FEATURES_TAG, "[]"))
    except ValueError:
        return []
    return [str(line) for line in found] if isinstance(found, list) else []
