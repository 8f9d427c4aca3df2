"""``loopml data`` driven through the CLI as a user would, on a real embedded store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from typer.testing import CliRunner, Result

from loopml.cli import app


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def assert_clean_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def write(tmp_path: Path, name: str, shift: float = 0.0) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"income": rng.normal(50 + shift, 10, 500), "plan": rng.choice(["free", "pro"], 500)})
    path = tmp_path / name
    df.to_parquet(path, index=False)
    return path


def test_register_list_show_and_diff(home: Path, tmp_path: Path) -> None:
    first = cli("data", "register", "churn", str(write(tmp_path, "a.parquet")), "--tag", "split=train")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("churn@1  500 rows  digest ")
    second = as_json(
        cli(
            "data",
            "register",
            "churn",
            str(write(tmp_path, "b.parquet", 9.0)),
            "--description",
            "Q4",
            "--json",
        )
    )
    assert (second["version"], second["description"]) == (2, "Q4")

    assert as_json(cli("data", "list", "--json")) == [{"name": "churn", "latest_version": 2}]
    versions = as_json(cli("data", "list", "churn", "--json"))
    assert [v["version"] for v in versions] == [1, 2] and versions[0]["num_rows"] == 500
    table = cli("data", "list")
    assert table.exit_code == 0 and "churn" in table.stdout

    shown = as_json(cli("data", "show", "churn@1", "--json"))
    assert shown["tags"] == {"split": "train"} and shown["schema"][0]["name"] == "income"
    text = cli("data", "show", "churn")
    assert text.exit_code == 0 and text.stdout.startswith("churn@2  500 rows") and "mean" in text.stdout

    diff = as_json(cli("data", "diff", "churn@1", "churn@2", "--json"))
    assert diff["drift"]["income"] > 0.25 and diff["schema_changes"] == []
    readable = cli("data", "diff", "churn@1", "churn@2")
    assert readable.exit_code == 0 and "income" in readable.stdout and "significant" in readable.stdout


def test_errors_are_one_line(home: Path, tmp_path: Path) -> None:
    assert_clean_error(cli("data", "show", "churn"), 1, "dataset 'churn' does not exist")
    cli("data", "register", "churn", str(write(tmp_path, "a.parquet")))
    assert_clean_error(cli("data", "show", "churn@7"), 1, "has no version 7; versions are 1")
    assert_clean_error(cli("data", "diff", "churn@1", "churn@x"), 2, "'x' is not a positive integer")
    assert_clean_error(cli("data", "register", "churn", str(tmp_path / "nope.csv")), 1, "does not exist")
    assert_clean_error(cli("data", "register", "churn", str(tmp_path), "--tag", "oops"), 2, "KEY=VALUE")
