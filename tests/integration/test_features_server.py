"""The feature store as a service: one behavioural suite in process and against a live server.

Definitions are applied to the server's metadata database and rebuilt by name (the server has no
definitions file); the on-demand transform is this module's ``adjust``, imported by the server.
Also: offline retrieval and the online lookup through the server agree after materialization.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loopml.client.http_features import HttpFeatureStoreService
from loopml.config import Settings
from loopml.errors import InvalidInput, NotFound
from loopml.features.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    RequestSource,
)
from loopml.features.offline import get_historical_features
from loopml.features.registry import FeatureRegistry
from loopml.features.service import FeatureStoreService, LocalFeatureStoreService
from loopml.store.db import Database
from tests.support.live_server import free_port, live_server, loopml_process
from tests.support.serving import serve_process

pytestmark = pytest.mark.timeout(300)

T0 = pd.Timestamp("2024-03-01", tz="UTC")
NOW = T0 + pd.Timedelta(days=6)
DRIVERS = 30


def adjust(df: pd.DataFrame) -> pd.DataFrame:
    """The on-demand transform (importable by the server as this module's ``adjust``)."""
    return pd.DataFrame({"rate_x": df["rate"] * df["factor"]})


def generated(seed: int = 3, rows: int = 400, t0: pd.Timestamp = T0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 6 * 24 * 60, rows)
    event = t0 + pd.to_timedelta(minutes, unit="min")
    frame = pd.DataFrame(
        {
            "driver_id": rng.integers(0, DRIVERS, rows),
            "event_timestamp": event.tz_convert("Europe/Berlin"),  # any zone, nanoseconds
            "rate": rng.random(rows),
            "trips": rng.integers(0, 1000, rows),
            "city": rng.choice(["berlin", "paris", "rome"], rows),
            "blob": [bytes([i % 256, 0]) for i in range(rows)],
            "seen": event,
        }
    )
    # Driver 0 only has an old row (outside the 2-day ttl at NOW).
    frame.loc[frame["driver_id"] == 0, "event_timestamp"] = (t0 + pd.Timedelta(hours=1)).tz_convert("UTC")
    return frame


def definitions(source: Path) -> list[object]:
    driver = Entity("driver", join_keys="driver_id")
    stats = FeatureView(
        "stats",
        entities=[driver],
        fields=[
            Field("rate", "float64"),
            Field("trips", "int64"),
            Field("city", "string"),
            Field("blob", "bytes"),
            Field("seen", "timestamp"),
        ],
        source=FileSource(source),
        ttl=timedelta(days=2),
    )
    req = RequestSource("req", [Field("factor", "float64")])
    adjusted = OnDemandFeatureView(
        "adjusted", sources=[stats, req], schema=[Field("rate_x", "float64")], udf=adjust
    )
    churn = FeatureService("churn", features=["stats:rate", "stats:trips", adjusted])
    return [driver, stats, adjusted, churn]


def _prepare(home: Path, source: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings.load(env={"LOOPML_HOME": str(home)})
    registry = FeatureRegistry(Database(settings.database_url), "alice")
    try:
        registry.apply(definitions(source))
    finally:
        registry.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("features") / "stats.parquet"
    generated().to_parquet(path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Iterator[str]:
    home = tmp_path_factory.mktemp("fserver") / "home"
    _prepare(home, source)
    with live_server(home) as url:
        yield url


@pytest.fixture(params=["local", "http"])
def fs(request: pytest.FixtureRequest, tmp_path: Path, source: Path) -> Iterator[FeatureStoreService]:
    svc: FeatureStoreService
    if request.param == "http":
        svc = HttpFeatureStoreService(request.getfixturevalue("server"), retries=2)
    else:
        _prepare(tmp_path / "home", source)
        svc = LocalFeatureStoreService.from_settings(
            Settings.load(env={"LOOPML_HOME": str(tmp_path / "home")})
        )
    svc.materialize(NOW, views=["stats"])
    yield svc
    svc.close()


def _offline(entity_ids: list[int], at: pd.Timestamp, source: Path, factors: list[float]) -> pd.DataFrame:
    defs = definitions(source)
    churn = next(d for d in defs if isinstance(d, FeatureService))
    stats = next(d for d in defs if isinstance(d, FeatureView))
    entity_df = pd.DataFrame(
        {"driver_id": entity_ids, "event_timestamp": [at] * len(entity_ids), "factor": factors}
    )
    return get_historical_features(entity_df, service=churn, views=[stats]).to_pandas()


def test_online_by_service_with_statuses_and_on_demand(fs: FeatureStoreService, source: Path) -> None:
    rows = [
        {"driver_id": 5, "factor": 2.0},
        {"driver_id": 0, "factor": 1.0},
        {"driver_id": 999, "factor": 3.0},
    ]
    got = fs.get_online_features(rows, service="churn", now=NOW)
    offline = _offline([5, 0, 999], NOW, source, [2.0, 1.0, 3.0])
    assert got.values["driver_id"] == [5, 0, 999]
    assert got.values["rate"][0] == offline["rate"][0] and got.values["trips"][0] == offline["trips"][0]
    assert got.values["rate_x"][0] == pytest.approx(2.0 * got.values["rate"][0], rel=0, abs=0)
    assert got.statuses["rate"] == ["present", "outside_ttl", "missing"]
    assert got.statuses["rate_x"] == ["present", "missing", "missing"]
    assert got.values["rate"][1:] == [None, None] and got.values["trips"][1:] == [None, None]
    assert getattr(got, "types", None) == {"rate": "float64", "trips": "int64", "rate_x": "float64"}


def test_online_by_feature_refs_columnar_and_full_names(fs: FeatureStoreService) -> None:
    got = fs.get_online_features(
        {"driver_id": [7, 8]}, ["stats:city", "stats:trips"], full_feature_names=True, now=NOW
    )
    assert list(got.values) == ["driver_id", "stats__city", "stats__trips"]
    assert all(isinstance(v, str) for v in got.values["stats__city"])
    assert got.statuses["stats__trips"] == ["present", "present"]


def test_unknown_names_are_404_naming_the_known_ones(fs: FeatureStoreService) -> None:
    with pytest.raises(NotFound, match="known: churn") as service:
        fs.get_online_features([{"driver_id": 1}], service="churnn", now=NOW)
    assert service.value.details["known"] == ["churn"]
    with pytest.raises(NotFound, match="known: adjusted, stats"):
        fs.get_online_features([{"driver_id": 1}], ["statz:rate"], now=NOW)
    with pytest.raises(NotFound, match="known: rate, trips, city, blob, seen"):
        fs.get_online_features([{"driver_id": 1}], ["stats:speed"], now=NOW)
    with pytest.raises(NotFound, match=r"'rider_id'.*known join keys: driver_id"):
        fs.get_online_features([{"driver_id": 1, "rider_id": 2}], ["stats:rate"], now=NOW)
    with pytest.raises(NotFound, match=r"no feature view .nope.; known: adjusted, stats"):
        fs.push("nope", {"driver_id": [1]})


def test_bad_entity_rows_are_400_naming_the_column(fs: FeatureStoreService) -> None:
    with pytest.raises(InvalidInput, match="no join key 'driver_id'") as missing:
        fs.get_online_features([{"factor": 1.0}], service="churn", now=NOW)
    assert missing.value.details["field"] == "driver_id"
    with pytest.raises(InvalidInput, match=r"'driver_id' holds a str.*expects int64") as wrong:
        fs.get_online_features([{"driver_id": "seven"}], ["stats:rate"], now=NOW)
    assert wrong.value.details["field"] == "driver_id"
    with pytest.raises(InvalidInput, match=r"'factor' holds a str.*expects float64"):
        fs.get_online_features([{"driver_id": 1, "factor": "x"}], service="churn", now=NOW)
    with pytest.raises(InvalidInput, match="'rate' does not hold double"):
        fs.push("stats", {"driver_id": [1], "event_timestamp": [str(NOW)], "rate": ["fast"]})


def test_push_newer_wins_and_reads_back(fs: FeatureStoreService) -> None:
    driver = 10_000 + uuid.uuid4().int % 1_000_000
    newer = pd.DataFrame(
        {
            "driver_id": [driver],
            "event_timestamp": [NOW - pd.Timedelta(hours=1)],
            "rate": [0.25],
            "trips": [3],
            "city": ["oslo"],
            "blob": [b"\x00\xff"],
            "seen": [pd.Timestamp("2024-03-06 23:59:59.123456", tz="America/New_York")],
        }
    )
    assert fs.push("stats", newer) == 1
    older = newer.assign(event_timestamp=[NOW - pd.Timedelta(hours=5)], rate=[0.99])
    assert fs.push("stats", older) == 0
    got = fs.get_online_features(
        [{"driver_id": driver}], ["stats:rate", "stats:city", "stats:blob", "stats:seen"], now=NOW
    )
    assert (got.values["rate"], got.values["city"], got.statuses["rate"]) == ([0.25], ["oslo"], ["present"])
    assert got.values["blob"] == [b"\x00\xff"]  # bytes and times come back typed, over HTTP too
    assert got.values["seen"] == [pd.Timestamp("2024-03-07 04:59:59.123456", tz="UTC").to_pydatetime()]


def test_a_stored_nan_reads_as_nan_not_null(fs: FeatureStoreService) -> None:
    driver = 2_000_000 + uuid.uuid4().int % 1_000_000
    row = pa.table(  # from Arrow, not pandas: pandas would make the NaN a null
        {"driver_id": [driver], "event_timestamp": [NOW], "rate": [float("nan")], "trips": [1]}
        | {"city": ["x"], "blob": [b"x"], "seen": [NOW]}
    )
    assert fs.push("stats", row) == 1
    got = fs.get_online_features({"driver_id": [driver]}, ["stats:rate"], now=NOW)
    assert got.statuses["rate"] == ["present"] and np.isnan(got.values["rate"][0])


def test_definitions_list_and_show(fs: FeatureStoreService) -> None:
    kinds = {(r.kind, r.name) for r in fs.list_definitions()}
    assert {("entity", "driver"), ("feature_view", "stats"), ("feature_service", "churn")} <= kinds
    assert [r.name for r in fs.list_definitions("feature_service")] == ["churn"]
    record = fs.get_definition("feature_view", "stats")
    assert record.version == 1 and [f["name"] for f in record.spec["fields"]] == [
        "rate",
        "trips",
        "city",
        "blob",
        "seen",
    ]
    with pytest.raises(NotFound, match="has no version 9; latest is 1"):
        fs.get_definition("feature_view", "stats", 9)
    described = fs.describe_service("churn")
    assert described.join_keys == {"driver_id": "int64"} and described.request_fields == {"factor": "float64"}
    assert described.outputs == {"rate": "float64", "trips": "int64", "rate_x": "float64"}


def test_materialize_range_then_incremental(fs: FeatureStoreService) -> None:
    first = fs.materialize(NOW, start=NOW - pd.Timedelta(days=1), views=["stats"])
    assert [(r.view, r.rows > 0) for r in first] == [("stats", True)]
    later = fs.materialize(NOW + pd.Timedelta(days=1), views=["stats"], incremental=True)
    assert [(r.view, r.rows) for r in later] == [("stats", 0)]  # no rows after NOW in the source
    with pytest.raises(InvalidInput, match="on-demand"):
        fs.materialize(NOW, views=["adjusted"])


def test_http_errors_are_json_with_codes(server: str) -> None:
    url = server + "/api/v1/features/online"
    bad = httpx.post(url, json={"entity_rows": [{"driver_id": 1}], "service": "nope"})
    assert bad.status_code == 404 and bad.json()["error_code"] == "NOT_FOUND"
    assert bad.json()["details"]["known"] == ["churn"]
    missing = httpx.post(url, json={"entity_rows": [{"factor": 1}], "service": "churn"})
    assert missing.status_code == 400 and missing.json()["details"]["field"] == "driver_id"
    garbage = httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert garbage.status_code == 400 and garbage.json()["error_code"] == "INVALID_INPUT"
    shown = httpx.get(server + "/api/v1/features/feature_view/nope")
    assert shown.status_code == 404 and "stats" in shown.json()["message"]


def test_offline_equals_online_through_the_server(tmp_path: Path, source: Path) -> None:
    """After materializing up to T, the server's online answer at T equals offline retrieval at T,
    on-demand feature included, for every entity (present, outside ttl, missing alike)."""
    home = tmp_path / "home"
    _prepare(home, source)
    at = T0 + pd.Timedelta(days=3, hours=5, minutes=17)
    ids = [*list(range(DRIVERS)), 999]
    factors = [1.0 + i / 10 for i in range(len(ids))]
    with live_server(home) as url:
        fs = HttpFeatureStoreService(url, retries=2)
        fs.materialize(at, views=["stats"])
        online = fs.get_online_features({"driver_id": ids, "factor": factors}, service="churn", now=at)
        fs.close()
    offline = _offline(ids, at, source, factors)
    assert online.statuses["rate"].count("present") > DRIVERS // 2  # the comparison is not vacuous
    for column in ("rate", "trips", "rate_x"):
        expected = [None if pd.isna(v) else v for v in offline[column].tolist()]
        assert online.values[column] == expected, column


# ---- a model trained on a feature service, served by entity keys ------------------------------

MODEL_COLUMNS = ["rate", "trips", "rate_x", "factor"]


def _train_and_register(home: Path, source: Path, t0: pd.Timestamp) -> Any:
    """Train on get_historical_features(service=...), log with the service, register."""
    from sklearn.linear_model import LogisticRegression

    import loopml
    from loopml import models, registry, sdk

    rng = np.random.default_rng(11)
    times = t0 + pd.to_timedelta(rng.integers(24 * 60, 6 * 24 * 60, 300), unit="min")
    entity_df = pd.DataFrame(
        {
            "driver_id": rng.integers(1, DRIVERS, 300),
            "event_timestamp": times,
            "factor": rng.random(300) + 0.5,
        }
    )
    train = _offline_frame(entity_df, source).dropna().astype({"trips": "int64"})
    X, y = train[MODEL_COLUMNS], (train["rate_x"] > 0.5).astype(np.int64)
    model = LogisticRegression().fit(X, y)
    with loopml.start_run():
        info = models.log_model(model, "model", input_example=X.head(), feature_service="churn")
    mv = registry.register("keyed", info.model_uri)
    registry.service().set_registered_model_alias("keyed", "champion", mv.version)
    with loopml.start_run():  # logged without the service, registered with it
        plain = models.log_model(model, "plain", input_example=X.head())
    tagged = registry.register("tagged", plain.model_uri, feature_service="churn")
    assert tagged.tags["loopml.feature_service"] == "churn@1"
    assert registry.lineage("tagged", tagged.version).features == ["feature_service churn v1"]
    assert registry.lineage("keyed", mv.version).features == [
        "feature_service churn v1", "stats:rate", "stats:trips", "adjusted:rate_x",
    ]  # fmt: skip
    registry.reset()
    sdk.reset()
    return model


def _stats(source: Path) -> FeatureView:
    return next(d for d in definitions(source) if isinstance(d, FeatureView))


def _offline_frame(entity_df: pd.DataFrame, source: Path) -> pd.DataFrame:
    defs = definitions(source)
    churn = next(d for d in defs if isinstance(d, FeatureService))
    stats = next(d for d in defs if isinstance(d, FeatureView))
    return get_historical_features(entity_df, service=churn, views=[stats]).to_pandas()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any, Path]]:
    """Served models enforce the ttl against the clock: this source ends about now."""
    t0 = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(days=6)
    home = tmp_path_factory.mktemp("keyed") / "home"
    source = home.parent / "recent.parquet"
    generated(seed=5, t0=t0).to_parquet(source)
    _prepare(home, source)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOPML_HOME", str(home))
        mp.delenv("LOOPML_TRACKING_URI", raising=False)
        model = _train_and_register(home, source, t0)
    local = LocalFeatureStoreService.from_settings(Settings.load(env={"LOOPML_HOME": str(home)}))
    local.materialize(None, views=["stats"])
    local.close()
    yield home, model, source


def _expected(model: Any, ids: list[int], factors: list[float], source: Path) -> list[int]:
    at = pd.Timestamp.now(tz="UTC")
    entity_df = pd.DataFrame({"driver_id": ids, "event_timestamp": [at] * len(ids), "factor": factors})
    offline = _offline_frame(entity_df, source).astype({"trips": "int64"})
    return [int(p) for p in model.predict(offline[MODEL_COLUMNS])]


def _present_ids(home: Path) -> list[int]:
    local = LocalFeatureStoreService.from_settings(Settings.load(env={"LOOPML_HOME": str(home)}))
    found = local.get_online_features({"driver_id": list(range(1, DRIVERS))}, ["stats:rate"])
    local.close()
    return [
        i for i, s in zip(found.values["driver_id"], found.statuses["rate"], strict=True) if s == "present"
    ]


def test_loopml_serve_takes_entity_keys_and_predicts_like_offline(
    keyed: tuple[Path, Any, Path],
) -> None:
    home, model, source = keyed
    ids = _present_ids(home)[:12]
    factors = [0.5 + i / 7 for i in range(len(ids))]
    expected = _expected(model, ids, factors, source)
    with serve_process(home, "models:/keyed@champion") as hostport:
        base = f"http://{hostport}"
        records = [{"driver_id": i, "factor": f} for i, f in zip(ids, factors, strict=True)]
        got = httpx.post(base + "/invocations", json={"dataframe_records": records}, timeout=30)
        assert got.status_code == 200, got.text
        assert got.json() == {"predictions": expected}
        split = {
            "columns": ["driver_id", "factor"],
            "data": [[i, f] for i, f in zip(ids, factors, strict=True)],
        }
        assert (
            httpx.post(base + "/invocations", json={"dataframe_split": split}).json()["predictions"]
            == expected
        )
        v2 = {
            "inputs": [
                {"name": "driver_id", "datatype": "INT64", "shape": [len(ids)], "data": ids},
                {"name": "factor", "datatype": "FP64", "shape": [len(ids)], "data": factors},
            ]
        }
        answer = httpx.post(base + "/v2/models/keyed/infer", json=v2, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == expected
        # Driver 0's only value is outside the ttl and 'trips' is int64: refused, naming it.
        stale = httpx.post(
            base + "/invocations", json={"dataframe_records": [{"driver_id": 0, "factor": 1.0}]}
        )
        assert stale.status_code == 404 and "{'driver_id': 0}" in stale.json()["message"]
        assert stale.json()["details"]["features"]["trips"] == "outside_ttl"
        no_key = httpx.post(base + "/invocations", json={"dataframe_records": [{"factor": 1.0}]})
        assert no_key.status_code == 400 and no_key.json()["details"]["field"] == "driver_id"


def test_server_endpoint_takes_entity_keys(keyed: tuple[Path, Any, Path]) -> None:
    from loopml.client.http_serving import HttpEndpointService
    from loopml.serving.records import TrafficPolicy

    home, model, source = keyed
    ids = _present_ids(home)[:5]
    factors = [1.5] * len(ids)
    with live_server(home) as url:
        endpoints = HttpEndpointService(url)
        endpoints.create_endpoint("keyed-ep", TrafficPolicy.single("models:/keyed@champion"))
        endpoints.close()
        body = {"dataframe_records": [{"driver_id": i, "factor": 1.5} for i in ids]}
        got = httpx.post(url + "/endpoints/keyed-ep/invocations", json=body, timeout=60)
    assert got.status_code == 200, got.text
    assert got.json() == {"predictions": _expected(model, ids, factors, source)}


def test_serve_against_a_server_fetches_features_over_http(keyed: tuple[Path, Any, Path]) -> None:
    """``loopml serve`` with LOOPML_TRACKING_URI=server loads the model and reads features remotely."""
    home, model, source = keyed
    ids = _present_ids(home)[:4]
    with live_server(home) as url:
        port = free_port()
        serve_home = home.parent / "serve-home"
        serve_home.mkdir(exist_ok=True)
        argv = ["serve", "models:/keyed@champion", "--port", str(port)]
        env = {"LOOPML_TRACKING_URI": url}
        with loopml_process(
            serve_home, argv, port=port, ready_path="/ping", what="loopml serve", env=env
        ) as base:
            body = {"dataframe_records": [{"driver_id": i, "factor": 2.0} for i in ids]}
            got = httpx.post(base + "/invocations", json=body, timeout=60)
    assert got.status_code == 200, got.text
    assert got.json() == {"predictions": _expected(model, ids, [2.0] * len(ids), source)}
    assert not (serve_home / "online.db").exists()  # nothing was read from a local store


def test_server_uses_the_configured_redis_online_store(tmp_path: Path, source: Path, redis_url: str) -> None:
    from loopml.features.online import open_online_store, to_utc_micros

    shared = open_online_store(redis_url)
    shared.delete("stats")  # the Redis server is shared by the session
    home = tmp_path / "home"
    _prepare(home, source)
    with live_server(home, env={"LOOPML_ONLINE_STORE": redis_url}) as url:
        fs = HttpFeatureStoreService(url, retries=2)
        fs.materialize(NOW, views=["stats"])
        got = fs.get_online_features({"driver_id": [5, 999]}, ["stats:trips"], now=NOW)
        fs.close()
    assert got.statuses["trips"] == ["present", "missing"]
    stored = shared.read(_stats(source), [(5,)], ["trips"], now_us=to_utc_micros(NOW))[0]
    assert stored.values == {"trips": got.values["trips"][0]}  # the server wrote to Redis
    shared.delete("stats")
    shared.close()
    assert not (home / "online.db").exists()


def test_version_registered_with_a_service_takes_entity_keys(keyed: tuple[Path, Any, Path]) -> None:
    home, model, source = keyed
    ids = _present_ids(home)[:3]
    with serve_process(home, "models:/tagged/1") as hostport:
        body = {"dataframe_records": [{"driver_id": i, "factor": 0.75} for i in ids]}
        got = httpx.post(f"http://{hostport}/invocations", json=body, timeout=60)
    assert got.status_code == 200, got.text
    assert got.json() == {"predictions": _expected(model, ids, [0.75] * len(ids), source)}
