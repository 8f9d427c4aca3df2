"""Drift per feature between a reference and a current window, and the dataset-level verdict.

    import loopml.data
    from loopml.monitoring.drift import compute_drift

    ref = loopml.data.get("churn", 3)                 # its stored profile is the reference
    result = compute_drift(ref, todays_rows, thresholds={"age": 0.2})
    print(result.dataset_drift, result.drifted_columns)

Methods (``method`` of a column; ``methods={column: name}`` overrides the automatic choice):

======================  ===========================================  ===================
name                    statistic                                    drifted when
======================  ===========================================  ===================
``ks``                  two-sample Kolmogorov-Smirnov, p-value       p < 0.05
``ks_approx``           KS on the reference profile's ECDF           p < 0.05
``wasserstein``         1-Wasserstein / reference std (population)   >= 0.1
``psi``                 population stability index                   >= 0.1
``kl``                  KL(current || reference), nats               >= 0.1
``jensenshannon``       Jensen-Shannon distance (natural log)        >= 0.1
``hellinger``           Hellinger distance                           >= 0.1
``chi2``                chi-square homogeneity test, p-value         p < 0.05
======================  ===========================================  ===================

Automatic choice (as Evidently's defaults): a numeric column is tested with ``ks`` when the
reference has at most 1,000 values, else with ``wasserstein``; a categorical column with
``chi2`` up to 1,000 values, else ``jensenshannon``.  Every statistic that applies is computed
and kept in ``FeatureDrift.stats`` whichever decides.

Numeric bins (PSI, KL, JS, Hellinger): with a raw reference, the reference's deciles; with a
stored profile, its histogram edges; the outer bins are open-ended and empty bins are smoothed
with ``EPS`` = 1e-4 (see :mod:`loopml.monitoring.kernels`).  KS and Wasserstein are exact
(equal to SciPy) when both raw samples are given; against a stored profile or a window profile
they are read from the piecewise-linear ECDFs of the histograms (method ``ks_approx``; the
error is at most the mass of one histogram bin, and the note says so).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
from numpy.typing import NDArray

from loopml.data.profile import ColumnProfile, Profile
from loopml.data.records import DatasetVersion
from loopml.errors import InvalidInput
from loopml.monitoring import kernels as k
from loopml.monitoring.records import DriftResult, FeatureDrift
from loopml.monitoring.windows import (
    Bins,
    CategoricalWindow,
    NumericWindow,
    WindowProfile,
    category_counts,
    column_kind,
    numeric_values,
    open_dataset,
    profile_bins,
    quantile_edges,
    to_table,
)

SMALL = 1000
SHARE_THRESHOLD = 0.5
THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "ks_approx": 0.05,
    "chi2": 0.05,
    "wasserstein": 0.1,
    "psi": 0.1,
    "kl": 0.1,
    "jensenshannon": 0.1,
    "hellinger": 0.1,
}
P_VALUE_METHODS = frozenset({"ks", "ks_approx", "chi2"})
NUMERIC_METHODS = frozenset({"ks", "ks_approx", "wasserstein", "psi", "kl", "jensenshannon", "hellinger"})
CATEGORICAL_METHODS = frozenset({"chi2", "psi", "kl", "jensenshannon", "hellinger"})
CORRECTIONS = {"bonferroni": "bonferroni", "bh": "bh", "fdr_bh": "bh", "benjamini-hochberg": "bh"}
OTHER = "(other)"

Float = NDArray[np.float64]


# ---- one side of one column -------------------------------------------------------------------


@dataclass(slots=True)
class _Num:
    """A numeric column on one side: raw (``ordered``) or summarised (``knots`` of its ECDF)."""

    count: int
    nulls: int
    mean: float
    std: float  # population standard deviation
    ordered: Float | None = None
    knots: tuple[Float, Float] | None = None
    counts: NDArray[np.int64] | None = None


@dataclass(slots=True)
class _Cat:
    values: list[Any]
    counts: NDArray[np.int64]
    nulls: int
    other: int = 0  # a profile's values beyond its top list

    @property
    def count(self) -> int:
        return int(self.counts.sum()) + self.other


def _raw_num(col: pa.ChunkedArray) -> _Num:
    x, nulls, _ = numeric_values(col)
    ordered = np.sort(x)
    n = len(ordered)
    mean = float(ordered.mean()) if n else 0.0
    dev = ordered - mean
    std = float(np.sqrt(np.dot(dev, dev) / n)) if n else 0.0
    return _Num(n, nulls, mean, std, ordered=ordered)


def _profile_num(cp: ColumnProfile) -> _Num:
    n = cp.count
    std = float(np.sqrt(cp.m2 / n)) if n else 0.0
    side = _Num(n, cp.nulls, cp.mean or 0.0, std)
    if n and cp.min == cp.max:
        side.counts = np.array([0, n, 0], dtype=np.int64)
        side.knots = (np.array([cp.min, cp.min]), np.array([0.0, 1.0]))
    elif n:
        side.counts = np.asarray(cp.hist, dtype=np.int64)
        cum = np.concatenate([[0.0], np.cumsum(cp.hist)]) / n
        side.knots = (np.asarray(cp.edges, dtype=np.float64), cum)
    return side


def _window_num(w: NumericWindow) -> _Num:
    std = float(np.sqrt(w.m2 / w.count)) if w.count else 0.0
    return _Num(
        w.count, w.nulls, w.mean, std, knots=w.cdf_knots(), counts=np.asarray(w.counts, dtype=np.int64)
    )


def _raw_cat(col: pa.ChunkedArray) -> _Cat:
    values, counts, nulls = category_counts(col)
    return _Cat(values, counts, nulls)


def _profile_cat(cp: ColumnProfile) -> _Cat:
    values = [v for v, _ in cp.top]
    counts = np.array([c for _, c in cp.top], dtype=np.int64)
    return _Cat(values, counts, cp.nulls, cp.other)


def _window_cat(w: CategoricalWindow) -> _Cat:
    return _Cat(list(w.counts), np.array(list(w.counts.values()), dtype=np.int64), w.nulls)


# ---- sources: what each side of the comparison is ---------------------------------------------


class _Source:
    """One side of the comparison: a raw table, a dataset on disk (read one column at a time), a
    stored profile or a window profile."""

    def __init__(self, data: Any, what: str) -> None:
        self.profile: Profile | None = None
        self.window: WindowProfile | None = None
        self.table: pa.Table | None = None
        self.dataset: pads.Dataset | None = None
        self.label = what
        if isinstance(data, DatasetVersion):
            self.profile, self.label = data.profile, data.ref
        elif isinstance(data, Profile):
            self.profile = data
        elif isinstance(data, WindowProfile):
            self.window = data
        elif (dataset := open_dataset(data, what)) is not None:
            self.dataset = dataset
        else:
            self.table = to_table(data, what)

    @property
    def raw(self) -> bool:
        return self.table is not None or self.dataset is not None

    @property
    def num_rows(self) -> int:
        if self.table is not None:
            return int(self.table.num_rows)
        if self.dataset is not None:
            return int(self.dataset.count_rows())
        return self.profile.num_rows if self.profile is not None else self.window.num_rows  # type: ignore[union-attr]

    def names(self) -> list[str]:
        if self.table is not None:
            return list(self.table.column_names)
        if self.dataset is not None:
            return list(self.dataset.schema.names)
        return list(self.profile.columns if self.profile is not None else self.window.columns)  # type: ignore[union-attr]

    def column(self, name: str) -> pa.ChunkedArray:
        """A raw column: the table's, or read from the dataset now (and not kept)."""
        if self.table is not None:
            return self.table.column(name)
        assert self.dataset is not None
        return self.dataset.to_table(columns=[name]).column(0)

    def kind(self, name: str) -> str:
        if self.table is not None:
            return column_kind(self.table.column(name).type)
        if self.dataset is not None:
            return column_kind(self.dataset.schema.field(name).type)
        cols: Mapping[str, Any] = self.profile.columns if self.profile is not None else self.window.columns  # type: ignore[union-attr]
        return str(cols[name].kind)

    def numeric(self, name: str) -> _Num:
        if self.raw:
            return _raw_num(self.column(name))
        if self.profile is not None:
            return _profile_num(self.profile.columns[name])
        w = self.window.columns[name]  # type: ignore[union-attr]
        assert isinstance(w, NumericWindow)
        return _window_num(w)

    def categorical(self, name: str) -> _Cat:
        if self.raw:
            return _raw_cat(self.column(name))
        if self.profile is not None:
            return _profile_cat(self.profile.columns[name])
        w = self.window.columns[name]  # type: ignore[union-attr]
        assert isinstance(w, CategoricalWindow)
        return _window_cat(w)

    def nulls(self, name: str) -> int:
        if self.raw:
            return int(self.column(name).null_count)
        cols: Mapping[str, Any] = self.profile.columns if self.profile is not None else self.window.columns  # type: ignore[union-attr]
        return int(cols[name].nulls)


