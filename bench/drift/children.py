"""The three contenders, one per child process: ``python children.py KIND REF CUR`` prints JSON
{"cpu": compute CPU seconds, "drifted": [columns]}.  ``evidently`` runs in its own venv, so
this file imports only NumPy/pyarrow/pandas at the top."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pyarrow.parquet as pq


def run_loopml(ref_path: str, cur_path: str) -> list[str]:
    from loopml.monitoring.drift import compute_drift

    # Given the paths, compute_drift reads one column of each side at a time and lets it go before
    # the next: the peak holds one column pair, not both tables.  The reading is inside the timed
    # span here (the other contenders read their tables before the clock starts).
    start = time.process_time()
    result = compute_drift(ref_path, cur_path)
    return _done(start, result.drifted_columns)


def _floor_numeric(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """KS and Wasserstein as SciPy computes them, PSI on reference deciles: a plain NumPy pass."""
    a, b = np.sort(a), np.sort(b)
    both = np.concatenate([a, b])
    both.sort(kind="mergesort")
    ca = np.searchsorted(a, both, side="right") / len(a)
    cb = np.searchsorted(b, both, side="right") / len(b)
    ks = float(np.max(np.abs(ca - cb)))
    w = float(np.sum(np.abs(ca - cb)[:-1] * np.diff(both))) / float(np.std(a))
    edges = np.unique(np.quantile(a, np.linspace(0.1, 0.9, 9)))
    p = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / len(a)
    q = np.bincount(np.searchsorted(edges, b, side="right"), minlength=len(edges) + 1) / len(b)
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    return ks, w, float(np.sum((q - p) * np.log(q / p)))


def _floor_categorical(a: np.ndarray, b: np.ndarray) -> float:
    cats, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    p = np.bincount(codes[: len(a)], minlength=len(cats)) / len(a)
    q = np.bincount(codes[len(a) :], minlength=len(cats)) / len(b)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda x: np.sum(np.where(x > 0, x * np.log(x / m), 0.0))  # noqa: E731
        return float(np.sqrt((kl(p) + kl(q)) / 2))


def run_floor(ref_path: str, cur_path: str) -> list[str]:
    ref, cur = pq.read_table(ref_path), pq.read_table(cur_path)
    start = time.process_time()
    drifted = []
    for name in ref.column_names:
        a, b = ref.column(name).to_numpy(), cur.column(name).to_numpy()
        if a.dtype.kind == "f":
            drifted += [name] if _floor_numeric(a, b)[1] >= 0.1 else []
        elif _floor_categorical(a, b) >= 0.1:
            drifted.append(name)
    return _done(start, drifted)


def run_evidently(ref_path: str, cur_path: str) -> list[str]:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    start = time.process_time()
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    result = snapshot.dict()
    drifted = []
    for m in result["metrics"]:
        config = m.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            method, threshold = config.get("method", ""), config.get("threshold")
            value = m["value"]
            is_p = "p_value" in method or "test" in method
            if threshold is not None and ((value < threshold) if is_p else (value >= threshold)):
                drifted.append(config["column"])
    return _done(start, drifted)


def _done(start: float, drifted: list[str]) -> list[str]:
    print(json.dumps({"cpu": time.process_time() - start, "drifted": sorted(drifted)}))
    return drifted


if __name__ == "__main__":
    kind, ref_path, cur_path = sys.argv[1:4]
    {"loopml": run_loopml, "floor": run_floor, "evidently": run_evidently}[kind](ref_path, cur_path)
