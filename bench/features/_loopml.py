"""loopml's side of the benchmark and the bare DuckDB floor; runs in the project's venv.

    python _loopml.py hist DATA_DIR OUT.parquet
    python _loopml.py floor DATA_DIR OUT.parquet
    python _loopml.py online DATA_DIR HOME OUT.json

``hist`` times reading the entity Parquet file and ``get_historical_features``; ``floor`` times
one hand-written DuckDB query (created-timestamp dedup, ASOF join, ttl check) from the same files
to an Arrow table.  ``online`` registers the definitions in a fresh ``LOOPML_HOME`` (so that
``loopml server`` started on it can serve them), times ``materialize`` of the 30 days and, after
the source grew by one day, ``materialize_incremental`` into ``HOME/online.db``, then the
in-process ``get_online_features`` latency for 1 and 100 entities.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from _span import emit, percentiles_ms, span
from _spec import DAY_US, FEATURES, START_US, TTL_DAYS, lookup_batches, sample_ids

from loopml.config import Settings
from loopml.features.definitions import Entity, FeatureView, Field, FileSource
from loopml.features.materialize import get_online_features, materialize, materialize_incremental
from loopml.features.offline import get_historical_features
from loopml.features.online import OnlineStore, open_online_store
from loopml.features.registry import FeatureRegistry

REFS = [f"stats:{f}" for f in FEATURES]
ENTITY = Entity("entity", join_keys="entity_id")


def stats_view(source: Path) -> FeatureView:
    """The benchmark's feature view, as a loopml definition."""
    return FeatureView(
        "stats",
        entities=[ENTITY],
        fields=[Field(f, "float64") for f in FEATURES],
        source=FileSource(source),
        timestamp_field="event_timestamp",
        created_timestamp_field="created",
        ttl=timedelta(days=TTL_DAYS),
    )


def hist(data: Path, out: Path) -> None:
    view = stats_view(data / "features.parquet")
    result: dict[str, object] = {}
    with span(result, "hist"):
        entities = pq.read_table(data / "entities.parquet")
        table = get_historical_features(entities, REFS, views=[view])
    result["rows"] = table.num_rows
    pq.write_table(table.select(["row_id", *FEATURES]), out)
    emit(result)


FLOOR_SQL = """
WITH f AS (
    SELECT entity_id, event_timestamp, {feats} FROM read_parquet('{features}')
    QUALIFY row_number() OVER (PARTITION BY entity_id, event_timestamp ORDER BY created DESC) = 1
)
SELECT e.row_id, {values}
FROM read_parquet('{entities}') e ASOF LEFT JOIN f
  ON e.entity_id = f.entity_id AND e.event_timestamp >= f.event_timestamp
"""


def floor(data: Path, out: Path) -> None:
    fresh = f"f.event_timestamp >= e.event_timestamp - INTERVAL {TTL_DAYS} DAY"
    sql = FLOOR_SQL.format(
        feats=", ".join(FEATURES),
        values=", ".join(f"CASE WHEN {fresh} THEN f.{f} END AS {f}" for f in FEATURES),
        features=data / "features.parquet",
        entities=data / "entities.parquet",
    )
    result: dict[str, object] = {}
    with span(result, "hist"):
        con = duckdb.connect()
        table = con.sql(sql).to_arrow_table()
    result["rows"] = table.num_rows
    pq.write_table(table, out)
    emit(result)


def online(data: Path, home: Path, out: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    source = home / "source.parquet"
    source.unlink(missing_ok=True)
    os.link(data / "features.parquet", source)
    view = stats_view(source)
    registry = FeatureRegistry.from_settings(Settings.load(env={"LOOPML_HOME": str(home)}))
    registry.apply([ENTITY, view])
    registry.close()
    store = open_online_store(home=home)
    result: dict[str, object] = {}
    with span(result, "materialize"):
        first = materialize(view, store, START_US, START_US + 30 * DAY_US)
    next_version = home / "source.next.parquet"
    next_version.unlink(missing_ok=True)
    os.link(data / "features_v2.parquet", next_version)
    os.replace(next_version, source)  # the source grew by one day
    with span(result, "incremental"):
        second = materialize_incremental(view, store, START_US + 31 * DAY_US)
    result["materialized_rows"] = [first.rows, second.rows]
    ids = int(json.loads((data / "meta.json").read_text())["ids"])
    now = START_US + 31 * DAY_US  # serving right after the last materialization
    result["lookups"] = _lookups(store, view, ids, now)
    out.write_text(json.dumps(_sample(store, view, ids, now)))
    store.close()
    emit(result)


def _lookups(store: OnlineStore, view: FeatureView, ids: int, now: int) -> dict[str, object]:
    figures: dict[str, object] = {}
    for size, count, warmup in ((1, 2000, 200), (100, 300, 30)):
        samples, cpu = [], 0.0
        for i, batch in enumerate(lookup_batches(ids, size, count + warmup)):
            rows = [{"entity_id": k} for k in batch]
            t0, c0 = time.perf_counter(), time.process_time()
            get_online_features(rows, REFS, views=[view], store=store, now=now)
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
                cpu += time.process_time() - c0
        figures[str(size)] = percentiles_ms(samples, cpu)
    return figures


def _sample(store: OnlineStore, view: FeatureView, ids: int, now: int) -> dict[str, list[object]]:
    keys = sample_ids(ids)
    got = get_online_features([{"entity_id": k} for k in keys], REFS, views=[view], store=store, now=now)
    return {"entity_id": keys, **got.values, "status": got.statuses["f0"]}


if __name__ == "__main__":
    task = sys.argv[1]
    if task == "hist":
        hist(Path(sys.argv[2]), Path(sys.argv[3]))
    elif task == "floor":
        floor(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        online(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
