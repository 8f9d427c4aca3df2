"""The prediction log: records reach Parquet off the request path and come back through DuckDB."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from loopml.errors import InvalidInput
from loopml.serving.predlog import FIELDS, PredictionLog, query

DAY_MS = 1_700_000_000_000  # 2023-11-14 UTC


def _record(i: int, endpoint: str = "churn", **extra: Any) -> dict[str, Any]:
    return {
        "request_id": f"req-{i}",
        "endpoint": endpoint,
        "model_name": "churn",
        "model_version": "3",
        "variant": "primary",
        "ts": DAY_MS + i,
        "inputs": {"tenure": [i], "plan": ["pro"]},
        "outputs": np.array([i * 0.5]),
        "latency_ms": 1.25,
        "status": "ok",
        **extra,
    }


def _quiet(root: Path, **kw: Any) -> PredictionLog:
    """A log whose background thread never flushes by itself during a test."""
    return PredictionLog(root, flush_rows=kw.pop("flush_rows", 1_000_000), flush_interval_s=3600, **kw)


def test_records_round_trip_through_duckdb(tmp_path: Path) -> None:
    plog = _quiet(tmp_path / "predictions")
    for i in range(5):
        assert plog.append(_record(i))
    assert plog.append(_record(9, endpoint="fraud", variant="canary", status="error"))
    got = plog.query("SELECT * FROM predictions ORDER BY request_id")
    plog.close()

    assert list(got["request_id"]) == ["req-0", "req-1", "req-2", "req-3", "req-4", "req-9"]
    assert set(FIELDS) <= set(got.columns)
    first = got.iloc[0]
    assert (first["endpoint"], first["model_version"], first["ts"]) == ("churn", "3", DAY_MS)
    assert orjson.loads(first["inputs"]) == {"tenure": [0], "plan": ["pro"]}
    assert orjson.loads(got.iloc[4]["outputs"]) == [2.0]
    assert got.iloc[5][["endpoint", "variant", "status"]].tolist() == ["fraud", "canary", "error"]
    assert str(first["date"])[:10] == "2023-11-14"


def test_segments_are_parquet_files_per_endpoint_and_day(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    with _quiet(root) as plog:
        plog.append(_record(1))
        plog.append(_record(2, endpoint="fraud", ts=DAY_MS + 86_400_000))
    files = sorted(p.relative_to(root).parts[:2] for p in root.rglob("*.parquet"))
    assert files == [("churn", "date=2023-11-14"), ("fraud", "date=2023-11-15")]
    assert not list(root.rglob("*.tmp")), "temporary segment names must be renamed away"
    table = pq.read_table(next(root.glob("churn/*/*.parquet")))
    assert table.column_names == list(FIELDS)


def test_close_flushes_what_is_queued(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    plog = _quiet(root)
    for i in range(250):
        plog.append(_record(i))
    assert plog.queue_depth == 250
    plog.close()
    assert query(root, "SELECT count(*) AS n FROM predictions")["n"][0] == 250
    assert plog.stats().written == 250


def test_background_thread_flushes_every_flush_rows(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    plog = PredictionLog(root, flush_rows=10, flush_interval_s=3600)
    for i in range(10):
        plog.append(_record(i))
    # flush_rows reached: the writer wakes without waiting for the hour-long interval
    for _ in range(2000):
        if plog.stats().written == 10:
            break
        threading.Event().wait(0.005)
    assert plog.stats().written == 10
    assert plog.stats().segments == 1
    plog.close()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    plog = _quiet(tmp_path / "predictions", max_queue=100)
    accepted = [plog.append(_record(i)) for i in range(130)]
    assert accepted == [True] * 100 + [False] * 30
    assert plog.dropped == 30
    assert plog.queue_depth == 100
    plog.close()
    assert plog.stats().written == 100
    assert not plog.append(_record(1)), "a closed log refuses records"
    assert plog.dropped == 31


def test_concurrent_appenders_lose_nothing_that_was_accepted(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    plog = PredictionLog(root, max_queue=5_000, flush_rows=200, flush_interval_s=0.01)
    accepted: list[int] = []
    lock = threading.Lock()

    def writer(t: int) -> None:
        ok = sum(plog.append(_record(t * 10_000 + i, endpoint=f"ep{t % 2}")) for i in range(1_000))
        with lock:
            accepted.append(ok)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    plog.close()
    stats = plog.stats()
    assert sum(accepted) + plog.dropped == 8_000
    got = query(root, "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM predictions")
    assert got["n"][0] == got["d"][0] == sum(accepted) == stats.written


def test_querying_an_empty_log_returns_no_rows(tmp_path: Path) -> None:
    got = query(tmp_path / "nothing-yet", "SELECT request_id, latency_ms FROM predictions")
    assert got.empty
    assert list(got.columns) == ["request_id", "latency_ms"]


def test_a_bad_query_names_the_view(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="predictions"):
        query(tmp_path, "SELECT no_such_column FROM predictions")


def test_endpoint_names_cannot_escape_the_root(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    with _quiet(root) as plog:
        plog.append(_record(1, endpoint="../../etc"))
        plog.append(_record(2, endpoint=".."))
    for path in tmp_path.rglob("*.parquet"):
        assert root in path.parents
        assert path.parent.parent.parent == root
    got = query(root, "SELECT endpoint FROM predictions ORDER BY endpoint")
    assert list(got["endpoint"]) == ["..", "../../etc"]


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="max_queue"):
        PredictionLog(tmp_path, max_queue=0)


def test_dataframe_and_array_payloads_are_stored_as_json(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"tenure": [1, 2], "since": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    with _quiet(tmp_path) as plog:
        plog.append(_record(1, inputs=frame, outputs=np.array([[0.1, 0.9], [0.8, 0.2]], dtype="float32")))
    row = query(tmp_path, "SELECT inputs, outputs FROM predictions").iloc[0]
    assert orjson.loads(row["inputs"]) == {
        "tenure": [1, 2],
        "since": ["2024-01-01T00:00:00", "2024-02-01T00:00:00"],
    }
    assert np.allclose(orjson.loads(row["outputs"]), [[0.1, 0.9], [0.8, 0.2]])


def test_compaction_merges_past_days_and_keeps_every_record(tmp_path: Path) -> None:
    plog = _quiet(tmp_path)
    for i in range(6):  # six flushes: six segments of the same day
        plog.append(_record(i))
        plog.flush()
    plog.append(_record(7, ts=DAY_MS + 86_400_000))
    plog.flush()
    assert plog.compact(before="2023-11-15") == 6
    plog.close()
    assert len(list(tmp_path.glob("churn/date=2023-11-14/*.parquet"))) == 1
    assert len(list(tmp_path.glob("churn/date=2023-11-15/*.parquet"))) == 1, "later days are left alone"
    got = query(tmp_path, "SELECT request_id FROM predictions ORDER BY ts")
    assert list(got["request_id"]) == [f"req-{i}" for i in (0, 1, 2, 3, 4, 5, 7)]