# ---- per-column drift -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ask:
    """What the caller asked of one column."""

    name: str
    method: str | None
    threshold: float | None


def _verdict(
    method: str, stats: dict[str, float], threshold: float | None
) -> tuple[float, float | None, float, bool]:
    """(statistic, p-value, threshold, drifted) of the deciding method."""
    t = THRESHOLDS[method] if threshold is None else float(threshold)
    if method in P_VALUE_METHODS:
        stat_key = "ks" if method.startswith("ks") else "chi2"
        p = stats[f"{stat_key}_p_value"]
        return stats[stat_key], p, t, p < t
    s = stats[method]
    return s, None, t, s >= t


def _numeric_bins(
    ref: _Num, cur: _Num, bins: Bins | None
) -> tuple[Float, NDArray[np.int64], NDArray[np.int64]]:
    if ref.ordered is not None:
        edges = np.asarray(quantile_edges(ref.ordered), dtype=np.float64)
        rc = k.bin_counts_sorted(ref.ordered, edges)
    else:
        assert bins is not None and ref.counts is not None
        edges, rc = np.asarray(bins.edges, dtype=np.float64), ref.counts
    if cur.ordered is not None:
        cc = k.bin_counts_sorted(cur.ordered, edges)
    else:
        assert cur.counts is not None
        cc = cur.counts
        if len(cc) != len(rc):
            raise InvalidInput(
                "the current window was profiled against different reference bins; profile it with "
                "profile_window(rows, reference) using this reference",
                details={"field": "current"},
            )
    return edges, rc, cc


