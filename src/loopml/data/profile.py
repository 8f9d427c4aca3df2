"""The statistical profile of a dataset version: the reference monitoring compares against.

Per column, without keeping any raw data:

* numeric (int, float): count of finite values, nulls, non-finite values (NaN, inf),
  min, max, mean and M2 (sum of squared deviations, so std and merges are exact),
  quantiles p1..p99 and a histogram of :data:`BINS` equal-width bins with stored edges;
* categorical (string, bool): count, nulls, distinct count, the :data:`TOP` most frequent
  values with their counts, and the count of every other value;
* other (temporal, binary, nested): count and nulls.

Profiles merge (:meth:`Profile.merge`): counts, nulls, min, max, mean and std are exact;
histograms with the same edges add exactly, otherwise both are re-binned on the union range
assuming values are spread evenly inside a bin; merged quantiles are read from the merged
histogram, so ``exact`` becomes False.  Top values are exact while every value fits in the
top list (``other == 0``); otherwise the distinct count is a lower bound.

>>> import pyarrow as pa
>>> p = profile_table(pa.table({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
>>> p.columns["x"].mean, p.columns["c"].top[0]
(2.0, ('a', 2))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from loopml.data.columns import Column, decode_table
from loopml.data.hashing import value_hashes
from loopml.errors import InvalidInput

BINS = 32
_SUB = 512  # fine bins per histogram bin: quantiles are found in the fine histogram, then exactly
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP = 50


def quantile_key(q: float) -> str:
    return f"p{round(q * 100):d}"


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """Statistics of one column (which fields are filled depends on ``kind``)."""

    name: str
    kind: str
    count: int
    nulls: int
    nonfinite: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    m2: float = 0.0
    quantiles: dict[str, float] = field(default_factory=dict)
    edges: list[float] = field(default_factory=list)
    hist: list[int] = field(default_factory=list)
    distinct: int | None = None
    top: list[tuple[Any, int]] = field(default_factory=list)
    other: int = 0
    exact: bool = True

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1, as pandas reports it)."""
        if self.kind != "numeric" or self.count < 2:
            return None
        return math.sqrt(self.m2 / (self.count - 1))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["top"] = [[v, c] for v, c in self.top]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        d = dict(d)
        d["top"] = [(v, int(c)) for v, c in d.get("top", [])]
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Profile:
    """Per-column statistics of a dataset version; JSON-able and mergeable."""

    num_rows: int
    columns: dict[str, ColumnProfile]

    def to_dict(self) -> dict[str, Any]:
        return {"num_rows": self.num_rows, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        cols = [ColumnProfile.from_dict(c) for c in d.get("columns", [])]
        return cls(int(d["num_rows"]), {c.name: c for c in cols})

    def merge(self, other: Profile) -> Profile:
        """The profile of the two datasets' rows together (see the module docstring for exactness).

        >>> import pyarrow as pa
        >>> a, b = profile_table(pa.table({"x": [1.0]})), profile_table(pa.table({"x": [3.0]}))
        >>> a.merge(b).columns["x"].mean
        2.0
        """
        if list(self.columns) != list(other.columns):
            raise InvalidInput(
                f"cannot merge profiles of different columns: {list(self.columns)} vs {list(other.columns)}",
                details={"field": "columns"},
            )
        merged = {n: merge_columns(c, other.columns[n]) for n, c in self.columns.items()}
        return Profile(self.num_rows + other.num_rows, merged)


def profile_table(table: pa.Table) -> Profile:
    """Profile a table (decodes it; :func:`profile_columns` reuses a decoding)."""
    return profile_columns(decode_table(table), table.num_rows)


def profile_columns(columns: list[Column], num_rows: int) -> Profile:
    return Profile(num_rows, {c.name: profile_column(c) for c in columns})


def profile_column(col: Column, hashes: NDArray[np.uint64] | None = None) -> ColumnProfile:
    """Profile one decoded column; ``hashes`` (its :func:`value_hashes`) saves recomputing them
    for a string column that is not dictionary-encoded."""
    if col.kind == "numeric":
        return _numeric(col)
    if col.kind == "categorical" and col.codes is None:
        return _categorical_by_hash(col, value_hashes(col) if hashes is None else hashes)
    if col.kind == "categorical":
        return _categorical(col)
    return ColumnProfile(col.name, "other", col.length - col.null_count, col.null_count)


# ---- numeric ----------------------------------------------------------------------------------


def _numeric(col: Column) -> ColumnProfile:
    x = col.finite
    assert x is not None
    n = len(x)
    nonfinite = col.length - col.null_count - n
    if n == 0:
        return ColumnProfile(col.name, "numeric", 0, col.null_count, nonfinite)
    lo, hi = float(x.min()), float(x.max())
    mean = float(x.mean())
    scratch = col.scratch
    work = np.subtract(x, mean, out=None if scratch is None else scratch.buffer(1, n))
    m2 = float(np.dot(work, work))
    edges = _edges(lo, hi)
    fine_bins = BINS * _SUB
    idx_out = None if scratch is None else scratch.buffer(2, n).view(np.intp)
    idx = _bin_index(x, edges[0], edges[-1], fine_bins, work, idx_out)
    fine = np.bincount(idx, minlength=fine_bins)
    hist = fine.reshape(BINS, _SUB).sum(axis=1)
    return ColumnProfile(
        col.name,
        "numeric",
        n,
        col.null_count,
        nonfinite,
        min=lo,
        max=hi,
        mean=mean,
        m2=m2,
        quantiles=_exact_quantiles(x, idx, fine),
        edges=[float(e) for e in edges],
        hist=[int(c) for c in hist],
    )


def _edges(lo: float, hi: float) -> NDArray[np.float64]:
    if lo == hi:  # one value: a unit-wide range around it, as numpy's histogram does
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, BINS + 1)


