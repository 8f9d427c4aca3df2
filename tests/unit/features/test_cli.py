"""``loopml features`` driven through the CLI as a user would, on a real embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from loopml import sdk
from loopml.cli import app
from loopml.config import Settings
from loopml.features import service as features_service
from loopml.features.materialize import get_online_features
from loopml.features.online import open_online_store
from loopml.features.push_log import PushLog
from loopml.features.registry import FeatureRegistry

DEFS = """
from datetime import timedelta
from loopml.features.definitions import Entity, FeatureService, FeatureView, Field, FileSource

driver = Entity("driver", join_keys="driver_id")
stats = FeatureView(
    "stats",
    entities=[driver],
    fields=[Field("rate", "float64"), Field("trips", "{trips_type}")],
    source=FileSource("{source}"),
    ttl=timedelta(days={ttl_days}),
)
churn = FeatureService("churn", features=[stats])
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_USER", "alice")
    monkeypatch.chdir(tmp_path)
    sdk.set_tracking_uri(None)
    yield tmp_path
    sdk.reset()
    features_service.reset()


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def flat(text: str) -> str:
    """A usage error's message without the box rich draws around it."""
    return " ".join(text.replace("│", " ").split())


def _defs(tmp_path: Path, trips_type: str = "int64", ttl_days: int = 2) -> Path:
    source = tmp_path / "stats.parquet"
    frame = pd.DataFrame(
        {
            "driver_id": [1, 2],
            "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "rate": [0.5, 0.7],
            "trips": [3, 4],
        }
    )
    frame.to_parquet(source, index=False)
    path = tmp_path / "defs.py"
    path.write_text(DEFS.format(trips_type=trips_type, source=source, ttl_days=ttl_days))
    return path


def test_apply_then_list_and_show(home: Path) -> None:
    defs = _defs(home)
    first = cli("features", "apply", str(defs))
    assert first.exit_code == 0, first.output
    assert "create    feature_view stats v1" in first.stdout
    changed = cli("features", "apply", str(_defs(home, ttl_days=3)))
    assert "update    feature_view stats v1 -> v2" in changed.stdout
    assert "~ ttl_seconds: 172800.0 -> 259200.0" in changed.stdout
    listed = cli("features", "list", "--json")
    assert [(r["kind"], r["name"], r["version"]) for r in orjson.loads(listed.stdout)] == [
        ("entity", "driver", 1),
        ("feature_view", "stats", 2),
        ("feature_service", "churn", 1),
    ]
    shown = cli("features", "show", "feature_view", "stats", "--version", "1", "--json")
    assert orjson.loads(shown.stdout)["spec"]["ttl_seconds"] == 172800.0


def test_a_breaking_change_exits_non_zero_with_one_line_unless_forced(home: Path) -> None:
    assert cli("features", "apply", str(_defs(home))).exit_code == 0
    refused = cli("features", "apply", str(_defs(home, trips_type="float64")))
    assert refused.exit_code == 1
    assert "feature 'trips' type changed from int64 to float64" in refused.stderr
    forced = cli("features", "apply", str(_defs(home, trips_type="float64")), "--force")
    assert forced.exit_code == 0 and "! breaking" in forced.stdout


