"""Ground truth that arrives late: labels attached to the prediction log by request id.

A label is logged whenever it becomes known (hours or days after the prediction, in any
order, possibly twice) with :func:`log_labels`. Labels are kept like the prediction log
itself, as Parquet segments under ``LOOPML_HOME/labels/``::

    <root>/part-<ts>-<uuid>.parquet     columns: request_id, endpoint, label (JSON), logged_at

Why segments rather than a table keyed by request id: the join that matters (predictions x
labels over a window of millions of rows) then runs inside DuckDB over two sets of Parquet
files, with nothing copied out of the metadata database; appends are one file per call, so
a labelling job sending 100k labels is one write. Idempotence and corrections come from the
read side: for each request id the label logged last wins (:data:`LATEST`), so logging the
same label twice changes nothing and logging a corrected one replaces it.

A label is one JSON value per request: a scalar for a one-row request, or a list with one
value per row for a batch request.

>>> log_labels(["r1", "r2"], [1, 0], root=home / "labels")   # doctest: +SKIP
2
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from loopml.config import Settings
from loopml.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

VIEW = "labels"
# The latest label per request id: what every join reads (idempotent, corrections win).
LATEST = (
    "SELECT request_id, endpoint, label, logged_at FROM _label_segments "
    "QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY logged_at DESC, seq DESC) = 1"
)
_MAX_ID = 256


def default_root(settings: Settings | None = None) -> Path:
    """Where labels are kept: ``LOOPML_HOME/labels``.

    >>> default_root(Settings.load(env={"LOOPML_HOME": "/srv/loopml"}))
    PosixPath('/srv/loopml/labels')
    """
    return (settings or Settings.load()).home / "labels"


def schema() -> pa.Schema:
    """The Arrow schema of a label segment."""
    import pyarrow as pa

    return pa.schema(
        [
            ("request_id", pa.string()),
            ("endpoint", pa.string()),
            ("label", pa.string()),
            ("logged_at", pa.int64()),
            ("seq", pa.int64()),
        ]
    )


def write_labels(
    root: Path, request_ids: Sequence[str], labels: Sequence[Any], *, endpoint: str | None = None
) -> int:
    """Append one segment with these labels under ``root``; returns how many were written.

    >>> write_labels(tmp / "labels", ["r1"], [1])   # doctest: +SKIP
    1
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, encoded = _check(request_ids, labels, endpoint)
    if not ids:
        return 0
    now = time.time_ns()
    table = pa.table(
        {
            "request_id": ids,
            "endpoint": [endpoint] * len(ids),
            "label": encoded,
            "logged_at": [now // 1_000_000] * len(ids),
            # Within one call the last occurrence of an id wins, and across calls the later
            # call: nanoseconds since the epoch plus the position orders both.
            "seq": [now + i for i in range(len(ids))],
        },
        schema=schema(),
    )
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"part-{now}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = root / f".{name}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, root / name)  # readers never see half a segment
    finally:
        tmp.unlink(missing_ok=True)
    return len(ids)


def _check(
    request_ids: Sequence[str], labels: Sequence[Any], endpoint: str | None
) -> tuple[list[str], list[str]]:
    if isinstance(request_ids, str) or isinstance(labels, str | bytes):
        raise InvalidInput(
            "log_labels takes sequences: log_labels(['r1', 'r2'], [1, 0]), not single values",
            details={"field": "request_ids" if isinstance(request_ids, str) else "labels"},
        )
    ids, values = list(request_ids), list(labels)
    if len(ids) != len(values):
        raise InvalidInput(
            f"log_labels got {len(ids)} request ids and {len(values)} labels; pass one label per id",
            details={"field": "labels"},
        )
    for rid in ids:
        if not isinstance(rid, str) or not rid or len(rid) > _MAX_ID:
            raise InvalidInput(
                f"request id {rid!r} is not a non-empty string of at most {_MAX_ID} characters; "
                "use the x-request-id the prediction answered with",
                details={"field": "request_ids"},
            )
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint):
        raise InvalidInput("endpoint must be a non-empty string or None", details={"field": "endpoint"})
    try:
        encoded = [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode() for v in values]
    except TypeError as exc:
        raise InvalidInput(
            f"a label is not JSON-serialisable ({exc}); labels are numbers, strings, booleans "
            "or lists of them",
            details={"field": "labels"},
        ) from None
    return ids, encoded


def register_view(con: Any, root: Path) -> None:
    """Create the DuckDB view ``labels`` (latest label per request id) on connection ``con``."""
    root = Path(root)
    if any(root.glob("part-*.parquet")):
        pattern = str(root / "part-*.parquet").replace("'", "''")
        con.execute(f"CREATE VIEW _label_segments AS SELECT * FROM read_parquet('{pattern}')")
    else:  # no label yet: an empty view with the same columns, so joins still run
        con.register("_label_segments", schema().empty_table())
    con.execute(f"CREATE VIEW {VIEW} AS {LATEST}")


def read_labels(root: Path, request_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """The latest label of each request id (all of them, or those in ``request_ids``).

    >>> read_labels(tmp / "labels", ["r1"])   # doctest: +SKIP
    {'r1': 1}
    """
    import duckdb

    con = duckdb.connect()
    try:
        register_view(con, root)
        rows = con.execute(f"SELECT request_id, label FROM {VIEW}").fetchall()
    finally:
        con.close()
    wanted = None if request_ids is None else set(request_ids)
    return {rid: orjson.loads(lab) for rid, lab in rows if wanted is None or rid in wanted}
