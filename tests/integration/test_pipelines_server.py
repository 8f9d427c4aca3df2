"""``loopml server`` with pipelines: the read API, and its scheduler firing a dataset trigger."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import live_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]

FLOW = """
from loopml.data import DatasetVersion
from loopml.pipelines import pipeline, step

@step
def rows(dataset: DatasetVersion) -> int:
    print("rows of", dataset.ref)
    return dataset.num_rows

@step
def twice(n: int) -> int:
    return 2 * n

@pipeline
def nightly(dataset: DatasetVersion) -> int:
    return twice(rows(dataset))
"""


def _loopml(home: Path, cwd: Path, *args: str) -> str:
    env = {"LOOPML_HOME": str(home), "PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_server_lists_runs_steps_logs_and_fires_dataset_triggers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW))
    (tmp_path / "a.csv").write_text("x\n1\n2\n")
    (tmp_path / "b.csv").write_text("x\n1\n2\n3\n")
    _loopml(home, tmp_path, "data", "register", "events", "a.csv")
    _loopml(home, tmp_path, "pipeline", "register", "flow.py:nightly", "--on-dataset", "events")
    _loopml(home, tmp_path, "pipeline", "run", "nightly", "-p", "dataset=events@1")
    with live_server(home, cwd=tmp_path) as url, httpx.Client(base_url=url, timeout=30) as http:
        defs = http.get("/api/v1/pipelines").json()["pipelines"]
        assert [(d["name"], d["on_dataset"]) for d in defs] == [("nightly", "events")]
        runs = http.get("/api/v1/pipelines/runs", params={"pipeline": "nightly"}).json()["runs"]
        assert [r["status"] for r in runs] == ["SUCCEEDED"]
        run = http.get(f"/api/v1/pipelines/runs/{runs[0]['run_id']}").json()["run"]
        assert [(s["step"], s["cached"], s["upstream"]) for s in run["steps"]] == [
            ("rows", False, []),
            ("twice", False, ["rows"]),
        ]
        page = http.get("/ui/pipelines", params={"run": run["run_id"]})
        assert page.status_code == 200
        assert '<svg class="dag"' in page.text and 'data-from="rows" data-to="twice"' in page.text
        logs = http.get(f"/api/v1/pipelines/runs/{run['run_id']}/logs", params={"step": "rows"}).json()
        assert logs["logs"] == [{"step": "rows", "stream": "stdout", "text": "rows of events@1\n"}]
        missing = http.get("/api/v1/pipelines/runs/nope")
        assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"

        _loopml(home, tmp_path, "data", "register", "events", "b.csv")
        deadline = time.monotonic() + 60  # the server's scheduler checks every 10 s
        fired: list[dict[str, object]] = []
        while time.monotonic() < deadline and not fired:
            history = http.get("/api/v1/pipelines/triggers", params={"pipeline": "nightly"}).json()[
                "triggers"
            ]
            fired = [t for t in history if t["kind"] == "dataset" and t["run_id"]]
            time.sleep(0.5)
        assert fired and fired[0]["detail"] == "new dataset version events@2"
        run = http.get(f"/api/v1/pipelines/runs/{fired[0]['run_id']}").json()["run"]
        assert run["params"] == {"dataset": "events@2"}
