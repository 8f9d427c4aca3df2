"""A private loopml home per test, and pipeline modules written to files and loaded by path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopml import sdk
from loopml.config import Settings
from loopml.pipelines import Pipeline, engine
from loopml.pipelines.loader import load_target


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    sdk.reset()
    yield Settings.load()
    engine.reset()
    sdk.reset()


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[[str, str], Pipeline]:
    """Write ``source`` to ``tmp_path/<name>.py`` and load its one pipeline (again on each call)."""

    def write(source: str, name: str = "flow") -> Pipeline:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return load_target(str(path))

    return write
