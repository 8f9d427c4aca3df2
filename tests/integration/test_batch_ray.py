"""``loopml predict --executor ray`` on a real local Ray instance writes what the local executor writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

import loopml.models
from loopml import sdk
from loopml.serving.batch import predict_file

ray = pytest.importorskip("ray")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.chdir(tmp_path)
    sdk.reset()
    yield tmp_path / "home"
    sdk.reset()


def test_ray_executor_matches_local(home: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(600, 5)), columns=[f"f{i}" for i in range(5)])
    clf = LogisticRegression().fit(frame, (frame["f0"] > 0).astype(int))
    with sdk.start_run(run_name="ray", capture_env=False):
        uri = loopml.models.log_model(clf, input_example=frame.head(3)).model_uri
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), src, row_group_size=200)

    # one CPU: this machine is shared, and the point is the executor, not the speed-up
    result = predict_file(uri, src, tmp_path / "ray.parquet", executor="ray", workers=1)
    predict_file(uri, src, tmp_path / "local.parquet", executor="local")

    assert (result.rows, result.row_groups, result.computed) == (600, 3, (0, 1, 2))
    assert pq.read_table(tmp_path / "ray.parquet").equals(pq.read_table(tmp_path / "local.parquet"))
    assert not ray.is_initialized(), "a Ray instance the job started is shut down with it"