def _bin_index(
    x: NDArray[np.float64],
    lo: float,
    hi: float,
    bins: int,
    work: NDArray[np.float64] | None = None,
    out: NDArray[np.intp] | None = None,
) -> NDArray[np.intp]:
    """floor((x - lo) * bins / (hi - lo)), clipped to the bins; ``work`` is a temporary like ``x``."""
    scaled = np.subtract(x, lo, out=work)
    np.multiply(scaled, bins / (hi - lo), out=scaled)
    if out is None:
        idx = scaled.astype(np.intp)
    else:
        idx = out
        np.copyto(idx, scaled, casting="unsafe")  # truncates like astype: values are >= 0
    np.clip(idx, 0, bins - 1, out=idx)
    return idx


def _lerp(a: float, b: float, t: float) -> float:
    # numpy's formula for 'linear' quantiles, so results agree with np.quantile to the last bit.
    d = b - a
    return b - d * (1 - t) if t >= 0.5 else a + d * t


def _exact_quantiles(
    x: NDArray[np.float64], idx: NDArray[np.intp], fine: NDArray[np.intp]
) -> dict[str, float]:
    """np.quantile's linear quantiles, without sorting: only the fine bins holding a needed
    rank are gathered and sorted (a few thousandths of the data for smooth distributions)."""
    n = len(x)
    pos = np.array(QUANTILES) * (n - 1)
    below = np.floor(pos).astype(np.int64)
    ranks = np.unique(np.concatenate([below, np.minimum(below + 1, n - 1)]))
    cum = np.cumsum(fine)
    bins = np.searchsorted(cum, ranks, side="right")
    need = np.zeros(len(fine), dtype=bool)
    need[bins] = True
    # Bins are ranges of values, so sorting the picked values alone also orders them by bin.
    picked = x[need[idx]]
    picked_counts = np.where(need, fine, 0)
    picked_before = np.cumsum(picked_counts) - picked_counts
    position = picked_before[bins] + (ranks - (cum[bins] - fine[bins]))
    ordered = np.partition(picked, np.unique(position))
    at = dict(zip(ranks.tolist(), ordered[position].tolist(), strict=True))
    out: dict[str, float] = {}
    for q, p, b in zip(QUANTILES, pos.tolist(), below.tolist(), strict=True):
        out[quantile_key(q)] = _lerp(at[b], at[min(b + 1, n - 1)], p - b)
    return out


