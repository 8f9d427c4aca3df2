"""A fresh embedded store per test (LOOPML_HOME=tmp_path), and the data service on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml import sdk
from loopml.config import Settings
from loopml.data.service import LocalDataService


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_USER", "alice")
    monkeypatch.chdir(tmp_path)  # no stray loopml.toml from the checkout
    sdk.set_tracking_uri(None)
    yield tmp_path / "home"
    sdk.reset()


@pytest.fixture(params=["sqlite", "postgres"])
def data_svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalDataService]:
    """The data service on SQLite and on a real PostgreSQL (one fresh schema per test there)."""
    env = {"LOOPML_HOME": str(tmp_path / "home"), "LOOPML_USER": "alice"}
    if request.param == "postgres":
        env["LOOPML_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    svc = LocalDataService.from_settings(Settings.load(env=env))
    if request.param == "postgres":
        with svc.db.write() as conn:  # the server is shared by the session: start from no datasets
            conn.exec_driver_sql("DELETE FROM dataset_versions")
    yield svc
    svc.close()
