"""``loopml features online`` and ``push`` against a live server (LOOPML_TRACKING_URI=http://...).

The CLI reads and pushes through HttpFeatureStoreService: the answers equal the client's own,
bytes and timestamps survive the round trip, bad rows are refused by the server naming the
column, and nothing is written to the local home.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from loopml import sdk
from loopml.cli import app
from loopml.client.http_features import HttpFeatureStoreService
from loopml.features import service as features_service
from tests.integration.test_features_server import NOW, _prepare, generated
from tests.support.live_server import live_server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    source = tmp_path_factory.mktemp("features") / "stats.parquet"
    generated().to_parquet(source)
    home = tmp_path_factory.mktemp("fcli") / "home"
    _prepare(home, source)
    with live_server(home) as url:
        client = HttpFeatureStoreService(url, retries=2)
        try:
            client.materialize(NOW, views=["stats"])
        finally:
            client.close()
        yield url


@pytest.fixture
def client_home(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG", "LOOPML_ONLINE_STORE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_TRACKING_URI", server)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "client"))
    monkeypatch.chdir(tmp_path)
    sdk.reset()
    yield tmp_path
    sdk.reset()
    features_service.reset()


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_online_through_the_server_equals_the_client_and_push_reads_back(
    server: str, client_home: Path
) -> None:
    now = NOW.isoformat()
    read = ["features", "online", "--service", "churn", "--now", now, "--json"]
    got = cli(*read, "-e", "driver_id=5", "-e", "factor=2", "-e", "driver_id=999", "-e", "factor=0.5")
    assert got.exit_code == 0, got.output
    client = HttpFeatureStoreService(server, retries=2)
    try:
        rows = {"driver_id": [5, 999], "factor": [2.0, 0.5]}
        direct = client.get_online_features(rows, service="churn", now=NOW)
    finally:
        client.close()
    doc = orjson.loads(got.stdout)
    assert doc["values"] == direct.values and doc["statuses"] == direct.statuses
    assert doc["statuses"]["rate"] == ["present", "missing"] and doc["values"]["driver_id"] == [5, 999]

    driver = 10_000 + uuid.uuid4().int % 1_000_000
    fresh = client_home / "fresh.csv"
    fresh.write_text(
        "driver_id,event_timestamp,rate,trips,city,blob,seen\n"
        f"{driver},{(NOW - pd.Timedelta(hours=2)).isoformat()},0.25,4,oslo,ab,2024-03-06T10:00:00Z\n"
        f"{driver},{(NOW - pd.Timedelta(hours=1)).isoformat()},0.75,5,bergen,cd,2024-03-06T11:00:00Z\n"
    )
    pushed = cli("features", "push", "stats", str(fresh), "--json")
    assert pushed.exit_code == 0, pushed.output
    assert orjson.loads(pushed.stdout) == {
        "view": "stats", "rows": 2, "entities": 1, "written": 1, "skipped_older": 0
    }  # fmt: skip
    features = ["--features", "stats:rate,stats:city,stats:blob,stats:seen"]
    back = cli("features", "online", *features, "-e", f"driver_id={driver}", "--now", now, "--json")
    assert back.exit_code == 0, back.output
    values = orjson.loads(back.stdout)["values"]
    assert values["rate"] == [0.75] and values["city"] == ["bergen"]
    assert values["blob"] == [base64.b64encode(b"cd").decode()]
    assert pd.Timestamp(values["seen"][0]) == pd.Timestamp("2024-03-06T11:00:00Z")
    table = cli("features", "online", *features, "-e", f"driver_id={driver}", "--now", now)
    assert table.exit_code == 0 and "bergen" in table.stdout and "present" in table.stdout
    assert not (client_home / "client").exists()  # nothing local: the server holds it all


def test_bad_input_is_refused_through_the_server_naming_the_column(client_home: Path) -> None:
    bad = client_home / "bad.csv"
    bad.write_text("driver_id,event_timestamp,rate,trips,city,blob,seen\n7,2024-03-06,0.1,many,x,y,\n")
    refused = cli("features", "push", "stats", str(bad))
    assert refused.exit_code == 2 and "column 'trips'" in refused.stderr
    no_key = client_home / "nokey.csv"
    no_key.write_text("event_timestamp,rate,trips,city,blob,seen\n2024-03-06,0.1,1,x,y,\n")
    missing = cli("features", "push", "stats", str(no_key))
    assert missing.exit_code == 2 and "no column 'driver_id'" in missing.stderr
    unknown = cli("features", "push", "statz", str(bad))
    assert unknown.exit_code == 1 and "no feature view 'statz'; known: stats" in unknown.stderr
    on_demand = cli("features", "push", "adjusted", str(bad))
    assert on_demand.exit_code == 2 and "on-demand feature view" in on_demand.stderr
    typed = cli("features", "online", "--service", "churn", "-e", "driver_id=5", "-e", "factor=high")
    assert typed.exit_code == 2 and "'high' is not a valid float64 for request field 'factor'" in " ".join(
        typed.stderr.replace("│", " ").split()
    )
