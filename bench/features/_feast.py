"""Feast's side of the benchmark; runs in ``.bench/feast-venv`` (no loopml there).

    python _feast.py hist file|duckdb DATA_DIR OUT.parquet WORK_DIR
    python _feast.py online DATA_DIR WORK_DIR OUT.json

``hist`` times ``get_historical_features(...).to_arrow()`` for the entity dataframe (read from
Parquet inside the timed span), then writes the result for the parent to compare.  ``online``
times ``materialize`` of the 30 days and, after the source grew by one day, ``materialize_incremental``
into the SQLite online store (offline store ``duckdb``, Feast's faster one), then the in-process
``get_online_features`` latency for 1 and 100 entities.  The repo (``feature_store.yaml``) is left in
WORK_DIR so that the parent can start ``feast serve`` on it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")

import pyarrow.parquet as pq
from _span import emit, percentiles_ms, span
from _spec import FEATURES, START_US, TTL_DAYS, lookup_batches, sample_ids
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

REFS = [f"stats:{f}" for f in FEATURES]


def make_store(work: Path, source: Path, offline: str) -> FeatureStore:
    """A fresh Feast repo in ``work`` (SQLite registry and online store) with the view applied."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "feature_store.yaml").write_text(
        "project: bench\nprovider: local\n"
        f"registry: {work / 'registry.db'}\n"
        f"online_store:\n  type: sqlite\n  path: {work / 'online.db'}\n"
        f"offline_store:\n  type: {offline}\n"
        "entity_key_serialization_version: 3\n"
    )
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="stats",
        entities=[entity],
        ttl=timedelta(days=TTL_DAYS),
        schema=[Field(name="entity_id", dtype=Int64), *(Field(name=f, dtype=Float64) for f in FEATURES)],
        source=FileSource(
            path=str(source), timestamp_field="event_timestamp", created_timestamp_column="created"
        ),
        online=True,
    )
    store = FeatureStore(repo_path=str(work))
    store.apply([entity, view])
    return store


def hist(offline: str, data: Path, out: Path, work: Path) -> None:
    store = make_store(work, data / "features.parquet", offline)
    result: dict[str, object] = {}
    with span(result, "hist"):
        entity_df = pq.read_table(data / "entities.parquet").to_pandas()
        table = store.get_historical_features(entity_df=entity_df, features=REFS).to_arrow()
        del entity_df
    result["rows"] = table.num_rows
    pq.write_table(table.select(["row_id", *FEATURES]), out)
    emit(result)


def _dt(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, tz=UTC)


def online(data: Path, work: Path, out: Path) -> None:
    source = work / "source.parquet"
    work.mkdir(parents=True, exist_ok=True)
    source.unlink(missing_ok=True)
    os.link(data / "features.parquet", source)
    store = make_store(work, source, "duckdb")
    result: dict[str, object] = {}
    day = timedelta(days=1)
    with span(result, "materialize"):
        store.materialize(_dt(START_US), _dt(START_US) + 30 * day)
    next_version = work / "source.next.parquet"
    next_version.unlink(missing_ok=True)
    os.link(data / "features_v2.parquet", next_version)
    os.replace(next_version, source)  # the source grew by one day
    with span(result, "incremental"):
        store.materialize_incremental(_dt(START_US) + 31 * day)
    ids = int(json.loads((data / "meta.json").read_text())["ids"])
    result["lookups"] = _lookups(store, ids)
    out.write_text(json.dumps(_sample(store, ids)))
    emit(result)


def _lookups(store: FeatureStore, ids: int) -> dict[str, object]:
    figures: dict[str, object] = {}
    for size, count, warmup in ((1, 2000, 200), (100, 300, 30)):
        batches = lookup_batches(ids, size, count + warmup)
        samples, cpu = [], 0.0
        for i, batch in enumerate(batches):
            rows = [{"entity_id": k} for k in batch]
            t0, c0 = time.perf_counter(), time.process_time()
            store.get_online_features(features=REFS, entity_rows=rows).to_dict()
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
                cpu += time.process_time() - c0
        figures[str(size)] = percentiles_ms(samples, cpu)
    return figures


def _sample(store: FeatureStore, ids: int) -> dict[str, list[object]]:
    keys = sample_ids(ids)
    got = store.get_online_features(features=REFS, entity_rows=[{"entity_id": k} for k in keys]).to_dict()
    return {"entity_id": keys, **{f: got[f] for f in FEATURES}}


if __name__ == "__main__":
    task = sys.argv[1]
    if task == "hist":
        hist(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
    else:
        online(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