# ---- categorical ------------------------------------------------------------------------------


def _categorical(col: Column) -> ColumnProfile:
    assert col.codes is not None and col.dictionary is not None
    counts = np.bincount(col.codes + 1, minlength=len(col.dictionary) + 1)[1:]
    distinct = int(np.count_nonzero(counts))
    k = min(TOP, len(counts))
    candidates = np.argpartition(-counts, k - 1)[:k] if 0 < k < len(counts) else np.arange(k)
    values = col.dictionary.take(pa.array(candidates, pa.int64())).to_pylist()
    top = sorted(zip(values, counts[candidates].tolist(), strict=True), key=lambda vc: (-vc[1], str(vc[0])))
    top = [(v, int(c)) for v, c in top if c > 0]
    total = col.length - col.null_count
    return ColumnProfile(
        col.name,
        "categorical",
        total,
        col.null_count,
        distinct=distinct,
        top=top,
        other=total - sum(c for _, c in top),
    )


def _categorical_by_hash(col: Column, hashes: NDArray[np.uint64]) -> ColumnProfile:
    """Counts by 64-bit value hash: distinct values are exact unless two of them collide (~n²/2⁶⁵)."""
    assert col.array is not None
    positions = None
    if col.null_count:
        positions = np.flatnonzero(col.array.is_valid().to_numpy(zero_copy_only=False))
        hashes = hashes[positions]
    unique, counts = _unique_counts(hashes)
    k = min(TOP, len(counts))
    if len(counts) == len(hashes):
        # All distinct (ids): every value counts once; the k with the smallest hashes, so that the
        # same rows in another order give the same list.
        candidates = np.arange(k)
        first = np.argpartition(hashes, k - 1)[:k] if 0 < k < len(hashes) else np.arange(k)
    else:
        candidates = np.argpartition(-counts, k - 1)[:k] if 0 < k < len(counts) else np.arange(k)
        first = _first_positions(hashes, unique[candidates])
    if positions is not None:
        first = positions[first]
    values = col.array.take(pa.array(first, pa.int64())).to_pylist()
    top = sorted(zip(values, counts[candidates].tolist(), strict=True), key=lambda vc: (-vc[1], str(vc[0])))
    total = col.length - col.null_count
    return ColumnProfile(
        col.name,
        "categorical",
        total,
        col.null_count,
        distinct=len(counts),
        top=top,
        other=total - sum(c for _, c in top),
    )


def _unique_counts(values: NDArray[np.uint64]) -> tuple[NDArray[np.uint64], NDArray[np.intp]]:
    """np.unique(values, return_counts=True), from one unstable sort (numpy's SIMD sort)."""
    ordered = np.sort(values)
    if len(ordered) == 0:
        return ordered, np.zeros(0, dtype=np.intp)
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    counts = np.diff(np.append(starts, len(ordered)))
    return ordered[starts], counts


def _first_positions(values: NDArray[np.uint64], wanted: NDArray[np.uint64]) -> NDArray[np.intp]:
    """For each of the distinct ``wanted`` (all present in ``values``), its first position."""
    order = np.argsort(wanted)
    ordered = wanted[order]
    at = np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)
    hits = np.flatnonzero(ordered[at] == values)
    _, first = np.unique(at[hits], return_index=True)  # hits ascend: the first hit of each value
    out = np.empty(len(wanted), dtype=np.intp)
    out[order] = hits[first]
    return out


# ---- merging ----------------------------------------------------------------------------------


