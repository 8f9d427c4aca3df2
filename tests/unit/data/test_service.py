"""Registering, looking up and loading dataset versions, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import loopml.data
from loopml.data.service import LocalDataService
from loopml.errors import IntegrityError, InvalidInput, NotFound


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 9_000, n),
            "plan": rng.choice(["free", "pro", "team"], n),
            "churned": rng.random(n) < 0.3,
        }
    )


def blob_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "artifacts" / "sha256").rglob("*") if p.is_file())


def test_register_records_schema_profile_and_provenance(data_svc: LocalDataService) -> None:
    df = frame()
    dv = data_svc.register("churn", df, description="Q3", tags={"split": "train", "n": 1})
    assert (dv.name, dv.version, dv.num_rows, dv.description) == ("churn", 1, 300, "Q3")
    assert dv.tags == {"split": "train", "n": "1"} and dv.created_by == "alice" and dv.created_at > 0
    assert [(f.name, f.type, f.nullable) for f in dv.schema] == [
        ("age", "int64", True), ("income", "double", True), ("plan", "large_string", True), ("churned", "bool", True),
    ]  # fmt: skip
    assert dv.profile.columns["income"].mean == pytest.approx(df["income"].mean())
    assert dv.source == "pandas.DataFrame" and dv.size_bytes > 0 and len(dv.snapshot_digest) == 64
    assert data_svc.get("churn") == dv == data_svc.get("churn", 1) == data_svc.get("churn", "latest")
    assert data_svc.get_by_digest(dv.digest) == dv and data_svc.get_by_digest("0" * 64) is None


def test_the_same_rows_again_return_the_existing_version(data_svc: LocalDataService, tmp_path: Path) -> None:
    df = frame()
    first = data_svc.register("churn", df)
    df.sample(frac=1.0, random_state=3).to_parquet(tmp_path / "again.parquet", index=False)
    again = data_svc.register("churn", tmp_path / "again.parquet")
    assert again == first
    changed = df.copy()
    changed.loc[0, "income"] += 1.0
    second = data_svc.register("churn", changed)
    assert second.version == 2 and second.digest != first.digest
    assert [v.version for v in data_svc.list_versions("churn")] == [1, 2]
    assert data_svc.list_datasets() == [("churn", 2)]


def test_identical_rows_under_another_name_share_one_snapshot(home: Path) -> None:
    df = frame()
    a = loopml.data.register("churn", df)
    before = blob_files(home)
    b = loopml.data.register("churn-copy", df.iloc[::-1])
    assert (b.digest, b.snapshot_digest, b.version) == (a.digest, a.snapshot_digest, 1)
    assert blob_files(home) == before


@pytest.mark.parametrize("fmt", ["pandas", "arrow", "polars"])
def test_load_returns_exactly_the_registered_rows(data_svc: LocalDataService, fmt: str) -> None:
    df = frame()
    df.loc[5, "income"] = np.nan
    dv = data_svc.register("churn", df)
    loaded = data_svc.load("churn", dv.version, format=fmt)
    if fmt == "pandas":
        pd.testing.assert_frame_equal(loaded, df)
    elif fmt == "arrow":
        assert loaded.equals(pa.Table.from_pandas(df, preserve_index=False))
    else:
        assert isinstance(loaded, pl.DataFrame)
        assert loaded.equals(pl.from_pandas(df))


def test_a_registered_parquet_file_loads_back_identical(data_svc: LocalDataService, tmp_path: Path) -> None:
    table = pa.table({"x": pa.array([1, None, 3], pa.int32()), "s": ["a", "b", None]})
    pq.write_table(table, tmp_path / "t.parquet")
    dv = data_svc.register("t", tmp_path / "t.parquet")
    assert data_svc.load("t", format="arrow").equals(table)
    assert dv.source.startswith("file:") and dv.source.endswith("t.parquet")


def test_a_polars_source_and_a_directory_source(data_svc: LocalDataService, tmp_path: Path) -> None:
    df = frame(50)
    from_polars = data_svc.register("p", pl.from_pandas(df))
    (tmp_path / "d").mkdir()
    df.iloc[:20].to_csv(tmp_path / "d" / "a.csv", index=False)
    df.iloc[20:].to_parquet(tmp_path / "d" / "b.parquet", index=False)
    from_dir = data_svc.register("d", tmp_path / "d")
    assert from_polars.digest == from_dir.digest
    assert from_dir.source.startswith("dir:") and "(2 files)" in from_dir.source
    assert data_svc.load("d", format="arrow").num_rows == 50


def test_a_tampered_snapshot_is_refused_on_load(home: Path) -> None:
    dv = loopml.data.register("churn", frame())
    (blob,) = [p for p in blob_files(home) if p.name == dv.snapshot_digest[2:]]
    blob.write_bytes(blob.read_bytes()[:-8] + b"tampered")
    with pytest.raises(IntegrityError, match=dv.snapshot_digest):
        loopml.data.load("churn")


def test_unknown_name_and_version_say_what_exists(data_svc: LocalDataService) -> None:
    with pytest.raises(NotFound, match="dataset 'churn' does not exist; no dataset is registered yet"):
        data_svc.get("churn")
    for seed in range(3):
        data_svc.register("churn", frame(seed=seed))
    with pytest.raises(NotFound, match=r"dataset 'churn' has no version 7; versions are 1\.\.3") as info:
        data_svc.get("churn", 7)
    assert info.value.details["versions"] == [1, 2, 3]
    with pytest.raises(NotFound, match="dataset 'chrun' does not exist; datasets are: churn"):
        data_svc.load("chrun")
    with pytest.raises(NotFound, match="dataset 'nope' does not exist"):
        data_svc.list_versions("nope")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.register("", pd.DataFrame({"x": [1]})), "dataset name must be a non-empty string"),
        (
            lambda s: s.register("bad name!", pd.DataFrame({"x": [1]})),
            "dataset name 'bad name!' is not valid",
        ),
        (lambda s: s.register("d", [1, 2, 3]), "cannot register a builtins.list"),
        (lambda s: s.register("d", {"x": [1]}), "pass a pandas or polars DataFrame"),
        (lambda s: s.register("d", pa.table({})), "the dataset has no columns"),
        (lambda s: s.get("d", 0), "dataset version 0 is not valid"),
        (lambda s: s.get("d", "two"), "dataset version 'two' is not valid"),
        (lambda s: s.load("d", format="excel"), "unknown format 'excel'; use one of pandas, arrow, polars"),
    ],
    ids=["empty-name", "bad-name", "list", "dict", "no-columns", "version-0", "version-word", "format"],
)
def test_bad_input_is_refused_with_a_clear_message(
    data_svc: LocalDataService, call: object, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        call(data_svc)  # type: ignore[operator]


def test_unreadable_paths(data_svc: LocalDataService, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        data_svc.register("d", tmp_path / "missing.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInput, match="is neither Parquet"):
        data_svc.register("d", tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no Parquet or CSV file"):
        data_svc.register("d", tmp_path / "empty")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidInput, match="cannot read"):
        data_svc.register("d", tmp_path / "broken.parquet")
    assert data_svc.list_datasets() == []


def test_refs_parse(home: Path) -> None:
    assert loopml.data.parse_ref("churn@12") == ("churn", 12)
    assert loopml.data.parse_ref("team/churn") == ("team/churn", None)
    assert loopml.data.parse_ref("churn@latest") == ("churn", None)
    for bad in ("churn@x", "@3", "churn@0", ""):
        with pytest.raises(InvalidInput):
            loopml.data.parse_ref(bad)
    dv = loopml.data.register("churn", frame())
    assert loopml.data.get("churn@1") == dv and loopml.data.load("churn@1", format="arrow").num_rows == 300


def test_a_remote_tracking_uri_selects_the_http_service(home: Path) -> None:
    from loopml import sdk
    from loopml.client.http_data import HttpDataService

    sdk.set_tracking_uri("http://127.0.0.1:9")
    try:
        svc = loopml.data.data_service()
        assert isinstance(svc, HttpDataService) and svc.base_url == "http://127.0.0.1:9"
        assert loopml.data.data_service() is svc  # one client per server
        with pytest.raises(InvalidInput, match="dataset name 'bad name!' is not valid"):
            loopml.data.register("bad name!", frame())  # refused before any request
    finally:
        loopml.data.reset()
    assert not home.exists()
