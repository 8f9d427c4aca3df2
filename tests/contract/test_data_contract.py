"""One behavioural suite for every DataService: SQLite, PostgreSQL, and HTTP to a live server;
then the registry's evaluation run entirely against the live server through the SDK."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

import loopml
import loopml.data
import loopml.models
import loopml.registry as registry
from loopml import sdk
from loopml.client.http_data import HttpDataService
from loopml.config import Settings
from loopml.data.base import DataService
from loopml.data.profile import Profile
from loopml.data.service import LocalDataService
from loopml.errors import IntegrityError, InvalidInput, NotFound
from tests.support.live_server import live_server


@pytest.fixture(params=["sqlite", "postgres", "http"])
def data(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataService]:
    svc: DataService
    if request.param == "http":
        svc = HttpDataService(request.getfixturevalue("server_url"), user="alice", retries=2)
    else:
        env = {"LOOPML_HOME": str(tmp_path / "home"), "LOOPML_USER": "alice"}
        if request.param == "postgres":
            env["LOOPML_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        svc = LocalDataService.from_settings(Settings.load(env=env))
    yield svc
    svc.close()


def _name(prefix: str = "ds") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def frame(n: int = 300, seed: int | None = None) -> pd.DataFrame:
    """Random rows (fresh each call unless seeded): the stores are shared across tests."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 9_000, n),
            "plan": rng.choice(["free", "pro", "team"], n),
            "churned": rng.random(n) < 0.3,
        }
    )


@pytest.mark.parametrize("fmt", ["pandas", "arrow", "polars"])
def test_register_get_load_round_trip(data: DataService, fmt: str) -> None:
    name, df = _name(), frame()
    df.loc[5, "income"] = np.nan
    dv = data.register(name, df, description="Q3", tags={"split": "train", "n": 1})
    assert (dv.name, dv.version, dv.num_rows, dv.description, dv.source) == (
        name, 1, 300, "Q3", "pandas.DataFrame",
    )  # fmt: skip
    assert dv.tags == {"split": "train", "n": "1"} and dv.created_by == "alice" and dv.created_at > 0
    assert [(f.name, f.type) for f in dv.schema] == [
        ("age", "int64"), ("income", "double"), ("plan", "large_string"), ("churned", "bool"),
    ]  # fmt: skip
    assert dv.profile.columns["income"].mean == pytest.approx(df["income"].mean())
    assert dv.profile.columns["income"].nulls == 1
    assert data.get(name) == dv == data.get(name, 1) == data.get(name, "latest")
    assert data.get_by_digest(dv.digest) == dv and data.get_by_digest("0" * 64) is None
    loaded = data.load(name, dv.version, format=fmt)
    if fmt == "pandas":
        pd.testing.assert_frame_equal(loaded, df)
    elif fmt == "arrow":
        assert loaded.equals(pa.Table.from_pandas(df, preserve_index=False))
    else:
        assert isinstance(loaded, pl.DataFrame) and loaded.equals(pl.from_pandas(df))


def test_a_parquet_file_is_stored_as_it_is(data: DataService, tmp_path: Path) -> None:
    name = _name()
    table = pa.table({"x": pa.array([1, None, 3], pa.int32()), "s": ["a", "b", None]})
    pq.write_table(table, tmp_path / "t.parquet")
    dv = data.register(name, tmp_path / "t.parquet")
    assert dv.source == f"file:{(tmp_path / 't.parquet').resolve()}"
    assert dv.snapshot_digest == hashlib.sha256((tmp_path / "t.parquet").read_bytes()).hexdigest()
    assert data.load(name, format="arrow").equals(table)


