"""Drift statistics: agreement with SciPy, planted shifts, bad input, corrections."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from scipy import spatial, stats

from loopml.data.profile import profile_table
from loopml.errors import InvalidInput
from loopml.monitoring import kernels as k
from loopml.monitoring.drift import compute_drift
from loopml.monitoring.records import DriftResult
from loopml.monitoring.windows import profile_window


def _pair(n1: int, n2: int, shift: float = 0.3, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=n1), rng.normal(shift, 1.2, size=n2)


@pytest.mark.parametrize(("n1", "n2"), [(50, 80), (900, 1000), (9000, 10_000), (30_000, 20_000)])
def test_ks_equals_scipy_ks_2samp_statistic_and_pvalue(n1: int, n2: int) -> None:
    a, b = _pair(n1, n2)
    f = compute_drift(pa.table({"x": a}), pa.table({"x": b}), methods={"x": "ks"}).feature("x")
    want = stats.ks_2samp(a, b)
    assert f.method == "ks"
    assert f.statistic == pytest.approx(want.statistic, abs=1e-9)
    assert f.p_value == pytest.approx(want.pvalue, abs=1e-9, rel=1e-9)


def test_ks_with_ties_equals_scipy() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 400).astype(float), rng.integers(1, 6, 300).astype(float)
    d, _ = k.ks_wasserstein(np.sort(a), np.sort(b))
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_wasserstein_is_scipy_distance_over_reference_std() -> None:
    a, b = _pair(5000, 4000)
    f = compute_drift(pa.table({"x": a}), pa.table({"x": b})).feature("x")
    assert f.method == "wasserstein"
    assert f.statistic == pytest.approx(stats.wasserstein_distance(a, b) / np.std(a), abs=1e-9)


def test_binned_statistics_equal_scipy() -> None:
    ref, cur = np.array([30, 0, 50, 20]), np.array([10, 5, 60, 25])
    assert k.jensenshannon(ref, cur) == pytest.approx(spatial.distance.jensenshannon(ref, cur), abs=1e-9)
    assert k.kl(ref, cur) == pytest.approx(stats.entropy(k.smoothed(cur), k.smoothed(ref)), abs=1e-9)
    chi2, p, dof, _ = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert k.chi2_homogeneity(ref, cur) == pytest.approx((chi2, p, dof), abs=1e-9)
    # Hellinger and PSI by their definitions (SciPy has neither).
    pr, pc = ref / ref.sum(), cur / cur.sum()
    assert k.hellinger(ref, cur) == pytest.approx(math.sqrt(0.5 * np.sum((np.sqrt(pr) - np.sqrt(pc)) ** 2)))
    sp, sc = np.where(pr == 0, 1e-4, pr), np.where(pc == 0, 1e-4, pc)
    assert k.psi(ref, cur) == pytest.approx(float(np.sum((sc - sp) * np.log(sc / sp))))


def test_categorical_chi2_on_small_samples_equals_scipy() -> None:
    rng = np.random.default_rng(5)
    ref = rng.choice(["a", "b", "c"], 600, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["a", "b", "c", "d"], 500, p=[0.4, 0.3, 0.2, 0.1])
    f = compute_drift(pa.table({"c": ref}), pa.table({"c": cur})).feature("c")
    table = np.array([[np.sum(ref == v) for v in "abcd"], [np.sum(cur == v) for v in "abcd"]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert (f.method, f.drifted) == ("chi2", True)
    assert f.statistic == pytest.approx(chi2, abs=1e-9) and f.p_value == pytest.approx(p, abs=1e-9)
    assert f.stats["unseen_share"] == pytest.approx(np.mean(cur == "d"))


def _planted(n: int, seed: int) -> tuple[pa.Table, pa.Table, set[str]]:
    rng = np.random.default_rng(seed)
    ref, cur = {}, {}
    for i in range(8):
        ref[f"n{i}"] = rng.normal(size=n)
        cur[f"n{i}"] = rng.normal(size=n)
    cur["n0"] = rng.normal(0.5, 1.0, size=n)  # mean shift
    cur["n1"] = rng.normal(0.0, 2.0, size=n)  # scale shift
    cats = ["a", "b", "c", "d"]
    for i in range(3):
        ref[f"c{i}"] = rng.choice(cats, n)
        cur[f"c{i}"] = rng.choice(cats, n)
    cur["c0"] = rng.choice(cats, n, p=[0.55, 0.15, 0.15, 0.15])
    return pa.table(ref), pa.table(cur), {"n0", "n1", "c0"}


@pytest.mark.parametrize("n", [500, 20_000])
def test_planted_shifts_flagged_and_unshifted_not(n: int) -> None:
    ref, cur, shifted = _planted(n, seed=11)
    result = compute_drift(ref, cur)
    assert set(result.drifted_columns) == shifted
    assert result.drift_share == pytest.approx(3 / 11)
    assert not result.dataset_drift
    assert compute_drift(ref, cur, share_threshold=0.25).dataset_drift


def test_planted_shifts_against_stored_profile_and_window() -> None:
    ref, cur, shifted = _planted(20_000, seed=12)
    profile = profile_table(ref)
    by_profile = compute_drift(profile, cur)
    by_window = compute_drift(profile, profile_window(cur, profile))
    assert set(by_profile.drifted_columns) == set(by_window.drifted_columns) == shifted
    assert by_profile.feature("n0").note  # says the KS/Wasserstein are approximate


def test_small_reference_profile_uses_ks_approx_and_says_so() -> None:
    a, b = _pair(500, 500, shift=1.0)
    f = compute_drift(profile_table(pa.table({"x": a})), pa.table({"x": b})).feature("x")
    assert f.method == "ks_approx" and f.drifted and "approximate" in f.note
    assert f.statistic == pytest.approx(stats.ks_2samp(a, b).statistic, abs=0.05)


def test_thresholds_and_methods_override_per_feature() -> None:
    ref, cur, _ = _planted(5000, seed=13)
    result = compute_drift(ref, cur, methods={"n2": "psi"}, thresholds={"n0": 10.0, "n2": 0.0})
    assert not result.feature("n0").drifted and result.feature("n0").threshold == 10.0
    assert result.feature("n2").method == "psi" and result.feature("n2").drifted
    with pytest.raises(InvalidInput, match="does not apply to categorical"):
        compute_drift(ref, cur, methods={"c0": "ks"})
    with pytest.raises(InvalidInput, match="not in the reference"):
        compute_drift(ref, cur, columns=["nope"])


def test_corrections_adjust_pvalues() -> None:
    rng = np.random.default_rng(21)
    ref = pa.table({f"x{i}": rng.normal(size=300) for i in range(10)})
    cur = pa.table({f"x{i}": rng.normal(0.12 * (i == 0), size=300) for i in range(10)})
    plain = compute_drift(ref, cur)
    bonf = compute_drift(ref, cur, correction="bonferroni")
    bh = compute_drift(ref, cur, correction="bh")
    raw = np.array([f.p_value for f in plain.features])
    assert [f.p_value for f in bonf.features] == pytest.approx(np.minimum(raw * 10, 1.0))
    order = np.argsort(raw)
    want = np.minimum.accumulate((raw[order] * 10 / np.arange(1, 11))[::-1])[::-1]
    assert [bh.features[i].p_value for i in order] == pytest.approx(np.minimum(want, 1.0))
    assert bonf.features[0].stats["p_value_uncorrected"] == plain.features[0].p_value
    with pytest.raises(InvalidInput, match="unknown correction"):
        compute_drift(ref, cur, correction="holm-ish")


def test_prediction_drift_reported_apart_from_the_share() -> None:
    rng = np.random.default_rng(8)
    ref = pa.table({"x": rng.normal(size=3000), "score": rng.beta(2, 5, 3000)})
    cur = pa.table({"x": rng.normal(size=3000), "score": rng.beta(5, 2, 3000)})
    result = compute_drift(ref, cur, columns=["x"], prediction_column="score")
    assert result.prediction is not None and result.prediction.drifted
    assert [f.column for f in result.features] == ["x"] and result.drift_share == 0.0


def test_bad_input_gives_defined_explained_results() -> None:
    ref = pa.table(
        {
            "gone": [1.0, 2.0, 3.0],
            "nulls": [1.0, 2.0, 3.0],
            "const": [5.0, 5.0, 5.0],
            "one": ["a", "a", "a"],
        }
    )
    cur = pa.table(
        {
            "nulls": pa.array([None, None, None], pa.float64()),
            "const": [5.0, 5.0, 7.0],
            "one": ["a", "a", "a"],
        }
    )
    result = compute_drift(ref, cur)
    by = {f.column: f for f in result.features}
    assert (by["gone"].status, by["nulls"].status) == ("missing", "all_null")
    assert by["const"].status == "constant" and by["const"].drifted and "constant" in by["const"].note
    assert by["one"].status == "single_category" and not by["one"].drifted
    for f in result.features:
        assert f.note, f.column
        assert all(math.isfinite(v) for v in f.stats.values())
    empty = compute_drift(ref, ref.slice(0, 0))
    assert {f.status for f in empty.features} == {"empty"}
    assert empty.drift_share == 0.0 and not empty.dataset_drift and empty.note


def test_result_round_trips_through_dict() -> None:
    ref, cur, _ = _planted(300, seed=2)
    result = compute_drift(ref, cur, prediction_column="n7")
    assert DriftResult.from_dict(result.to_dict()) == result


def test_parquet_paths_and_datasets_give_the_same_result_as_tables(tmp_path: Path) -> None:
    """A path or dataset side is read one column at a time; the result is the table's, exactly."""
    ref, cur, _ = _planted(3000, seed=5)
    pq.write_table(ref, tmp_path / "ref.parquet")
    (tmp_path / "cur").mkdir()
    pq.write_table(cur.slice(0, 1000), tmp_path / "cur" / "a.parquet")
    pq.write_table(cur.slice(1000), tmp_path / "cur" / "b.parquet")
    want = compute_drift(ref, cur).to_dict()
    assert compute_drift(tmp_path / "ref.parquet", str(tmp_path / "cur")).to_dict() == want
    assert compute_drift(pads.dataset(tmp_path / "ref.parquet"), tmp_path / "cur").to_dict() == want
    with pytest.raises(InvalidInput, match="not a readable Parquet"):
        compute_drift(tmp_path / "missing.parquet", cur)
    window = profile_window(tmp_path / "cur", tmp_path / "ref.parquet")
    assert (
        compute_drift(tmp_path / "ref.parquet", window).to_dict()
        == compute_drift(ref, profile_window(cur, ref)).to_dict()
    )
