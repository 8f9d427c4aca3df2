"""Seeded data for the feature-store benchmark, written once per scale under ``.bench/features-data/``.

At scale 1: one entity with 100k ids, a feature view of 5 float64 features with 10M rows over 30
days (event and created timestamps, microsecond precision, UTC), ttl 2 days, and an entity
dataframe of 1M rows.  The data is shaped so that every semantic edge occurs many times:

- 10% of the ids are *sparse* (5 rows in 30 days), so ~7% of the entity rows have a known key but
  nothing inside the 2-day ttl window (Feast's ``file`` store drops such rows);
- 1% of the feature rows repeat another row's (id, event time) with another created time and
  other values, so the created-timestamp tie-break decides them;
- 1% of the entity rows have an id that has no feature row at all, 1% are exact duplicates of
  another entity row (Feast's ``file`` store collapses duplicates);
- ``features_v2.parquet`` is ``features.parquet`` plus one more day of rows, the batch that the
  incremental materialization picks up.

Every entity row has a unique ``row_id`` so results can be compared after sorting by it.
Only NumPy and pyarrow are used, so the parent process never loads a contender's library.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _spec import DAY_US, DAYS, FEATURES, SEED, START_US

VERSION = 1  # bump when the generator changes so cached files are rebuilt


def sizes(scale: float) -> dict[str, int]:
    """Ids, feature rows and entity rows at ``scale`` (1.0 = 100k / 10M / 1M)."""
    return {
        "ids": max(100, round(100_000 * scale)),
        "rows": max(10_000, round(10_000_000 * scale)),
        "entity_rows": max(1_000, round(1_000_000 * scale)),
    }


def _feature_table(rng: np.random.Generator, ids: int, rows: int, day0: int, days: int) -> pa.Table:
    """``rows`` feature rows of ``ids`` entities with event times in [day0, day0 + days) (days)."""
    sparse = ids // 10
    sparse_rows = 5 * sparse if day0 == 0 else 0  # the sparse ids get no rows in the extra day
    entity = np.concatenate(
        [np.repeat(np.arange(sparse), 5)[:sparse_rows], rng.integers(sparse, ids, rows - sparse_rows)]
    )
    event = START_US + day0 * DAY_US + rng.integers(0, days * DAY_US, rows)
    dup = rng.choice(rows, rows // 100, replace=False)
    src = rng.integers(0, rows, len(dup))
    entity[dup], event[dup] = entity[src], event[src]  # same (id, event time), other created time
    created = event + rng.integers(0, 3_600_000_000, rows)
    order = np.argsort(event, kind="stable")  # logs arrive in time order
    ts = pa.timestamp("us", tz="UTC")
    columns: dict[str, pa.Array] = {
        "entity_id": pa.array(entity[order]),
        "event_timestamp": pa.array(event[order], ts),
        "created": pa.array(created[order], ts),
    }
    for i, name in enumerate(FEATURES):
        columns[name] = pa.array(rng.normal(i, 1.0, rows)[order])
    return pa.table(columns)


def _entity_table(rng: np.random.Generator, ids: int, n: int) -> pa.Table:
    unknown, dups = n // 100, n // 100
    base = n - unknown - dups
    entity = np.concatenate([rng.integers(0, ids, base), ids + rng.integers(0, ids, unknown)])
    ts = START_US + DAY_US + rng.integers(0, (DAYS - 1) * DAY_US, base + unknown)
    copy = rng.integers(0, base + unknown, dups)  # exact duplicates of other entity rows
    entity, ts = np.concatenate([entity, entity[copy]]), np.concatenate([ts, ts[copy]])
    order = rng.permutation(n)
    return pa.table(
        {
            "row_id": pa.array(np.arange(n, dtype=np.int64)),
            "entity_id": pa.array(entity[order]),
            "event_timestamp": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
        }
    )


def ensure_data(root: Path, scale: float) -> Path:
    """Write the data for ``scale`` under ``root`` unless it is already there; return its folder."""
    folder = root / f"scale-{scale:g}"
    marker = folder / "meta.json"
    meta = {"version": VERSION, "seed": SEED, "scale": scale, **sizes(scale)}
    if marker.exists() and json.loads(marker.read_text()) == meta:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    n = sizes(scale)
    features = _feature_table(rng, n["ids"], n["rows"], 0, DAYS)
    pq.write_table(features, folder / "features.parquet")
    extra = _feature_table(rng, n["ids"], n["rows"] // DAYS, DAYS, 1)
    with pq.ParquetWriter(folder / "features_v2.parquet", features.schema) as writer:
        writer.write_table(features)
        writer.write_table(extra)
    del features, extra
    pq.write_table(_entity_table(rng, n["ids"], n["entity_rows"]), folder / "entities.parquet")
    marker.write_text(json.dumps(meta))
    return folder