def test_the_same_rows_again_return_the_existing_version(data: DataService, tmp_path: Path) -> None:
    name, df = _name(), frame()
    first = data.register(name, df)
    df.sample(frac=1.0, random_state=3).to_parquet(tmp_path / "again.parquet", index=False)
    assert data.register(name, tmp_path / "again.parquet") == first
    changed = df.copy()
    changed.loc[0, "income"] += 1.0
    second = data.register(name, changed)
    assert second.version == 2 and second.digest != first.digest
    assert [v.version for v in data.list_versions(name)] == [1, 2]
    assert (name, 2) in data.list_datasets()
    copy = data.register(name + "-copy", df.iloc[::-1])
    assert (copy.version, copy.digest, copy.snapshot_digest) == (1, first.digest, first.snapshot_digest)


def test_polars_and_directory_sources_hash_alike(data: DataService, tmp_path: Path) -> None:
    df = frame(50)
    from_polars = data.register(_name(), pl.from_pandas(df))
    (tmp_path / "d").mkdir()
    df.iloc[:20].to_csv(tmp_path / "d" / "a.csv", index=False)
    df.iloc[20:].to_parquet(tmp_path / "d" / "b.parquet", index=False)
    from_dir = data.register(_name(), tmp_path / "d")
    assert from_polars.digest == from_dir.digest and "(2 files)" in from_dir.source
    assert data.load(from_dir.name, format="arrow").num_rows == 50


def test_names_with_slashes_and_a_versions_segment(data: DataService) -> None:
    name = f"team/versions/{_name()}/versions"
    dv = data.register(name, frame(20))
    assert data.get(name, 1) == dv and [v.ref for v in data.list_versions(name)] == [f"{name}@1"]
    assert data.load(name, 1, format="arrow").num_rows == 20


def test_unknown_name_and_version_say_what_exists(data: DataService) -> None:
    name = _name()
    with pytest.raises(NotFound, match=f"dataset '{name}' does not exist; (datasets are|no dataset)"):
        data.get(name)
    for seed in range(3):
        data.register(name, frame(30, seed=seed))
    with pytest.raises(NotFound, match=rf"dataset '{name}' has no version 7; versions are 1\.\.3") as info:
        data.get(name, 7)
    assert info.value.details["versions"] == [1, 2, 3]
    with pytest.raises(NotFound, match=f"dataset '{name}x' does not exist; datasets are: .*{name}"):
        data.load(name + "x")
    with pytest.raises(NotFound, match=f"dataset '{name}x' does not exist"):
        data.list_versions(name + "x")