def merge_columns(a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    if a.kind != b.kind:
        raise InvalidInput(
            f"column {a.name!r} is {a.kind} in one profile and {b.kind} in the other; cannot merge",
            details={"field": a.name},
        )
    base = replace(a, count=a.count + b.count, nulls=a.nulls + b.nulls, nonfinite=a.nonfinite + b.nonfinite)
    if a.kind == "numeric":
        return _merge_numeric(a, b, base)
    if a.kind == "categorical":
        return _merge_categorical(a, b, base)
    return base


def _merge_numeric(a: ColumnProfile, b: ColumnProfile, base: ColumnProfile) -> ColumnProfile:
    if b.count == 0:
        return replace(a, count=base.count, nulls=base.nulls, nonfinite=base.nonfinite)
    if a.count == 0:
        return replace(b, count=base.count, nulls=base.nulls, nonfinite=base.nonfinite)
    assert a.mean is not None and b.mean is not None and a.min is not None and b.min is not None
    assert a.max is not None and b.max is not None
    n = a.count + b.count
    delta = b.mean - a.mean
    # Chan et al.'s pairwise update: exact in real arithmetic, stable in floating point.
    mean = a.mean + delta * b.count / n
    m2 = a.m2 + b.m2 + delta * delta * a.count * b.count / n
    lo, hi = min(a.min, b.min), max(a.max, b.max)
    if a.edges == b.edges:  # same bins: the counts add exactly
        edges, hist = a.edges, [x + y for x, y in zip(a.hist, b.hist, strict=True)]
    else:
        new_edges = _edges(lo, hi)
        counts = rebin(a.edges, a.hist, new_edges) + rebin(b.edges, b.hist, new_edges)
        edges, hist = [float(e) for e in new_edges], _round_keeping_total(counts, a.count + b.count)
    # Quantiles of a union cannot be computed from the parts' quantiles: read them off the histogram.
    quantiles = _hist_quantiles(edges, hist, lo, hi)
    return replace(
        base, min=lo, max=hi, mean=mean, m2=m2, edges=edges, hist=hist, quantiles=quantiles, exact=False
    )


def rebin(edges: list[float], counts: list[int], new_edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """Spread ``counts`` over ``new_edges`` assuming values are uniform inside each old bin."""
    old = np.asarray(edges, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(counts, dtype=np.float64))])
    at_new = np.interp(new_edges, old, cum, left=0.0, right=float(cum[-1]))
    return np.diff(at_new)


def _round_keeping_total(counts: NDArray[np.float64], total: int) -> list[int]:
    """Whole counts summing to ``total``: floors, plus one for the largest remainders."""
    floors = np.floor(counts).astype(np.int64)
    short = total - int(floors.sum())
    if short > 0:
        floors[np.argsort(floors - counts, kind="stable")[:short]] += 1
    return [int(c) for c in floors]


def _hist_quantiles(edges: list[float], hist: list[int], lo: float, hi: float) -> dict[str, float]:
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(hist, dtype=np.float64))])
    total = cum[-1]
    if total <= 0:
        return {}
    values = np.interp(np.array(QUANTILES) * total, cum, np.asarray(edges, dtype=np.float64))
    return {quantile_key(q): float(min(max(v, lo), hi)) for q, v in zip(QUANTILES, values, strict=True)}


def _merge_categorical(a: ColumnProfile, b: ColumnProfile, base: ColumnProfile) -> ColumnProfile:
    counts: dict[Any, int] = {}
    for v, c in (*a.top, *b.top):
        counts[v] = counts.get(v, 0) + c
    complete = a.other == 0 and b.other == 0
    ranked = sorted(counts.items(), key=lambda vc: (-vc[1], str(vc[0])))
    top = ranked[:TOP]
    distinct = len(counts) if complete else max(a.distinct or 0, b.distinct or 0, len(counts))
    return replace(
        base,
        distinct=distinct,
        top=top,
        other=base.count - sum(c for _, c in top),
        exact=complete and a.exact and b.exact,
    )
