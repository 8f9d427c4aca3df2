"""Compare the contenders' results; run as a child so the parent never holds them.

    python _compare.py OUT_DIR DATA_DIR   -> JSON on the last stdout line

Historical results (``OUT_DIR/<name>.parquet``: ``row_id`` and the features) are compared with
loopml's after sorting by ``row_id``: row count, matched count (rows with a value) and every value
(floats exactly, nulls equal).  Feast's ``file`` result is compared on the rows it kept, and the
rows it dropped are counted.  Online samples (``online_*.json``) are compared where loopml reports
a present value; loopml's ``outside_ttl`` values (which Feast returns anyway) are counted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _spec import FEATURES


def _load(path: Path) -> pa.Table | None:
    return pq.read_table(path).sort_by("row_id") if path.exists() else None


def _same_values(a: pa.Table, b: pa.Table) -> int:
    """How many rows differ in any feature (a and b aligned row by row)."""
    differ = np.zeros(a.num_rows, dtype=bool)
    for name in FEATURES:
        x = a.column(name).to_numpy(zero_copy_only=False).astype(float)
        y = b.column(name).to_numpy(zero_copy_only=False).astype(float)
        differ |= ~((x == y) | (np.isnan(x) & np.isnan(y)))
    return int(differ.sum())


def historical(out: Path, entity_rows: int) -> dict[str, object]:
    ours = _load(out / "loopml.parquet")
    if ours is None:
        return {}
    report: dict[str, object] = {"entity_rows": entity_rows, "loopml_rows": ours.num_rows}
    report["loopml_matched"] = ours.num_rows - ours.column("f0").null_count
    for name in ("floor", "feast_duckdb", "feast_file"):
        theirs = _load(out / f"{name}.parquet")
        if theirs is None:
            continue
        row = {"rows": theirs.num_rows, "matched": theirs.num_rows - theirs.column("f0").null_count}
        if theirs.num_rows == ours.num_rows:
            row["same_row_ids"] = ours.column("row_id").equals(theirs.column("row_id"))
            row["rows_differing"] = _same_values(ours, theirs)
        else:
            kept = ours.filter(pc.is_in(ours.column("row_id"), theirs.column("row_id")))
            row["dropped"] = entity_rows - theirs.num_rows
            row["duplicate_row_ids"] = theirs.num_rows - len(pc.unique(theirs.column("row_id")))
            if kept.num_rows == theirs.num_rows:
                row["rows_differing_among_kept"] = _same_values(kept, theirs)
        same_counts = row["rows"] == ours.num_rows and row["matched"] == report["loopml_matched"]
        row["equal"] = bool(same_counts and row.get("same_row_ids") and row.get("rows_differing") == 0)
        report[name] = row
    return report


TIES_SQL = """
WITH diff AS (
    SELECT o.row_id, o.f0 AS ours, t.f0 AS theirs FROM read_parquet('{ours}') o
    JOIN read_parquet('{theirs}') t USING (row_id) WHERE o.f0 IS DISTINCT FROM t.f0
), src AS (SELECT entity_id, event_timestamp, created, f0 FROM read_parquet('{features}'))
SELECT count(*) AS differing,
       count(*) FILTER (a.event_timestamp = b.event_timestamp AND b.created < a.created) AS older_created
FROM diff LEFT JOIN src a ON a.f0 = diff.ours LEFT JOIN src b ON b.f0 = diff.theirs
"""


def created_ties(out: Path, data: Path, theirs: str) -> dict[str, int]:
    """Of the rows where ``theirs`` differs from loopml, how many are an event-time tie that they
    resolved to the row created earlier (the feature values are continuous: one row per value)."""
    paths = {"ours": out / "loopml.parquet", "theirs": out / f"{theirs}.parquet"}
    if not all(p.exists() for p in paths.values()):
        return {}
    con = duckdb.connect()
    sql = TIES_SQL.format(features=data / "features.parquet", **paths)
    differing, older = con.execute(sql).fetchone() or (0, 0)
    return {"differing": int(differing), "tie_resolved_to_older_created": int(older)}


def online(out: Path) -> dict[str, object]:
    paths = out / "online_loopml.json", out / "online_feast.json"
    if not all(p.exists() for p in paths):
        return {}
    ours, theirs = (json.loads(p.read_text()) for p in paths)
    statuses = ours["status"]
    present = [i for i, s in enumerate(statuses) if s == "present"]
    differ = sum(any(ours[f][i] != theirs[f][i] for f in FEATURES) for i in present)
    missing_ok = all(theirs["f0"][i] is None for i, s in enumerate(statuses) if s == "missing")
    stale = [i for i, s in enumerate(statuses) if s == "outside_ttl"]
    return {
        "entities": len(statuses),
        "present": len(present),
        "present_differing": differ,
        "missing": statuses.count("missing"),
        "missing_also_missing_in_feast": missing_ok,
        "outside_ttl": len(stale),
        "outside_ttl_returned_by_feast": sum(theirs["f0"][i] is not None for i in stale),
        "equal": differ == 0 and missing_ok and ours["entity_id"] == theirs["entity_id"],
    }


if __name__ == "__main__":
    folder, data = Path(sys.argv[1]), Path(sys.argv[2])
    rows = int(json.loads((data / "meta.json").read_text())["entity_rows"])
    found = {"historical": historical(folder, rows), "online": online(folder)}
    found["feast_file_differences"] = created_ties(folder, data, "feast_file")
    print(json.dumps(found))