def test_an_error_in_the_definitions_file_names_its_line(home: Path) -> None:
    bad = home / "bad.py"
    bad.write_text("from loopml.features.definitions import Field\n\nx = Field('rate', 'double')\n")
    result = cli("features", "apply", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:3" in result.stderr and "known types" in result.stderr


def test_show_of_an_unknown_definition_names_the_known_ones(home: Path) -> None:
    cli("features", "apply", str(_defs(home)))
    result = cli("features", "show", "feature_view", "stat")
    assert result.exit_code == 1 and "known: stats" in result.stderr


def test_materialize_loads_the_online_store_and_reports_each_view(home: Path) -> None:
    assert cli("features", "apply", str(_defs(home))).exit_code == 0
    first = cli("features", "materialize", "--end", "2024-01-01T12:00:00+00:00", "--json")
    assert first.exit_code == 0, first.output
    [row] = orjson.loads(first.stdout)
    assert (row["view"], row["mode"], row["rows"], row["written"]) == ("stats", "range", 1, 1)
    assert row["end"] == "2024-01-01T12:00:00+00:00" and row["start"] is None
    more = cli("features", "materialize", "--incremental", "--end", "2024-01-03", "--views", "stats")
    assert more.exit_code == 0, more.output
    assert "stats" in more.stdout and "incremental" in more.stdout
    settings = Settings.load()
    registry, store = FeatureRegistry.from_settings(settings), open_online_store(None, home=settings.home)
    try:
        service = registry.resolve_service("churn")
        rows = [{"driver_id": 1}, {"driver_id": 2}]
        online = get_online_features(rows, service=service, store=store, now="2024-01-02T12:00")
    finally:
        registry.close()
        store.close()
    assert online.values["rate"] == [0.5, 0.7]


def test_materialize_refuses_bad_options_naming_them(home: Path) -> None:
    assert cli("features", "apply", str(_defs(home))).exit_code == 0
    bad = cli("features", "materialize", "--end", "yesterday-ish")
    assert bad.exit_code == 2 and "--end" in bad.stderr and "not a timestamp" in bad.stderr
    both = cli("features", "materialize", "--incremental", "--start", "2024-01-01")
    assert both.exit_code == 2 and "--start" in both.stderr
    unknown = cli("features", "materialize", "--views", "nope")
    assert unknown.exit_code == 1 and "'nope'" in unknown.stderr and "stats" in unknown.stderr


def test_materialize_skips_views_whose_rows_were_an_in_memory_dataframe(home: Path) -> None:
    assert cli("features", "apply", str(_defs(home))).exit_code == 0
    memory = home / "memory.py"
    memory.write_text(
        "import pandas as pd\n"
        "from loopml.features.definitions import DataFrameSource, Entity, FeatureView, Field\n"
        "frame = pd.DataFrame({'driver_id': [1], 'event_timestamp': pd.to_datetime(['2024-01-01']), 'x': [1.0]})\n"
        "mem = FeatureView('mem', [Entity('driver', join_keys='driver_id')], [Field('x', 'float64')],\n"
        "                  DataFrameSource(frame))\n"
    )
    assert cli("features", "apply", str(memory)).exit_code == 0
    result = cli("features", "materialize", "--end", "2024-01-03", "--json")
    assert result.exit_code == 0, result.output
    assert [row["view"] for row in orjson.loads(result.stdout)] == ["stats"]
    assert "skipped (in-memory DataFrame source): mem" in result.stderr
    named = cli("features", "materialize", "--end", "2024-01-03", "--views", "mem")
    assert named.exit_code == 2 and "in-memory DataFrame" in named.stderr


def _materialized(home: Path) -> None:
    assert cli("features", "apply", str(_defs(home))).exit_code == 0
    done = cli("features", "materialize", "--end", "2024-01-03")
    assert done.exit_code == 0, done.output


def test_online_by_service_prints_a_row_per_entity_with_value_and_status(home: Path) -> None:
    _materialized(home)
    args = ["features", "online", "--service", "churn", "-e", "driver_id=1", "-e", "driver_id=3"]
    table = cli(*args, "-e", "driver_id=2", "--now", "2024-01-02T12:00:00+00:00")
    assert table.exit_code == 0, table.output
    lines = [line for line in table.stdout.splitlines() if any(c.isalnum() for c in line)]
    assert lines[0].split() == ["┃", "driver_id", "┃", "rate", "┃", "trips", "┃"]
    assert [line.replace("│", " ").split() for line in lines[1:]] == [
        ["1", "0.5", "3"],
        ["present", "present"],
        ["3", "-", "-"],
        ["missing", "missing"],
        ["2", "0.7", "4"],
        ["present", "present"],
    ]
    later = cli(*args, "--now", "2024-01-04T12:00:00+00:00", "--json")  # driver 1 is 3.5 days old
    assert later.exit_code == 0, later.output
    assert orjson.loads(later.stdout) == {
        "values": {"driver_id": [1, 3], "rate": [None, None], "trips": [None, None]},
        "statuses": {"rate": ["outside_ttl", "missing"], "trips": ["outside_ttl", "missing"]},
        "types": {"rate": "float64", "trips": "int64"},
    }


def test_online_by_feature_references_from_a_csv_or_json_rows_file(home: Path) -> None:
    _materialized(home)
    (home / "rows.csv").write_text("driver_id\n2\n1\n")
    (home / "rows.json").write_text('{"driver_id": [2, "1"]}')
    (home / "list.json").write_text('[{"driver_id": 2}, {"driver_id": 1}]')
    for rows in ("rows.csv", "rows.json", "list.json"):
        args = ["--features", "stats:trips,stats:rate", "--rows", str(home / rows), "--full-names"]
        got = cli("features", "online", *args, "--now", "2024-01-02T12:00:00+00:00", "--json")
        assert got.exit_code == 0, (rows, got.output)
        doc = orjson.loads(got.stdout)
        assert doc["values"] == {"driver_id": [2, 1], "stats__trips": [4, 3], "stats__rate": [0.7, 0.5]}, rows


def test_online_refuses_bad_input_in_one_line_naming_what_to_fix(home: Path) -> None:
    _materialized(home)
    read = ["features", "online", "--service", "churn"]
    bad_value = cli(*read, "-e", "driver_id=seven")
    assert bad_value.exit_code == 2
    assert "'seven' is not a valid int64 for join key 'driver_id'; fix the value" in flat(bad_value.stderr)
    unknown_key = cli(*read, "-e", "driver_id=1", "-e", "rider_id=2")
    assert unknown_key.exit_code == 1 and "'rider_id'" in unknown_key.stderr
    assert "known join keys: driver_id" in unknown_key.stderr and len(unknown_key.stderr.splitlines()) == 1
    uneven = cli(
        "features", "online", "--features", "stats:rate", "-e", "driver_id=1", "-e", "x=2", "-e", "x=3"
    )
    assert uneven.exit_code == 2 and "one value per row" in flat(uneven.stderr)
    assert cli(*read, "--features", "stats:rate", "-e", "driver_id=1").exit_code == 2
    assert cli(*read).exit_code == 2
    view = cli("features", "online", "--features", "statz:rate", "-e", "driver_id=1")
    assert view.exit_code == 1 and "no feature view 'statz'; known: stats" in view.stderr
    feature = cli("features", "online", "--features", "stats:speed", "-e", "driver_id=1")
    assert feature.exit_code == 1 and "has no feature 'speed'; known: rate, trips" in feature.stderr
    (home / "bad.csv").write_text("driver_id\n1\nx\n")
    bad_file = cli(*read, "--rows", str(home / "bad.csv"))
    assert bad_file.exit_code == 2
    assert f"{home / 'bad.csv'} row 2: 'x' is not a valid int64 for join key 'driver_id'" in bad_file.stderr
    (home / "rows.txt").write_text("driver_id\n1\n")
    assert "must be a .json or .csv file" in cli(*read, "--rows", str(home / "rows.txt")).stderr


def _online(*drivers: int, now: str = "2024-01-05T12:00:00+00:00") -> dict[str, list[object]]:
    args = [a for d in drivers for a in ("-e", f"driver_id={d}")]
    got = cli("features", "online", "--service", "churn", *args, "--now", now, "--json")
    assert got.exit_code == 0, got.output
    values: dict[str, list[object]] = orjson.loads(got.stdout)["values"]
    return values


def test_push_a_file_newer_wins_online_and_every_row_goes_to_the_offline_log(home: Path) -> None:
    _materialized(home)
    fresh = pd.DataFrame(
        {
            "driver_id": [1, 2, 3, 3],
            "event_timestamp": pd.to_datetime(
                ["2024-01-05", "2023-12-01", "2024-01-04", "2024-01-05"]
            ),  # driver 2's row is older than the stored one
            "rate": [0.9, 0.1, 0.3, 0.4],
            "trips": [7, 1, 2, 5],
        }
    )
    fresh.to_parquet(home / "fresh.parquet", index=False)
    pushed = cli("features", "push", "stats", str(home / "fresh.parquet"))
    assert pushed.exit_code == 0, pushed.output
    assert pushed.stdout.strip() == (
        "pushed 4 rows to 'stats': 2 written online, 1 skipped (older than the stored value), "
        "1 superseded by a newer row of the same entity in the file; 4 appended to the offline log"
    )
    assert _online(1, 2, 3, now="2024-01-05T12:00:00+00:00")["rate"] == [0.9, None, 0.4]  # 2: ttl
    assert _online(2, now="2024-01-02T12:00:00+00:00")["rate"] == [0.7]
    [segment] = PushLog.from_settings(Settings.load()).segments("stats")
    assert pq.read_table(segment).num_rows == 4
    (home / "more.csv").write_text(
        "trips,driver_id,event_timestamp,rate,extra\n8,1,2024-01-06T01:00:00+01:00,0.95,ignored\n"
    )
    again = cli("features", "push", "stats", str(home / "more.csv"), "--json")
    assert again.exit_code == 0, again.output
    assert orjson.loads(again.stdout) == {
        "view": "stats",
        "rows": 1,
        "entities": 1,
        "written": 1,
        "skipped_older": 0,
    }
    assert _online(1, now="2024-01-06T12:00:00+00:00") == {"driver_id": [1], "rate": [0.95], "trips": [8]}


def test_push_refuses_bad_rows_naming_the_column_and_writes_nothing(home: Path) -> None:
    _materialized(home)
    cases = {
        "nokey.csv": ("event_timestamp,rate,trips\n2024-01-05,0.9,1\n", "no column 'driver_id'"),
        "nots.csv": ("driver_id,rate,trips\n1,0.9,1\n", "no column 'event_timestamp'"),
        "type.csv": ("driver_id,event_timestamp,rate,trips\n1,2024-01-05,fast,1\n", "column 'rate'"),
        "when.csv": ("driver_id,event_timestamp,rate,trips\n1,someday,0.9,1\n", "column 'event_timestamp'"),
        "key.csv": ("driver_id,event_timestamp,rate,trips\nx1,2024-01-05,0.9,1\n", "column 'driver_id'"),
    }
    for name, (text, message) in cases.items():
        (home / name).write_text(text)
        refused = cli("features", "push", "stats", str(home / name))
        assert refused.exit_code == 2, (name, refused.output)
        assert message in refused.stderr and len(refused.stderr.splitlines()) == 1, (name, refused.stderr)
    frame = pd.DataFrame(
        {
            "driver_id": [1],
            "event_timestamp": pd.to_datetime(["2024-01-05"]),
            "rate": [0.9],
            "trips": ["many"],
        }
    )
    frame.to_parquet(home / "type.parquet", index=False)
    parquet = cli("features", "push", "stats", str(home / "type.parquet"))
    assert parquet.exit_code == 2 and "'trips'" in parquet.stderr
    unknown = cli("features", "push", "statz", str(home / "type.parquet"))
    assert unknown.exit_code == 1 and "no feature view 'statz'; known: stats" in unknown.stderr
    (home / "rows.txt").write_text("x")
    assert (
        "must be a .parquet or .csv file" in cli("features", "push", "stats", str(home / "rows.txt")).stderr
    )
    assert PushLog.from_settings(Settings.load()).segments("stats") == []
    assert _online(1, 2, now="2024-01-02T12:00:00+00:00")["rate"] == [0.5, 0.7]