def _ecdf(side: _Num, grid: Float) -> Float:
    if side.ordered is not None:
        return np.searchsorted(side.ordered, grid, side="right") / side.count
    assert side.knots is not None
    xs, ys = side.knots
    return np.interp(grid, xs, ys, left=0.0, right=1.0)


def _sample_stats(ref: _Num, cur: _Num) -> tuple[dict[str, float], bool]:
    """KS (statistic, p-value) and raw Wasserstein; exact when both samples are raw."""
    if ref.ordered is not None and cur.ordered is not None:
        d, w = k.ks_wasserstein(ref.ordered, cur.ordered)
        return {"ks": d, "ks_p_value": k.ks_pvalue(ref.ordered, cur.ordered, d), "wasserstein_raw": w}, True
    parts = [s.ordered if s.ordered is not None else s.knots[0] for s in (ref, cur)]  # type: ignore[index]
    grid = np.unique(np.concatenate(parts))
    d, w = k.cdf_distance(grid, _ecdf(ref, grid), _ecdf(cur, grid))
    return {
        "ks": d,
        "ks_p_value": k.asymptotic_ks_pvalue(d, ref.count, cur.count),
        "wasserstein_raw": w,
    }, False


def _numeric_drift(ask: _Ask, ref: _Num, cur: _Num, bins: Bins | None) -> FeatureDrift:
    edges, rc, cc = _numeric_bins(ref, cur, bins)
    stats: dict[str, float] = {
        "psi": k.psi(rc, cc),
        "kl": k.kl(rc, cc),
        "jensenshannon": k.jensenshannon(rc, cc),
        "hellinger": k.hellinger(rc, cc),
        "reference_mean": ref.mean,
        "current_mean": cur.mean,
        "reference_std": ref.std,
        "current_std": cur.std,
    }
    base = FeatureDrift(
        ask.name,
        "numeric",
        "psi",
        reference_count=ref.count,
        current_count=cur.count,
        edges=[float(e) for e in edges],
        reference_hist=[int(c) for c in rc],
        current_hist=[int(c) for c in cc],
    )
    if ref.std == 0.0:
        s, p, t, drifted = _verdict("psi", stats, ask.threshold)
        note = (
            f"the reference column is constant ({ref.mean!r}): distances normed by its standard "
            "deviation and shape tests are undefined; PSI over below/at/above that value decides"
        )
        return replace(
            base, statistic=s, threshold=t, drifted=drifted, status="constant", note=note, stats=stats
        )
    sample, exact = _sample_stats(ref, cur)
    stats.update(sample)
    stats["wasserstein"] = sample["wasserstein_raw"] / ref.std
    method = ask.method or ("ks" if ref.count <= SMALL else "wasserstein")
    note = ""
    if not exact:
        method = "ks_approx" if method == "ks" else method
        note = (
            "KS and Wasserstein read from histogram ECDFs (a side is a profile, not raw rows): "
            "approximate, "
            "error up to the mass of one histogram bin; p-value from the asymptotic distribution"
        )
    s, p, t, drifted = _verdict(method, stats, ask.threshold)
    return replace(
        base, method=method, statistic=s, p_value=p, threshold=t, drifted=drifted, note=note, stats=stats
    )


