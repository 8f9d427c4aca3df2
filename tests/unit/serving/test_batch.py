"""Batch inference: Parquet in, predictions out in input order, on a pool, resumable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import loopml.models
from loopml import sdk
from loopml.errors import Conflict, InvalidInput
from loopml.serving import batch
from loopml.serving.batch import parts_dir, plan, predict_file, read_ledger

FEATURES = ["f0", "f1", "f2", "f3"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    sdk.reset()
    yield tmp_path / "home"
    sdk.reset()


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    frame.insert(0, "customer_id", np.arange(n, dtype="int64"))
    return frame


@pytest.fixture
def model(home: Path) -> tuple[str, LogisticRegression]:
    train = _frame(300, seed=1)
    label = (train["f0"] + train["f1"] > 0).astype(int)
    clf = LogisticRegression().fit(train[FEATURES], label)
    with sdk.start_run(run_name="train", capture_env=False):
        info = loopml.models.log_model(clf, input_example=train[FEATURES].head(5))
    return info.model_uri, clf


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """1,000 rows in 4 row groups of 250 (one of them cut further by small batch_rows)."""
    frame = _frame(1000, seed=2)
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=250)
    return path, frame


def test_output_is_input_plus_predictions_in_input_order(
    model: tuple[str, LogisticRegression], source: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    uri, clf = model
    path, frame = source
    result = predict_file(uri, path, tmp_path / "out.parquet", executor="local", batch_rows=100)

    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["customer_id", *FEATURES, "prediction"]
    pd.testing.assert_frame_equal(out[frame.columns], frame)
    assert (out["prediction"].to_numpy() == clf.predict(frame[FEATURES])).all()
    # 250-row groups cut at 100 rows: 100 + 100 + 50 per group
    assert (result.rows, result.row_groups, result.skipped) == (1000, 12, 0)
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 12
    assert not parts_dir(tmp_path / "out.parquet").exists(), "parts are removed once assembled"


def test_a_process_pool_writes_the_same_file(
    model: tuple[str, LogisticRegression], source: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    uri, _ = model
    path, _ = source
    predict_file(uri, path, tmp_path / "local.parquet", executor="local")
    result = predict_file(uri, path, tmp_path / "pool.parquet", executor="process", workers=2)
    assert result.computed == (0, 1, 2, 3)
    assert pq.read_table(tmp_path / "pool.parquet").equals(pq.read_table(tmp_path / "local.parquet"))


def test_probabilities_only(
    model: tuple[str, LogisticRegression], source: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    uri, clf = model
    path, frame = source
    predict_file(
        uri, path, tmp_path / "p.parquet", executor="local", method="predict_proba", predictions_only=True
    )
    out = pd.read_parquet(tmp_path / "p.parquet")
    assert list(out.columns) == ["prediction_0", "prediction_1"]
    np.testing.assert_allclose(out.to_numpy(), clf.predict_proba(frame[FEATURES]))


def test_a_crashed_job_resumes_without_redoing_finished_units(
    model: tuple[str, LogisticRegression],
    source: tuple[Path, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri, _ = model
    path, _ = source
    out = tmp_path / "out.parquet"
    predict_file(uri, path, tmp_path / "clean.parquet", executor="local")
    real = batch.run_unit
    calls: list[int] = []

    def crash_on_third(spec: batch.JobSpec, unit: batch.Unit) -> tuple[int, int, float]:
        if unit.index == 2:
            raise RuntimeError("worker lost")
        calls.append(unit.index)
        return real(spec, unit)

    monkeypatch.setattr(batch, "run_unit", crash_on_third)
    with pytest.raises(RuntimeError, match="worker lost"):
        predict_file(uri, path, out, executor="local")
    assert not out.exists(), "no half-written output"
    assert [e["unit"] for e in read_ledger(parts_dir(out))] == [0, 1]

    monkeypatch.setattr(batch, "run_unit", real)
    result = predict_file(uri, path, out, executor="local")
    assert (result.skipped, result.computed) == (2, (2, 3))
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "clean.parquet"))


def test_resuming_a_different_job_is_refused_until_restart(
    model: tuple[str, LogisticRegression],
    source: tuple[Path, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri, _ = model
    path, _ = source
    out = tmp_path / "out.parquet"

    def fail(spec: batch.JobSpec, unit: batch.Unit) -> tuple[int, int, float]:
        raise RuntimeError("stop")

    real = batch.run_unit
    monkeypatch.setattr(batch, "run_unit", fail)
    with pytest.raises(RuntimeError):
        predict_file(uri, path, out, executor="local")
    monkeypatch.setattr(batch, "run_unit", real)
    with pytest.raises(Conflict, match="prediction_column") as err:
        predict_file(uri, path, out, executor="local", prediction_column="score")
    assert "--restart" in err.value.message
    result = predict_file(uri, path, out, executor="local", prediction_column="score", resume=False)
    assert result.skipped == 0
    assert "score" in pq.read_schema(out).names


def test_input_errors_name_the_fix(
    model: tuple[str, LogisticRegression], source: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    uri, _ = model
    path, frame = source
    with pytest.raises(InvalidInput, match="is the input file") as err:
        predict_file(uri, path, path)
    assert err.value.details == {"field": "output"}
    with pytest.raises(InvalidInput, match="does not exist"):
        predict_file(uri, tmp_path / "nope.parquet", tmp_path / "o.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(InvalidInput, match="not a readable Parquet file"):
        predict_file(uri, tmp_path / "text.parquet", tmp_path / "o.parquet")
    frame.drop(columns=["f2"]).to_parquet(tmp_path / "short.parquet", index=False)
    with pytest.raises(InvalidInput, match=r"lacks the column\(s\) \['f2'\]") as err:
        predict_file(uri, tmp_path / "short.parquet", tmp_path / "o.parquet")
    assert err.value.details["missing"] == ["f2"]
    with pytest.raises(InvalidInput, match="already exist"):
        predict_file(uri, path, tmp_path / "o.parquet", executor="local", prediction_column="f0")


def test_plan_cuts_row_groups_into_units(source: tuple[Path, pd.DataFrame]) -> None:
    path, _ = source
    units = plan(path, 100)
    assert [(u.row_group, u.offset, u.length) for u in units[:4]] == [
        (0, 0, 100),
        (0, 100, 100),
        (0, 200, 50),
        (1, 0, 100),
    ]
    assert sum(u.length for u in units) == 1000
    assert [u.index for u in units] == list(range(12))


def test_the_cli_reports_json(
    model: tuple[str, LogisticRegression], source: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    from loopml.cli import app

    uri, _ = model
    path, _ = source
    args = ["predict", uri, "--input", str(path), "--output", str(tmp_path / "o.parquet")]
    done = CliRunner().invoke(app, [*args, "--executor", "local", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["rows"], report["row_groups"], report["skipped"]) == (1000, 4, 0)
    bad = CliRunner().invoke(app, [*args, "--executor", "spark"])
    assert bad.exit_code == 2
    missing = CliRunner().invoke(app, ["predict", uri, "--input", "nope.parquet", "--output", "o.parquet"])
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr
