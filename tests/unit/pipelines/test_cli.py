"""``loopml pipeline`` end to end on a file: run, fail, logs, resume, show, list, triggers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import orjson
from typer.testing import CliRunner

from loopml.cli import app
from loopml.config import Settings

FLOW = """
from pathlib import Path
from loopml.pipelines import pipeline, step

@step
def prepare(n: int) -> list[int]:
    print("preparing", n)
    return list(range(n))

@step
def check(values: list[int], fix: str) -> int:
    if not Path(fix).exists():
        raise RuntimeError("the data is bad")
    return sum(values)

@pipeline
def nightly(n: int = 3, fix: str = "") -> int:
    return check(prepare(n), fix)
"""


def test_run_fail_logs_resume_show_and_triggers(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW))
    fix = tmp_path / "fixed"
    runner = CliRunner()
    target = str(tmp_path / "flow.py")

    failed = runner.invoke(app, ["pipeline", "run", target, "-p", "n=4", "-p", f"fix={fix}", "--json"])
    assert failed.exit_code == 1
    record = json.loads(failed.stdout)
    assert record["status"] == "FAILED" and "the data is bad" in record["error"]
    run_id = record["run_id"]

    logs = runner.invoke(app, ["pipeline", "logs", run_id, "check", "--stream", "traceback"])
    assert logs.exit_code == 0 and "RuntimeError: the data is bad" in logs.stdout
    assert "preparing 4" in runner.invoke(app, ["pipeline", "logs", run_id]).stdout

    fix.write_text("ok")
    resumed = runner.invoke(app, ["pipeline", "resume", run_id, "--json"])
    assert resumed.exit_code == 0, resumed.output
    again = orjson.loads(resumed.stdout)
    assert again["status"] == "SUCCEEDED" and again["resumed_from"] == run_id
    assert {s["step"]: s["cached"] for s in again["steps"]} == {"prepare": True, "check": False}

    shown = runner.invoke(app, ["pipeline", "show", again["run_id"]])
    assert shown.exit_code == 0 and "prepare" in shown.stdout and "SUCCEEDED" in shown.stdout
    listed = json.loads(runner.invoke(app, ["pipeline", "list", "--json"]).stdout)
    assert [r["status"] for r in listed["runs"]] == ["SUCCEEDED", "FAILED"]

    registered = runner.invoke(app, ["pipeline", "register", f"{target}:nightly", "--cron", "0 3 * * *"])
    assert registered.exit_code == 0, registered.output
    by_name = runner.invoke(app, ["pipeline", "run", "nightly", "-p", f"fix={fix}"])
    assert by_name.exit_code == 0, by_name.output
    history = json.loads(runner.invoke(app, ["pipeline", "triggers", "--json"]).stdout)
    assert [t["kind"] for t in history] == ["manual", "manual"]
    assert history[0]["status"] == "started" and history[0]["run_id"]

    bad = runner.invoke(app, ["pipeline", "run", "nightly", "-p", "n=many"])
    assert bad.exit_code == 2 and "parameter 'n' got 'many'" in bad.output
    missing = runner.invoke(app, ["pipeline", "run", "nope"])
    assert missing.exit_code == 1 and "not registered" in missing.output