def _align(ref: _Cat, cur: _Cat) -> tuple[list[Any], NDArray[np.int64], NDArray[np.int64], str]:
    """Reference and current counts over the union of categories (a loop over categories, not rows)."""
    cats = list(ref.values)
    index = {v: i for i, v in enumerate(cats)}
    rc, cc = list(ref.counts.tolist()), [0] * len(cats)
    note, other_at = "", -1
    if ref.other:
        other_at = len(cats)
        cats.append(OTHER)
        rc.append(ref.other)
        cc.append(0)
        note = f"the reference profile keeps its top {len(ref.values)} values; the rest compare as {OTHER!r}"
    for v, c in zip(cur.values, cur.counts.tolist(), strict=True):
        i = index.get(v, other_at)
        if i < 0:
            index[v] = i = len(cats)
            cats.append(v)
            rc.append(0)
            cc.append(0)
        cc[i] += c
    return cats, np.array(rc, dtype=np.int64), np.array(cc, dtype=np.int64), note


def _categorical_drift(ask: _Ask, ref: _Cat, cur: _Cat) -> FeatureDrift:
    cats, rc, cc, note = _align(ref, cur)
    chi2, chi2_p, dof = k.chi2_homogeneity(rc, cc)
    stats = {
        "chi2": chi2,
        "chi2_p_value": chi2_p,
        "chi2_dof": float(dof),
        "psi": k.psi(rc, cc),
        "kl": k.kl(rc, cc),
        "jensenshannon": k.jensenshannon(rc, cc),
        "hellinger": k.hellinger(rc, cc),
        "unseen_share": float(cc[rc == 0].sum() / cc.sum()),
    }
    method = ask.method or ("chi2" if ref.count <= SMALL else "jensenshannon")
    s, p, t, drifted = _verdict(method, stats, ask.threshold)
    status = "ok"
    if dof == 0:
        status, drifted = "single_category", False
        note = (
            f"one category ({cats[int(np.argmax(rc + cc))]!r}) on both sides: the distributions are identical"
        )
    return FeatureDrift(
        ask.name,
        "categorical",
        method,
        statistic=s,
        p_value=p,
        threshold=t,
        drifted=drifted,
        status=status,
        note=note,
        stats=stats,
        reference_count=ref.count,
        current_count=cur.count,
        categories=cats,
        reference_hist=[int(c) for c in rc],
        current_hist=[int(c) for c in cc],
    )


