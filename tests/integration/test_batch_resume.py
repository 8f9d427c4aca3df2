"""``loopml predict`` killed with SIGKILL mid-way resumes without recomputing finished row groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import RandomForestClassifier

import loopml.models
from loopml import sdk
from loopml.serving.batch import parts_dir, predict_file

ROW_GROUPS = 30
ROWS_PER_GROUP = 2_000
KILL_AFTER_PARTS = 3
DEADLINE_S = 240  # a bound against a hung job, not a timing assertion


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    sdk.reset()
    yield tmp_path / "home"
    sdk.reset()


def _model_uri() -> str:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(500, 20)), columns=[f"f{i}" for i in range(20)])
    y = (x["f0"] + x["f1"] * x["f2"] > 0).astype(int)
    # enough trees that each row group takes a moment, so the kill lands mid-job
    forest = RandomForestClassifier(n_estimators=60, random_state=0).fit(x, y)
    with sdk.start_run(run_name="forest", capture_env=False):
        return loopml.models.log_model(forest, input_example=x.head(3)).model_uri


def _input(path: Path) -> None:
    rng = np.random.default_rng(1)
    n = ROW_GROUPS * ROWS_PER_GROUP
    frame = pd.DataFrame(rng.normal(size=(n, 20)), columns=[f"f{i}" for i in range(20)])
    frame.insert(0, "id", np.arange(n))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=ROWS_PER_GROUP)


def _command(uri: str, src: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "loopml.cli", "predict", uri, "--input", str(src), "--output", str(out),
        "--executor", "process", "--workers", "1", "--json",
    ]  # fmt: skip


def _finished_parts(parts: Path) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in parts.glob("part-*.parquet")}


def test_kill_9_then_resume(home: Path, tmp_path: Path) -> None:
    uri = _model_uri()
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    _input(src)
    env = {**os.environ, "LOOPML_HOME": str(home), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "job.log", "wb") as log:
        job = subprocess.Popen(
            _command(uri, src, out), env=env, start_new_session=True, stdout=log, stderr=log
        )
    parts = parts_dir(out)
    deadline = time.monotonic() + DEADLINE_S
    while len(_finished_parts(parts)) < KILL_AFTER_PARTS:
        assert job.poll() is None, (tmp_path / "job.log").read_text()
        assert time.monotonic() < deadline, "the job produced no parts"
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)  # the coordinator and its pool worker, at once
    job.wait()
    done_before = _finished_parts(parts)
    assert KILL_AFTER_PARTS <= len(done_before) < ROW_GROUPS, "the kill must land mid-job"
    assert not out.exists()

    rerun = subprocess.run(
        _command(uri, src, out), env=env, capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["skipped"] == len(done_before)
    assert set(report["computed"]).isdisjoint(done_before), "finished row groups were computed again"
    assert set(report["computed"]) | done_before == set(range(ROW_GROUPS))
    assert not parts.exists()

    predict_file(uri, src, tmp_path / "clean.parquet", executor="local")
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "clean.parquet"))
    assert pq.read_metadata(out).num_rows == ROW_GROUPS * ROWS_PER_GROUP
