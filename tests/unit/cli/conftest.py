"""A fresh embedded store per test (LOOPML_HOME=tmp_path), with the SDK's module state reset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import loopml.registry as registry
from loopml import sdk


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no stray loopml.toml from the checkout
    sdk.set_tracking_uri(None)
    yield tmp_path / "home"
    sdk.reset()
    registry.reset()
