"""Window profiles: merging two windows equals profiling their union."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from loopml.data.profile import profile_table
from loopml.errors import InvalidInput
from loopml.monitoring.drift import compute_drift
from loopml.monitoring.windows import FINE, NumericWindow, WindowProfile, profile_window


def _data(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    x[:3] = [np.nan, np.inf, 50.0]  # non-finite values and an outlier beyond the reference range
    return pa.table(
        {
            "x": pa.array(x).fill_null(0.0),
            "i": pa.array(rng.integers(0, 100, n)),
            "c": pa.array(rng.choice(["a", "b", "new"] if shift else ["a", "b"], n)),
            "m": pa.array([None if j % 7 == 0 else float(j) for j in range(n)], pa.float64()),
        }
    )


@pytest.mark.parametrize("make_ref", [lambda t: t, profile_table], ids=["raw", "profile"])
def test_merge_of_two_windows_equals_profile_of_their_union(make_ref) -> None:  # type: ignore[no-untyped-def]
    ref = make_ref(_data(4000, seed=1))
    a, b = _data(3000, seed=2, shift=0.5), _data(2000, seed=3, shift=-0.2)
    merged = profile_window(a, ref).merge(profile_window(b, ref))
    union = profile_window(pa.concat_tables([a, b]), ref)
    assert merged.num_rows == union.num_rows == 5000
    for name in ("x", "i", "m"):
        m, u = merged.columns[name], union.columns[name]
        assert isinstance(m, NumericWindow) and isinstance(u, NumericWindow)
        assert (m.count, m.nulls, m.nonfinite, m.counts, m.fine) == (
            u.count,
            u.nulls,
            u.nonfinite,
            u.counts,
            u.fine,
        )
        assert (m.min, m.max) == (u.min, u.max)
        assert m.mean == pytest.approx(u.mean, rel=1e-12) and m.m2 == pytest.approx(u.m2, rel=1e-12)
        assert m.above_sum == pytest.approx(u.above_sum, rel=1e-12)
    assert merged.columns["c"] == union.columns["c"]
    by_merged, by_union = compute_drift(ref, merged), compute_drift(ref, union)
    for fm, fu in zip(by_merged.features, by_union.features, strict=True):
        assert (fm.method, fm.drifted, fm.status, fm.current_hist) == (
            fu.method,
            fu.drifted,
            fu.status,
            fu.current_hist,
        )
        assert fm.statistic == pytest.approx(fu.statistic, rel=1e-9)


def test_window_counts_values_outside_the_reference_range_in_open_bins() -> None:
    ref = pa.table({"x": np.linspace(0.0, 1.0, 101)})
    w = profile_window(pa.table({"x": [-5.0, 0.5, 7.0, 9.0]}), ref).columns["x"]
    assert isinstance(w, NumericWindow)
    assert (w.counts[0], w.counts[-1]) == (1, 2) and sum(w.counts) == 4
    assert (w.fine[0], w.fine[FINE + 1], w.below_sum, w.above_sum) == (1, 2, -5.0, 16.0)


def test_window_quantiles_within_one_fine_bin() -> None:
    rng = np.random.default_rng(4)
    ref = pa.table({"x": rng.uniform(0, 10, 10_000)})
    cur = rng.uniform(0, 10, 50_000)
    w = profile_window(pa.table({"x": cur}), ref).columns["x"]
    assert isinstance(w, NumericWindow)
    width = (w.hi - w.lo) / FINE
    for q in (0.05, 0.5, 0.95):
        assert abs(w.quantile(q) - np.quantile(cur, q)) <= width  # type: ignore[operator]


def test_window_profile_round_trips_and_refuses_other_bins() -> None:
    ref = _data(1000, seed=5)
    w = profile_window(_data(500, seed=6, shift=1.0), ref)
    assert WindowProfile.from_dict(w.to_dict()) == w
    other = profile_window(_data(500, seed=6), _data(1000, seed=9, shift=3.0))
    with pytest.raises(InvalidInput, match="different reference bins"):
        w.merge(other)


def test_empty_window_profile_merges_as_identity() -> None:
    ref = _data(1000, seed=5)
    data = _data(300, seed=7)
    empty = profile_window(data.slice(0, 0), ref)
    full = profile_window(data, ref)
    assert empty.merge(full) == full
    assert {f.status for f in compute_drift(ref, empty).features} == {"empty"}