def _untestable(ask: _Ask, kind: str, status: str, note: str, ref_n: int = 0, cur_n: int = 0) -> FeatureDrift:
    method = ask.method or ""
    return FeatureDrift(
        ask.name, kind, method, status=status, note=note, reference_count=ref_n, current_count=cur_n
    )


def _empty_side(
    ask: _Ask, kind: str, side: str, count: int, nulls: int, ref_n: int, cur_n: int
) -> FeatureDrift | None:
    if count:
        return None
    if nulls:
        note = (
            f"all {nulls} {side} values of {ask.name!r} are null: nothing to compare (see the quality report)"
        )
        return _untestable(ask, kind, "all_null", note, ref_n, cur_n)
    return _untestable(
        ask, kind, "empty", f"the {side} data has no rows for {ask.name!r}: nothing to compare", ref_n, cur_n
    )


def _column_drift(ask: _Ask, ref: _Source, cur: _Source, bins: Bins | None) -> FeatureDrift:
    kind = ref.kind(ask.name)
    if ask.name not in cur.names():
        note = f"column {ask.name!r} is in the reference but not in the current data; not tested"
        return _untestable(ask, kind, "missing", note)
    if kind not in ("numeric", "categorical") or cur.kind(ask.name) != kind:
        now = cur.kind(ask.name)
        note = f"column {ask.name!r} is {kind} in the reference and {now} now; drift is not defined"
        return _untestable(ask, kind, "unsupported", note)
    _check_method(ask, kind)
    if kind == "numeric":
        r, c = ref.numeric(ask.name), cur.numeric(ask.name)
    else:
        r, c = ref.categorical(ask.name), cur.categorical(ask.name)  # type: ignore[assignment]
    for side, s in (("reference", r), ("current", c)):
        empty = _empty_side(ask, kind, side, s.count, s.nulls, r.count, c.count)
        if empty is not None:
            return empty
    if isinstance(r, _Num) and isinstance(c, _Num):
        return _numeric_drift(ask, r, c, bins)
    assert isinstance(r, _Cat) and isinstance(c, _Cat)
    return _categorical_drift(ask, r, c)


def _check_method(ask: _Ask, kind: str) -> None:
    allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
    if ask.method is not None and ask.method not in allowed:
        raise InvalidInput(
            f"method {ask.method!r} does not apply to {kind} column {ask.name!r}; "
            f"use one of {sorted(allowed)}",
            details={"field": f"methods.{ask.name}"},
        )


# ---- corrections, progress, entry point -------------------------------------------------------


def _correct(features: list[FeatureDrift], correction: str | None) -> list[FeatureDrift]:
    """Adjust p-values of the p-value tests for multiple comparisons and re-decide them."""
    if correction is None:
        return features
    kind = CORRECTIONS.get(correction.lower())
    if kind is None:
        raise InvalidInput(
            f"unknown correction {correction!r}; use one of {sorted(CORRECTIONS)} or None",
            details={"field": "correction"},
        )
    tested = [i for i, f in enumerate(features) if f.status == "ok" and f.p_value is not None]
    raw = np.array([features[i].p_value for i in tested], dtype=np.float64)
    adjusted = np.minimum(raw * len(raw), 1.0) if kind == "bonferroni" else k.bh_adjust(raw)
    out = list(features)
    for i, p, p_adj in zip(tested, raw.tolist(), adjusted.tolist(), strict=True):
        f = out[i]
        stats = dict(f.stats, p_value_uncorrected=p)
        out[i] = replace(f, p_value=p_adj, drifted=p_adj < f.threshold, stats=stats)
    return out


