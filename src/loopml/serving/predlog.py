"""The prediction log: every prediction appended off the request path, kept as Parquet.

Request handlers call :meth:`PredictionLog.append`, which only puts the record in a
bounded in-memory queue and never blocks: when the queue is full the record is
dropped and counted (``dropped``), so a slow disk can never slow down inference.
A background thread writes the queue every ``flush_rows`` records or
``flush_interval_s`` seconds, one Parquet segment per endpoint and day::

    <root>/<endpoint>/date=YYYY-MM-DD/part-<ts>-<seq>-<pid>.parquet

Each segment is written under a temporary name and renamed, so a reader (or a
crash) never sees half a file. The segments are queried with DuckDB through a view
named ``predictions``:

>>> log = PredictionLog(home / "predictions", flush_rows=1000, flush_interval_s=1.0)  # doctest: +SKIP
>>> log.append({"request_id": "r1", "endpoint": "churn", "model_name": "churn",
...             "model_version": "3", "variant": "primary", "ts": 1700000000000,
...             "inputs": {"tenure": [3]}, "outputs": [0.2], "latency_ms": 1.4,
...             "status": "ok"})                                        # doctest: +SKIP
True
>>> log.query("SELECT endpoint, count(*) AS n FROM predictions GROUP BY 1")   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from loopml.config import Settings
from loopml.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

# The record fields, in the column order of every segment (monitoring joins labels on request_id).
FIELDS: tuple[str, ...] = (
    "request_id",
    "endpoint",
    "model_name",
    "model_version",
    "variant",
    "ts",
    "inputs",
    "outputs",
    "latency_ms",
    "status",
)
_JSON_FIELDS = frozenset({"inputs", "outputs"})
VIEW = "predictions"


def default_root(settings: Settings | None = None) -> Path:
    """Where the server keeps its prediction log: ``LOOPML_HOME/predictions``.

    >>> default_root(Settings.load(env={"LOOPML_HOME": "/srv/loopml"}))
    PosixPath('/srv/loopml/predictions')
    """
    return (settings or Settings.load()).home / "predictions"


@dataclass(frozen=True, slots=True)
class LogStats:
    """Counters for ``/metrics``: records queued now, appended, written, dropped, failed."""

    queued: int
    appended: int
    written: int
    dropped: int
    failed: int
    segments: int


class PredictionLog:
    """A bounded queue of prediction records flushed in the background to Parquet segments.

    ``append`` is safe from any thread and from the event loop; ``flush`` and ``close``
    write synchronously (``close`` writes everything still queued).

    >>> plog = PredictionLog(tmp / "predictions", max_queue=10_000)   # doctest: +SKIP
    >>> plog.append(record)                                            # doctest: +SKIP
    True
    >>> plog.close()                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        root: Path,
        *,
        max_queue: int = 10_000,
        flush_rows: int = 2_000,
        flush_interval_s: float = 5.0,
    ) -> None:
        if max_queue < 1 or flush_rows < 1 or flush_interval_s <= 0:
            raise InvalidInput(
                "prediction log needs max_queue >= 1, flush_rows >= 1 and flush_interval_s > 0; "
                f"got {max_queue}, {flush_rows}, {flush_interval_s}",
                details={"field": "max_queue" if max_queue < 1 else "flush_rows"},
            )
        self.root = Path(root)
        self.max_queue = max_queue
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._queue: deque[Mapping[str, Any]] = deque()
        self._queue_lock = threading.Lock()  # held for O(1) work only: append or swap
        self._write_lock = threading.Lock()  # one writer at a time (background thread or flush())
        self._wake = threading.Event()
        self._closed = False
        self._appended = self._written = self._dropped = self._failed = self._segments = 0
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="loopml-predlog", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Records refused because the queue was full (or the log closed)."""
        return self._dropped

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def stats(self) -> LogStats:
        return LogStats(
            len(self._queue), self._appended, self._written, self._dropped, self._failed, self._segments
        )

    def append(self, record: Mapping[str, Any]) -> bool:
        """Queue one record; ``False`` (and ``dropped`` + 1) when the queue is full. Never blocks.

        ``inputs`` and ``outputs`` may be JSON text or any JSON-able value (NumPy arrays
        included): they are encoded by the writer thread, not by the request.
        """
        with self._queue_lock:
            if self._closed or len(self._queue) >= self.max_queue:
                self._dropped += 1
                return False
            self._queue.append(record)
            self._appended += 1
            full = len(self._queue) >= self.flush_rows
        if full:
            self._wake.set()
        return True

    def flush(self) -> int:
        """Write every queued record now; returns how many were written."""
        with self._write_lock:
            with self._queue_lock:
                batch, self._queue = self._queue, deque()
            return self._write(batch)

    def close(self) -> None:
        """Stop the writer thread and write what is still queued (appends are refused after)."""
        with self._queue_lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, *, flush: bool = True) -> pd.DataFrame:
        """Run ``sql`` with DuckDB over the segments, seen as the view ``predictions``.

        Queued records are written first unless ``flush=False``.

        >>> plog.query("SELECT variant, avg(latency_ms) FROM predictions GROUP BY 1")  # doctest: +SKIP
        """
        if flush:
            self.flush()
        return query(self.root, sql)

    def compact(self, *, before: str | None = None) -> int:
        """Merge each finished day's segments into one file (see :func:`compact`)."""
        with self._write_lock:
            return compact(self.root, before=before)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._closed:
                return  # close() writes the rest from its own thread
            try:
                self.flush()
            except Exception:  # the writer must outlive any one bad batch; _write counted it
                log.exception("prediction log: flush failed")

    def _write(self, batch: deque[Mapping[str, Any]]) -> int:
        if not batch:
            return 0
        written = 0
        for (endpoint, day), records in _partition(batch).items():
            try:
                self._write_segment(endpoint, day, records)
                written += len(records)
            except Exception:
                self._failed += len(records)
                log.exception(
                    "prediction log: %d record(s) of endpoint %r could not be written under %s",
                    len(records),
                    endpoint,
                    self.root,
                )
        self._written += written
        return written

    def _write_segment(self, endpoint: str, day: str, records: list[Mapping[str, Any]]) -> None:
        import pyarrow.parquet as pq

        folder = self.root / _safe_dir(endpoint) / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"part-{int(time.time() * 1000)}-{self._seq:06d}-{os.getpid()}.parquet"
        tmp = folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            pq.write_table(to_table(records), tmp, compression="zstd")
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        self._segments += 1


