"""The profile: statistics equal numpy's on known data, and merges equal the profile of the whole."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from loopml.data.profile import BINS, QUANTILES, Profile, profile_table, quantile_key
from loopml.errors import InvalidInput

rng = np.random.default_rng(42)
N = 20_001
NORMAL = rng.normal(3.0, 2.0, N)
INTS = rng.integers(0, 1000, N)
CITIES = rng.choice(["paris", "lyon", "nice"], N, p=[0.5, 0.3, 0.2])


def known_table() -> pa.Table:
    with_nulls = pa.array(np.where(np.arange(N) % 10 == 0, np.nan, NORMAL), from_pandas=True)
    city_nulls = pa.array([None if i % 7 == 0 else c for i, c in enumerate(CITIES)])
    return pa.table({"x": NORMAL, "i": INTS, "xn": with_nulls, "city": city_nulls})


def test_numeric_statistics_equal_numpy() -> None:
    col = profile_table(known_table()).columns["x"]
    assert col.kind == "numeric" and col.count == N and col.nulls == 0
    assert col.min == NORMAL.min() and col.max == NORMAL.max()
    assert col.mean == pytest.approx(NORMAL.mean(), rel=1e-12)
    assert col.std == pytest.approx(NORMAL.std(ddof=1), rel=1e-12)
    expected = np.quantile(NORMAL, QUANTILES)
    assert [col.quantiles[quantile_key(q)] for q in QUANTILES] == pytest.approx(expected, rel=1e-12)
    assert len(col.edges) == BINS + 1 and col.edges[0] == NORMAL.min() and col.edges[-1] == NORMAL.max()
    counts, _ = np.histogram(NORMAL, bins=np.asarray(col.edges))
    assert col.hist == counts.tolist()


def test_integer_quantiles_equal_numpy_with_many_ties() -> None:
    col = profile_table(known_table()).columns["i"]
    assert [col.quantiles[quantile_key(q)] for q in QUANTILES] == np.quantile(INTS, QUANTILES).tolist()
    assert sum(col.hist) == N


def test_nulls_are_counted_and_left_out_of_the_statistics() -> None:
    col = profile_table(known_table()).columns["xn"]
    kept = NORMAL[np.arange(N) % 10 != 0]
    assert col.nulls == len(NORMAL) - len(kept) and col.count == len(kept)
    assert col.mean == pytest.approx(kept.mean(), rel=1e-12)
    assert col.quantiles["p50"] == pytest.approx(np.median(kept), rel=1e-12)


def test_nan_and_infinity_are_counted_as_non_finite() -> None:
    col = profile_table(pa.table({"x": [1.0, float("nan"), float("inf"), 3.0, None]})).columns["x"]
    assert (col.count, col.nulls, col.nonfinite, col.mean, col.max) == (2, 1, 2, 2.0, 3.0)


def test_categorical_counts_top_values_and_distinct() -> None:
    col = profile_table(known_table()).columns["city"]
    kept = [c for i, c in enumerate(CITIES) if i % 7 != 0]
    values, counts = np.unique(kept, return_counts=True)
    expected = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: -vc[1])
    assert col.kind == "categorical" and col.nulls == N - len(kept) and col.count == len(kept)
    assert col.distinct == 3 and col.top == expected and col.other == 0


def test_only_the_top_fifty_values_are_kept_and_the_rest_is_counted() -> None:
    values = [f"v{i:03d}" for i in range(120) for _ in range(i + 1)]  # v119 is the most frequent
    col = profile_table(pa.table({"c": values})).columns["c"]
    assert col.distinct == 120 and len(col.top) == 50
    assert col.top[0] == ("v119", 120) and col.top[-1] == ("v070", 71)
    assert col.other == len(values) - sum(c for _, c in col.top)


def test_booleans_and_other_types() -> None:
    table = pa.table({"b": [True, False, True, None], "d": pa.array([1, None, 3, 4], pa.date32())})
    prof = profile_table(table)
    assert prof.columns["b"].top == [(True, 2), (False, 1)] and prof.columns["b"].nulls == 1
    assert (prof.columns["d"].kind, prof.columns["d"].count, prof.columns["d"].nulls) == ("other", 3, 1)


def test_a_profile_survives_json() -> None:
    prof = profile_table(known_table())
    assert Profile.from_dict(prof.to_dict()) == prof


def test_merge_equals_the_profile_of_the_concatenation_for_the_mergeable_parts() -> None:
    table = known_table()
    first, second = table.slice(0, 8_000), table.slice(8_000)
    merged = profile_table(first).merge(profile_table(second))
    whole = profile_table(table)
    assert merged.num_rows == whole.num_rows
    for name in ("x", "i", "xn"):
        m, w = merged.columns[name], whole.columns[name]
        assert (m.count, m.nulls, m.min, m.max) == (w.count, w.nulls, w.min, w.max)
        assert m.mean == pytest.approx(w.mean, rel=1e-12) and m.std == pytest.approx(w.std, rel=1e-12)
        assert sum(m.hist) == w.count and m.edges[0] == w.min and m.edges[-1] == w.max
        # Quantiles come from the merged histogram: close, not exact.
        spread = w.max - w.min  # type: ignore[operator]
        for key, value in w.quantiles.items():
            assert abs(m.quantiles[key] - value) < spread / BINS, key
        assert not m.exact
    m, w = merged.columns["city"], whole.columns["city"]
    assert (m.count, m.nulls, m.distinct, m.top, m.other, m.exact) == (
        w.count, w.nulls, w.distinct, w.top, w.other, True,
    )  # fmt: skip


def test_histograms_with_the_same_edges_add_exactly() -> None:
    a = profile_table(pa.table({"x": [0.0, 1.0, 2.0, 10.0]}))
    b = profile_table(pa.table({"x": [0.0, 5.0, 10.0]}))
    merged = a.merge(b).columns["x"]
    assert merged.hist == [x + y for x, y in zip(a.columns["x"].hist, b.columns["x"].hist, strict=True)]


def test_profiles_of_different_columns_do_not_merge() -> None:
    with pytest.raises(InvalidInput, match="different columns"):
        profile_table(pa.table({"x": [1]})).merge(profile_table(pa.table({"y": [1]})))
    with pytest.raises(InvalidInput, match="numeric in one profile and categorical"):
        profile_table(pa.table({"x": [1]})).merge(profile_table(pa.table({"x": ["a"]})))


def test_an_all_null_numeric_column_has_no_statistics() -> None:
    col = profile_table(pa.table({"x": pa.array([None, None], pa.float64())})).columns["x"]
    assert (col.count, col.nulls, col.mean, col.std, col.hist) == (0, 2, None, None, [])


def test_a_long_mostly_distinct_string_column_is_profiled_by_value_hashes() -> None:
    values = [None if i % 100 == 0 else ("hot" if i % 10 == 1 else f"id-{i}") for i in range(80_000)]
    col = profile_table(pa.table({"id": values})).columns["id"]
    present = [v for v in values if v is not None]
    assert (col.count, col.nulls, col.distinct) == (len(present), 800, len(set(present)))
    assert col.top[0] == ("hot", present.count("hot")) and len(col.top) == 50
    assert col.top[1][1] == 1 and col.other == len(present) - sum(c for _, c in col.top)
