"""``loopml features`` driven through the CLI as a user would, on a real embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from loopml import sdk
from loopml.cli import app
from loopml.config import Settings
from loopml.features.materialize import get_online_features
from loopml.features.online import open_online_store
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


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


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