@pytest.mark.parametrize(
    ("call", "message", "field"),
    [
        (lambda s: s.register("", pd.DataFrame({"x": [1]})), "dataset name must be a non-empty", "name"),
        (lambda s: s.register("bad name!", pd.DataFrame({"x": [1]})), "'bad name!' is not valid", "name"),
        (lambda s: s.register("d", [1, 2, 3]), "cannot register a builtins.list", "source"),
        (lambda s: s.register("d", {1: "x"}), "pass a pandas or polars DataFrame", "source"),
        (lambda s: s.register("d", pa.table({"x": [1]}), tags={"": 1}), "tag key '' must be", "tags"),
        (lambda s: s.get("d", 0), "dataset version 0 is not valid", "version"),
        (lambda s: s.get("d", "two"), "dataset version 'two' is not valid", "version"),
        (lambda s: s.load("d", format="excel"), "unknown format 'excel'; use one of pandas", "format"),
    ],
    ids=["empty-name", "bad-name", "list", "dict", "tag", "version-0", "version-word", "format"],
)
def test_bad_input_is_refused_naming_the_field(
    data: DataService, call: object, message: str, field: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        call(data)  # type: ignore[operator]
    assert info.value.details["field"] == field


def test_a_table_without_columns_is_refused(data: DataService) -> None:
    with pytest.raises(InvalidInput, match="the dataset has no columns"):
        data.register(_name(), pa.table({}))


def test_unreadable_paths(data: DataService, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        data.register("d", tmp_path / "missing.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInput, match="is neither Parquet"):
        data.register("d", tmp_path / "notes.txt")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidInput, match="cannot read"):
        data.register("d", tmp_path / "broken.parquet")


# -- HTTP only: the server's side of the upload ---------------------------------------------------
def test_the_server_refuses_a_body_that_is_not_parquet(server_url: str) -> None:
    url = f"{server_url}/api/v1/datasets/{_name()}/versions"
    parquet = {"Content-Type": "application/vnd.apache.parquet"}
    bad = httpx.post(url, content=b"x" * 100, headers=parquet)
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "body"
    assert "not a Parquet file" in bad.json()["message"]
    tags = httpx.post(url, params={"tags": "[1]"}, content=b"", headers=parquet)
    assert tags.status_code == 400 and tags.json()["details"]["field"] == "tags"


def test_uploads_over_the_configured_limit_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with live_server(home, env={"LOOPML_MAX_DATASET_UPLOAD_BYTES": "4000"}) as url:
        svc = HttpDataService(url, retries=0)
        try:
            assert svc.register("small", frame(10)).version == 1
            with pytest.raises(InvalidInput, match="the server accepts at most 4000") as info:
                svc.register("large", frame(5000))
            assert info.value.details["field"] == "body"
            assert svc.list_datasets() == [("small", 1)]
        finally:
            svc.close()


def test_a_snapshot_altered_in_transit_is_refused() -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1, 2, 3]}), sink)
    sent = sink.getvalue().to_pybytes()
    dv = loopml.data.DatasetVersion(
        "churn", 1, "d" * 64, 3, [], Profile(3, {}), "x", hashlib.sha256(sent).hexdigest(), len(sent)
    )
    altered = HttpDataService(
        "http://loopml.test",
        retries=0,
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=sent[:-1] + b"!")),
    )
    with pytest.raises(IntegrityError, match="arrived with sha256"):
        altered.load_table(dv)
    intact = HttpDataService(
        "http://loopml.test",
        retries=0,
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=sent)),
    )
    assert intact.load_table(dv).column("x").to_pylist() == [1, 2, 3]
    altered.close()
    intact.close()


# -- the SDK pointed at the server ----------------------------------------------------------------
@pytest.fixture
def remote(server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("LOOPML_USER", "ana")
    monkeypatch.chdir(tmp_path)
    sdk.set_tracking_uri(server_url)
    yield server_url
    loopml.data.reset()
    registry.reset()
    sdk.reset()


def _labelled(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    label = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return pd.DataFrame(x, columns=["f0", "f1", "f2"]).assign(label=label)


def test_evaluate_against_a_live_server(remote: str, tmp_path: Path) -> None:
    assert isinstance(loopml.data.data_service(), HttpDataService)
    train, holdout = _labelled(300, 1), _labelled(150, 2)
    train_dv = loopml.data.register(_name("train"), train)
    holdout_dv = loopml.data.register(_name("holdout"), holdout)
    assert not (tmp_path / "client-home").exists()  # nothing was stored on the client's side
    model_name = _name("churn")
    for model in (LogisticRegression(), DummyClassifier(strategy="prior")):
        model.fit(train[["f0", "f1", "f2"]], train["label"])
        with loopml.start_run(capture_env=False) as run:
            loopml.data.log_input(train_dv, context="training")
            info = loopml.models.log_model(model, input_example=train[["f0", "f1", "f2"]].head(3))
        registry.register(model_name, info.model_uri)
    assert run.run_id in loopml.data.runs_using(train_dv)
    first = registry.evaluate(model_name, 1, dataset=holdout_dv.ref, target="label")
    assert (first.dataset_name, first.dataset_digest) == (holdout_dv.name, holdout_dv.digest)
    assert first.metrics["roc_auc"] > 0.8
    registry.promote(model_name, 1)
    second = registry.evaluate(model_name, 2, dataset=holdout_dv.ref, target="label")
    assert second.champion_version == 1
    assert second.champion_metrics["roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    lineage = registry.service().lineage(model_name, 2)
    assert [(d.name, d.version) for d in lineage.datasets] == [(train_dv.name, 1)]
