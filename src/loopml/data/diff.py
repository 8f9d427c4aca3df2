"""What moved between two dataset versions: schema, statistics, and drift (PSI) per column.

Everything is computed from the stored schemas and profiles, never the raw rows, so two
versions of any size diff instantly.

>>> import pyarrow as pa
>>> from loopml.data.profile import profile_table
>>> a = profile_table(pa.table({"x": [1.0, 2.0, 3.0, 4.0]})).columns["x"]
>>> b = profile_table(pa.table({"x": [1.0, 2.0, 3.0, 4.0]})).columns["x"]
>>> psi(a, b)
0.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from loopml.data.profile import ColumnProfile, rebin
from loopml.data.records import DatasetDiff, DatasetVersion, Field, SchemaChange, StatChange

_EPS = 1e-4  # floor of a bin's share, so an empty bin does not make PSI infinite
_REL_TOL = 1e-9


def diff(a: DatasetVersion, b: DatasetVersion) -> DatasetDiff:
    """Schema changes, changed statistics and PSI per column from version ``a`` to ``b``.

    >>> d = loopml.data.diff(loopml.data.get("churn", 1), loopml.data.get("churn", 2))  # doctest: +SKIP
    >>> d.drift["age"] > 0.25                                                           # doctest: +SKIP
    True
    """
    stats: list[StatChange] = []
    drift: dict[str, float] = {}
    for name, col_a in a.profile.columns.items():
        col_b = b.profile.columns.get(name)
        if col_b is None or col_a.kind != col_b.kind:
            continue
        stats += _stat_changes(col_a, col_b)
        value = psi(col_a, col_b)
        if value is not None:
            drift[name] = value
    return DatasetDiff(
        a=a.ref,
        b=b.ref,
        num_rows=(a.num_rows, b.num_rows),
        schema_changes=schema_changes(a.schema, b.schema),
        stat_changes=stats,
        drift=drift,
    )


def schema_changes(a: list[Field], b: list[Field]) -> list[SchemaChange]:
    before, after = {f.name: f for f in a}, {f.name: f for f in b}
    out = [SchemaChange(n, "removed", before[n].type, None) for n in before if n not in after]
    out += [SchemaChange(n, "added", None, after[n].type) for n in after if n not in before]
    for n, fa in before.items():
        fb = after.get(n)
        if fb is None:
            continue
        if fa.type != fb.type:
            out.append(SchemaChange(n, "type", fa.type, fb.type))
        if fa.nullable != fb.nullable:
            out.append(SchemaChange(n, "nullability", str(fa.nullable), str(fb.nullable)))
    return out


def _differs(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return not math.isclose(x, y, rel_tol=_REL_TOL, abs_tol=1e-12)
    return bool(x != y)


def _stat_changes(a: ColumnProfile, b: ColumnProfile) -> list[StatChange]:
    pairs: list[tuple[str, Any, Any]] = [("count", a.count, b.count), ("nulls", a.nulls, b.nulls)]
    if a.kind == "numeric":
        pairs += [("mean", a.mean, b.mean), ("std", a.std, b.std)]
        pairs += [("min", a.min, b.min), ("max", a.max, b.max)]
        pairs += [(k, a.quantiles.get(k), b.quantiles.get(k)) for k in a.quantiles]
    elif a.kind == "categorical":
        pairs.append(("distinct", a.distinct, b.distinct))
        top_a, top_b = dict(a.top[:10]), dict(b.top[:10])
        if top_a != top_b:
            pairs.append(("top_values", top_a, top_b))
    return [StatChange(a.name, s, x, y) for s, x, y in pairs if _differs(x, y)]


def psi(a: ColumnProfile, b: ColumnProfile) -> float | None:
    """Population stability index of ``b`` against reference ``a`` (None if not comparable).

    Numeric columns compare histograms (``b`` re-binned onto ``a``'s edges when they differ);
    categorical columns compare the shares of ``a``'s top values plus one bucket for the rest.
    """
    if a.kind == "numeric" and a.hist and b.hist:
        expected = np.asarray(a.hist, dtype=np.float64)
        if a.edges == b.edges:
            actual = np.asarray(b.hist, dtype=np.float64)
        else:
            # Values of b outside a's range fall in a's first or last bin, as monitoring bins them.
            edges = np.asarray(a.edges, dtype=np.float64)
            wide = edges.copy()
            wide[0] = min(edges[0], b.edges[0])
            wide[-1] = max(edges[-1], b.edges[-1])
            actual = rebin(b.edges, b.hist, wide)
        return _psi(expected, actual)
    if a.kind == "categorical" and a.count and b.count:
        keys = [v for v, _ in a.top]
        counts_b = dict(b.top)
        expected = np.array([c for _, c in a.top] + [a.other], dtype=np.float64)
        seen_b = [counts_b.get(k, 0) for k in keys]
        actual = np.array([*seen_b, b.count - sum(seen_b)], dtype=np.float64)
        return _psi(expected, actual)
    return None


def _psi(expected: NDArray[np.float64], actual: NDArray[np.float64]) -> float:
    if expected.sum() <= 0 or actual.sum() <= 0:
        return 0.0
    p = np.maximum(expected / expected.sum(), _EPS)
    q = np.maximum(actual / actual.sum(), _EPS)
    value = float(np.sum((q - p) * np.log(q / p)))
    return round(value, 12) if value > 1e-12 else 0.0