def _partition(batch: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in batch:
        key = (str(record.get("endpoint") or "_"), _day(record.get("ts")))
        groups.setdefault(key, []).append(record)
    return groups


def _day(ts: Any) -> str:
    try:
        seconds = int(ts) / 1000
    except (TypeError, ValueError):
        seconds = time.time()
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


def _safe_dir(endpoint: str) -> str:
    # Endpoint names become one directory level: no separators, no '..', nothing hidden.
    name = quote(endpoint, safe="-_.@")
    return "_" + name if name.startswith(".") else name


def schema() -> pa.Schema:
    """The Arrow schema of every segment."""
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("endpoint", pa.string()),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("variant", pa.string()),
            ("ts", pa.int64()),
            ("inputs", pa.string()),
            ("outputs", pa.string()),
            ("latency_ms", pa.float64()),
            ("status", pa.string()),
        ]
    )


def to_table(records: list[Mapping[str, Any]]) -> pa.Table:
    """Records as an Arrow table of :func:`schema` (JSON fields encoded, numbers coerced)."""
    import pyarrow as pa

    columns: dict[str, list[Any]] = {name: [] for name in FIELDS}
    for record in records:
        for name in FIELDS:
            columns[name].append(_cell(name, record.get(name)))
    return pa.table(columns, schema=schema())


def _cell(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _JSON_FIELDS:
        if isinstance(value, str):
            return value
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_jsonable).decode()
    if name == "ts":
        return int(value)
    if name == "latency_ms":
        return float(value)
    return str(value)


def _jsonable(value: Any) -> Any:
    # What orjson does not take natively: pandas frames (as {column: values}), Series,
    # arrays of objects, timestamps. Anything else is logged as its text rather than lost.
    if hasattr(value, "columns") and hasattr(value, "to_dict"):
        return value.to_dict(orient="list")
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def compact(root: Path, *, before: str | None = None) -> int:
    """Merge the segments of each ``<endpoint>/date=D`` folder with D < ``before`` (default:
    today, UTC) into one file, so a long-running server's many small flushes stay cheap to
    query. Returns how many segments were merged away.

    The merged file is renamed into place before its sources are removed: a crash in
    between leaves duplicates in that folder, never a loss. Run it while nobody queries.

    >>> compact(default_root())   # doctest: +SKIP
    2875
    """
    import pyarrow.parquet as pq

    before = before or datetime.now(UTC).strftime("%Y-%m-%d")
    merged = 0
    for folder in sorted(Path(root).glob("*/date=*")):
        segments = sorted(folder.glob("part-*.parquet"))
        if folder.name.removeprefix("date=") >= before or len(segments) < 2:
            continue
        name = f"part-{int(time.time() * 1000)}-000000-{os.getpid()}-compact.parquet"
        tmp = folder / f".{name}.tmp"
        with pq.ParquetWriter(tmp, schema(), compression="zstd") as writer:
            for segment in segments:  # one segment in memory at a time
                writer.write_table(pq.read_table(segment).select(list(FIELDS)).cast(schema()))
        os.replace(tmp, folder / name)
        for segment in segments:
            segment.unlink()
        merged += len(segments)
    return merged


def query(root: Path, sql: str) -> pd.DataFrame:
    """Run ``sql`` over the prediction segments under ``root`` (view ``predictions``).

    Works from any process (a notebook, the monitoring job), not only the server's.

    >>> query(default_root(), "SELECT count(*) FROM predictions WHERE endpoint = 'churn'")  # doctest: +SKIP
    """
    import duckdb

    con = duckdb.connect()
    try:
        if any(Path(root).glob("*/date=*/*.parquet")):
            pattern = str(Path(root) / "*" / "date=*" / "*.parquet").replace("'", "''")
            con.execute(
                f"CREATE VIEW {VIEW} AS SELECT * FROM read_parquet('{pattern}', "
                "hive_partitioning = true, union_by_name = true)"
            )
        else:  # no segment yet: an empty view with the same columns, so queries still run
            empty = schema().empty_table()
            con.register("_empty_predictions", empty)
            con.execute(f"CREATE VIEW {VIEW} AS SELECT *, CAST(NULL AS DATE) AS date FROM _empty_predictions")
        result: pd.DataFrame = con.execute(sql).df()
        return result
    except duckdb.Error as exc:
        raise InvalidInput(
            f"prediction log query failed: {exc}; query the view {VIEW!r} "
            f"(columns {', '.join(FIELDS)}, date)",
            details={"field": "sql"},
        ) from None
    finally:
        con.close()