@contextmanager
def progress(total: int, label: str) -> Iterator[Any]:
    """A rich progress bar that appears only when a run lasts over 2 s on a terminal (silent in
    tests and pipes); yields ``advance()``."""
    from rich.progress import Progress

    start = time.monotonic()
    bar: Progress | None = None
    done = 0
    interactive = sys.stderr.isatty()

    def advance() -> None:
        nonlocal bar, done
        done += 1
        if bar is None and interactive and time.monotonic() - start > 2.0:
            bar = Progress(transient=True)
            bar.start()
            bar.add_task(label, total=total, completed=done)
        elif bar is not None:
            bar.update(bar.task_ids[0], completed=done)

    try:
        yield advance
    finally:
        if bar is not None:
            bar.stop()


def compute_drift(
    reference: DatasetVersion | Profile | Any,
    current: WindowProfile | Any,
    *,
    columns: Sequence[str] | None = None,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    correction: str | None = None,
    prediction_column: str | None = None,
    share_threshold: float = SHARE_THRESHOLD,
) -> DriftResult:
    """Drift of every reference column (or ``columns``) between ``reference`` and ``current``.

    ``reference``: a DatasetVersion or Profile (its stored profile) or a raw table (pyarrow,
    pandas, polars); ``current``: a raw table or a :class:`WindowProfile` made against the same
    reference.  ``methods``/``thresholds`` override per column; ``correction`` ("bonferroni" or
    "bh") adjusts the p-values of p-value tests; ``prediction_column`` is reported as prediction
    drift and left out of the share; ``dataset_drift`` is ``drift_share >= share_threshold``.

    >>> import numpy as np, pyarrow as pa
    >>> rng = np.random.default_rng(0)
    >>> ref = pa.table({"x": rng.normal(size=2000), "y": rng.normal(size=2000)})
    >>> cur = pa.table({"x": rng.normal(1.0, size=2000), "y": rng.normal(size=2000)})
    >>> compute_drift(ref, cur).drifted_columns
    ['x']
    """
    ref, cur = _Source(reference, "reference"), _Source(current, "current")
    names = list(columns) if columns is not None else ref.names()
    if prediction_column is not None and prediction_column not in names:
        names.append(prediction_column)
    unknown = [n for n in names if n not in ref.names()]
    if unknown:
        raise InvalidInput(
            f"columns {unknown} are not in the reference {ref.label}; its columns are {ref.names()}",
            details={"field": "columns"},
        )
    bins = {n: profile_bins(c) for n, c in ref.profile.columns.items()} if ref.profile is not None else {}
    if cur.window is not None and ref.raw:
        bins = {}  # both sides binned at the raw reference's deciles, recomputed from its sort
    results: list[FeatureDrift] = []
    with progress(len(names), "drift") as advance:
        for n in names:
            ask = _Ask(n, (methods or {}).get(n), (thresholds or {}).get(n))
            results.append(_column_drift(ask, ref, cur, bins.get(n)))
            advance()
    prediction = next((f for f in results if f.column == prediction_column), None)
    features = _correct([f for f in results if f.column != prediction_column], correction)
    tested = [f for f in features if f.status in ("ok", "constant")]
    share = sum(f.drifted for f in tested) / len(tested) if tested else 0.0
    note = (
        "" if tested else "no column could be tested (see each feature's note); the share is 0 by definition"
    )
    return DriftResult(
        features=features,
        drift_share=share,
        share_threshold=share_threshold,
        dataset_drift=bool(tested) and share >= share_threshold,
        reference_rows=ref.num_rows,
        current_rows=cur.num_rows,
        correction=correction,
        prediction=prediction,
        note=note,
    )
