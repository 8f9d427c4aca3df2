"""A fresh embedded store per test, an active run, and small training sets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml import sdk


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    sdk.reset()
    yield tmp_path / "home"
    sdk.reset()


@pytest.fixture
def run(home: Path) -> Iterator[sdk.ActiveRun]:
    with sdk.start_run(run_name="train", capture_env=False) as active:
        yield active


@pytest.fixture(scope="session")
def churn() -> tuple[pd.DataFrame, np.ndarray]:
    """A mixed-type table (two numbers, one category) and a binary label."""
    rng = np.random.default_rng(7)
    n = 300
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n).astype("int64"),
            "charges": rng.normal(70, 20, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )
    label = ((frame["charges"] > 75) ^ (frame["plan"] == "pro")).to_numpy().astype(int)
    return frame, label


@pytest.fixture(scope="session")
def numeric() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float features, a 3-class label and a regression target."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4)).astype("float32")
    classes = np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5])
    target = 2.0 * x[:, 0] - x[:, 2] + rng.normal(scale=0.1, size=200)
    return x, classes, target
