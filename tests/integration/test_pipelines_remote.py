"""Pipelines against a remote ``loopml server`` (``LOOPML_TRACKING_URI=http://…``): the steps run
here, in the test process with its own ``LOOPML_HOME``; runs, steps, the cache, logs, step
values, the run lock, tracking runs and lineage are recorded on the server."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml.data
import loopml.registry
from loopml import sdk
from loopml.client.http_pipelines import HttpPipelineStore
from loopml.config import Settings
from loopml.errors import Conflict, NotFound, PermissionDenied, Unauthenticated
from loopml.governance import roles
from loopml.governance.identity import IdentityService
from loopml.pipelines import Pipeline, engine
from loopml.pipelines.loader import load_target
from loopml.pipelines.records import Definition, PipelineRunRecord, StepRecord, TriggerRecord
from loopml.pipelines.store import PipelineStore
from loopml.pipelines.store_local import SqlPipelineStore
from loopml.store.db import Database
from tests.support.live_server import free_port, live_server, loopml_process

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

FLOW = """
import os
import time
from pathlib import Path

import pandas as pd
from sklearn.linear_model import LogisticRegression

import loopml.data
from loopml.data import DatasetVersion
from loopml.pipelines import pipeline, step

FLAG = Path(__file__).with_name("fail.flag")


@step
def load(dataset: DatasetVersion) -> pd.DataFrame:
    print("loading", dataset.ref)
    return loopml.data.load(dataset.name, dataset.version)


@step
def fit(frame: pd.DataFrame, c: float) -> LogisticRegression:
    return LogisticRegression(C=c).fit(frame[["x"]].to_numpy(dtype=float), frame["y"].to_numpy())


@step
def score(model: LogisticRegression, frame: pd.DataFrame) -> float:
    return float(model.score(frame[["x"]].to_numpy(dtype=float), frame["y"].to_numpy()))


@pipeline
def train(dataset: DatasetVersion, c: float = 1.0) -> float:
    frame = load(dataset)
    return score(fit(frame, c), frame)


@step
def first(n: int) -> int:
    return n + 1


@step
def flaky(x: int) -> int:
    if FLAG.exists():
        raise RuntimeError("the flag file is set")
    return 2 * x


@pipeline
def fragile(n: int = 1) -> int:
    return flaky(first(n))


@step
def wait_for(path: str) -> str:
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "released"


@pipeline
def slow(path: str) -> str:
    return wait_for(path)
"""

ROWS = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": [0, 0, 0, 1, 1, 1]})
_VARS = (
    "LOOPML_TRACKING_URI",
    "LOOPML_TOKEN",
    "LOOPML_DATABASE_URL",
    "LOOPML_ARTIFACT_ROOT",
    "LOOPML_CONFIG",
)


def _reset() -> None:
    engine.reset()
    loopml.data.reset()
    loopml.registry.reset()
    sdk.reset()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A live server on its own home (no schedulers): its URL and its home."""
    home = tmp_path_factory.mktemp("pipelines-remote") / "server"
    home.mkdir()
    env = {"LOOPML_PIPELINE_SCHEDULER": "0", "LOOPML_MONITOR_SCHEDULER": "0"}
    with live_server(home, env=env) as url:
        yield url, home


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "flows" / "remote_flow.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(FLOW))
    return path


@pytest.fixture
def laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Settings]]:
    """``laptop(url, name, token=None)`` points this process at the server with a fresh home."""

    def use(url: str, name: str, token: str | None = None) -> Settings:
        _reset()
        for var in _VARS:
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("LOOPML_HOME", str(tmp_path / name))
        monkeypatch.setenv("LOOPML_TRACKING_URI", url)
        if token:
            monkeypatch.setenv("LOOPML_TOKEN", token)
        settings = Settings.load()
        assert settings.is_remote
        return settings

    yield use
    _reset()


def _pipe(flows: Path, name: str) -> Pipeline:
    return load_target(f"{flows}:{name}")


def _cli(settings: Settings, cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        "LOOPML_HOME": str(settings.home),
        "LOOPML_TRACKING_URI": str(settings.tracking_uri),
        "PATH": "/usr/bin:/bin",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        **({"LOOPML_TOKEN": settings.token} if settings.token else {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def _server_blob(home: Path, digest: str) -> Path:
    return home / "artifacts" / "sha256" / digest[:2] / digest[2:]


def _blob_files(home: Path) -> set[str]:
    return {p.name for p in (home / "artifacts" / "sha256").rglob("*") if p.is_file()}


def test_a_pipeline_runs_remotely_and_a_fresh_machine_reuses_its_outputs(
    server: tuple[str, Path], laptop: Callable[..., Settings], flows: Path, tmp_path: Path
) -> None:
    url, server_home = server
    settings = laptop(url, "laptop-a")
    dv = loopml.data.register("remote-rows", ROWS)
    result = _pipe(flows, "train").run({"dataset": dv.ref, "c": 0.5}, settings=settings)
    assert result.status == "SUCCEEDED" and result.value == 1.0
    assert not (settings.home / "loopml.db").exists(), "a remote run wrote a local metadata store"

    with httpx.Client(base_url=url, timeout=30) as http:
        run = http.get(f"/api/v1/pipelines/runs/{result.run_id}").json()["run"]
        assert run["status"] == "SUCCEEDED" and run["params"]["dataset"] == dv.ref
        steps = {s["step"]: s for s in run["steps"]}
        assert [s["step"] for s in run["steps"]] == ["load", "fit", "score"]
        assert [steps[n]["outputs"][0]["kind"] for n in ("load", "fit", "score")] == [
            "dataframe",
            "model",
            "json",
        ]
        assert not any(s["cached"] for s in run["steps"])
        for s in run["steps"]:  # every value is on the server and hashes to its digest
            blob = http.get(f"/api/v1/pipelines/blobs/{s['outputs'][0]['digest']}")
            assert blob.status_code == 200
            assert hashlib.sha256(blob.content).hexdigest() == s["outputs"][0]["digest"]
        logs = http.get(f"/api/v1/pipelines/runs/{result.run_id}/logs", params={"step": "load"}).json()
        assert logs["logs"] == [{"step": "load", "stream": "stdout", "text": f"loading {dv.ref}\n"}]
    _, tracking = engine.context(settings)  # the tracking runs, read back from the server
    assert tracking.get_run(steps["load"]["tracking_run_id"]).tags["loopml.pipeline.step"] == "load"
    assert tracking.get_run(run["tracking_run_id"]).info.status == "FINISHED"
    assert steps["load"]["tracking_run_id"] in loopml.data.runs_using(dv)  # dataset lineage on the server

    # A second machine: same code and inputs, an empty home. Everything is reused from the server.
    other = laptop(url, "laptop-b")
    again = _pipe(flows, "train").run({"dataset": dv.ref, "c": 0.5}, settings=other)
    assert again.cached_steps == ["load", "fit", "score"]
    frame_digest = steps["load"]["outputs"][0]["digest"]
    assert frame_digest[2:] not in _blob_files(other.home), "checked on the server, not downloaded"
    assert again.value == 1.0
    pd.testing.assert_frame_equal(again.output("load"), ROWS)
    model = again.output("fit")
    assert isinstance(model, LogisticRegression) and model.C == 0.5
    fetched = _blob_files(other.home)
    assert {s["outputs"][0]["digest"][2:] for s in run["steps"]} <= fetched  # fetched, verified, kept

    # Steps in pool processes write their values under the laptop's home; they reach the server too.
    pooled = laptop(url, "laptop-pool")
    fresh = _pipe(flows, "train").run({"dataset": dv.ref, "c": 2.0}, settings=pooled, executor="process:2")
    assert fresh.cached_steps == ["load"] and fresh.record.executor == "process:2"
    with httpx.Client(base_url=url, timeout=30) as http:
        for s in fresh.record.steps:
            for digest in [s.outputs[0]["digest"] if s.outputs else "", *s.logs.values()]:
                assert http.head(f"/api/v1/pipelines/blobs/{digest}").status_code == 200, (s.step, digest)

    # A corrupted copy on the server is a cache miss (the step runs again), never a wrong value.
    _server_blob(server_home, frame_digest).write_bytes(b"not the parquet file")
    third = laptop(url, "laptop-c")
    rerun = _pipe(flows, "train").run({"dataset": dv.ref, "c": 0.5}, settings=third)
    assert rerun.cached_steps == ["fit", "score"]
    pd.testing.assert_frame_equal(rerun.output("load"), ROWS)
    healed_copy = _server_blob(server_home, frame_digest).read_bytes()  # the re-run's upload replaced it
    assert hashlib.sha256(healed_copy).hexdigest() == frame_digest

    # A deleted one too; the step that ran again puts its value back on the server.
    score_digest = steps["score"]["outputs"][0]["digest"]
    _server_blob(server_home, score_digest).unlink()
    fourth = laptop(url, "laptop-d")
    healed = _pipe(flows, "train").run({"dataset": dv.ref, "c": 0.5}, settings=fourth)
    assert "score" not in healed.cached_steps and healed.value == 1.0
    assert _server_blob(server_home, score_digest).is_file()


def test_blob_uploads_are_checked_against_their_digest(server: tuple[str, Path]) -> None:
    url, server_home = server
    before = _blob_files(server_home) if (server_home / "artifacts" / "sha256").exists() else set()
    claimed, actual = hashlib.sha256(b"the promised bytes").hexdigest(), b"other bytes"
    with httpx.Client(base_url=url, timeout=30) as http:
        refused = http.put(f"/api/v1/pipelines/blobs/{claimed}", content=actual)
        assert refused.status_code == 400, refused.text
        assert (
            refused.json()["error_code"] == "INVALID_INPUT"
            and "nothing was stored" in refused.json()["message"]
        )
        assert http.head(f"/api/v1/pipelines/blobs/{claimed}").status_code == 404
        assert http.get(f"/api/v1/pipelines/blobs/{hashlib.sha256(actual).hexdigest()}").status_code == 404
        for bad in ("not-a-digest", claimed.upper(), "a" * 63 + "%2e", "%2e%2e"):
            assert http.put(f"/api/v1/pipelines/blobs/{bad}", content=b"x").status_code == 400, bad
            assert http.get(f"/api/v1/pipelines/blobs/{bad}").status_code == 400, bad
        for traversal in ("..", "..%2f..%2fsecret"):  # normalised or split: not routed to a blob
            assert 400 <= http.put(f"/api/v1/pipelines/blobs/{traversal}", content=b"x").status_code < 500
        ok = http.put(f"/api/v1/pipelines/blobs/{hashlib.sha256(actual).hexdigest()}", content=actual)
        assert ok.status_code == 200 and ok.json()["size"] == len(actual)
    assert _blob_files(server_home) - before == {hashlib.sha256(actual).hexdigest()[2:]}


def test_failed_step_logs_and_resume_through_the_cli(
    server: tuple[str, Path], laptop: Callable[..., Settings], flows: Path
) -> None:
    url, _ = server
    settings = laptop(url, "laptop-cli")
    flag = flows.with_name("fail.flag")
    flag.write_text("fail")
    target = f"{flows}:fragile"
    failed = _cli(settings, flows.parent, "pipeline", "run", target, "-p", "n=3", ok=False)
    assert "step 'flaky' failed after 1 attempt(s): RuntimeError: the flag file is set" in failed.stderr
    store, _ = engine.context(settings)
    run_id = store.list_runs("fragile", 1)[0].run_id
    _cli(settings, flows.parent, "pipeline", "register", target, "--on-dataset", "remote-rows")
    listed = orjson.loads(
        _cli(settings, flows.parent, "pipeline", "list", "--pipeline", "fragile", "--json").stdout
    )
    assert [(r["run_id"], r["status"]) for r in listed["runs"]] == [(run_id, "FAILED")]
    assert [(d["name"], d["on_dataset"]) for d in listed["pipelines"]] == [("fragile", "remote-rows")]
    logs = _cli(settings, flows.parent, "pipeline", "logs", run_id, "flaky")
    assert "Traceback" in logs.stdout and "RuntimeError: the flag file is set" in logs.stdout

    flag.unlink()
    resumed = orjson.loads(_cli(settings, flows.parent, "pipeline", "resume", run_id, "--json").stdout)
    assert resumed["status"] == "SUCCEEDED" and resumed["resumed_from"] == run_id
    latest = store.list_runs("fragile", 1)[0]
    record = store.get_run(latest.run_id)
    assert record.resumed_from == run_id
    assert [(s.step, s.status) for s in record.steps] == [("first", "CACHED"), ("flaky", "SUCCEEDED")]
    shown = _cli(settings, flows.parent, "pipeline", "show", record.run_id).stdout
    assert "flaky" in shown and "SUCCEEDED" in shown
    triggers = _cli(settings, flows.parent, "pipeline", "triggers", "--pipeline", "fragile").stdout
    assert "manual" in triggers

    sched = _cli(settings, flows.parent, "scheduler", "--once", ok=False)
    assert "pipeline scheduler runs beside the store" in sched.stderr


def test_two_runs_of_one_pipeline_at_once_one_gets_conflict(
    server: tuple[str, Path], laptop: Callable[..., Settings], flows: Path, tmp_path: Path
) -> None:
    url, _ = server
    settings = laptop(url, "laptop-lock")
    release = tmp_path / "release"
    pipe = _pipe(flows, "slow")
    outcome: dict[str, object] = {}

    def first() -> None:
        outcome["result"] = pipe.run({"path": str(release)}, cache=False, settings=settings)

    thread = threading.Thread(target=first)
    thread.start()
    store, _ = engine.context(settings)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [r for r in store.list_runs("slow") if r.status == "RUNNING"]:
        time.sleep(0.05)
    try:
        with pytest.raises(Conflict, match="pipeline 'slow' is already running"):
            _pipe(flows, "slow").run({"path": str(release)}, cache=False, settings=settings)
    finally:
        release.write_text("go")
        thread.join(60)
    result = outcome["result"]
    assert getattr(result, "status", None) == "SUCCEEDED"
    statuses = [r.status for r in store.list_runs("slow")]
    assert statuses == ["SUCCEEDED"]


def test_a_lock_whose_client_stopped_renewing_is_taken_over_after_the_lease(
    tmp_path_factory: pytest.TempPathFactory, laptop: Callable[..., Settings], flows: Path, tmp_path: Path
) -> None:
    home = tmp_path_factory.mktemp("pipelines-lease") / "server"
    home.mkdir()
    env = {"LOOPML_PIPELINE_SCHEDULER": "0", "LOOPML_MONITOR_SCHEDULER": "0", "LOOPML_PIPELINE_LEASE_S": "3"}
    with live_server(home, env=env) as url:
        dead = HttpPipelineStore(url, artifact_root=str(tmp_path / "dead-laptop"), retries=1)
        run_id = uuid.uuid4().hex
        target = f"{flows}:fragile"
        dead.create_run(
            PipelineRunRecord(run_id, "fragile", target, "RUNNING", {}, "inprocess", True, "ana", 1)
        )
        dead.acquire("fragile", run_id, owner="dead-laptop:1")  # and then it never renews
        taken = time.monotonic()
        assert dead.lease_s == 3.0  # the server's lease, not this machine's default
        settings = laptop(url, "second-laptop")
        with pytest.raises(Conflict, match="it expires after 3 s without renewal"):
            _pipe(flows, "fragile").run({}, settings=settings)
        time.sleep(max(0.0, taken + 3.5 - time.monotonic()))
        result = _pipe(flows, "fragile").run({"n": 2}, settings=settings)  # renewed over HTTP
        assert (result.status, result.value) == ("SUCCEEDED", 6)
        assert engine.context(settings)[0].lease_s == 3.0
        abandoned = dead.get_run(run_id)
        assert abandoned.status == "FAILED" and "lease expired" in (abandoned.error or "")
        assert not dead.renew("fragile", run_id)  # the dead client came back: it lost the lock
        dead.close()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A server with ``--auth``: its URL, an editor's token and a viewer's token."""
    home = tmp_path_factory.mktemp("pipelines-auth") / "server"
    home.mkdir()
    db = Database(f"sqlite:///{home / 'loopml.db'}")
    ids = IdentityService(db)
    ids.bootstrap(ids.issue_bootstrap_token(), "root")
    tokens = {}
    for user, role in (("edna", "editor"), ("vera", "viewer")):
        ids.create_user(user, by="root")
        roles.grant(db, user, role, "project", "", by="root")
        tokens[user] = ids.create_token(user).secret
    db.dispose()
    port = free_port()
    args = ["server", "--host", "127.0.0.1", "--port", str(port), "--auth"]
    env = {"LOOPML_MONITOR_SCHEDULER": "0", "LOOPML_PIPELINE_SCHEDULER": "0"}
    with loopml_process(home, args, port=port, ready_path="/health", what="auth server", env=env) as url:
        yield url, tokens["edna"], tokens["vera"]


def test_an_auth_server_needs_a_token_and_an_editor_to_record(
    auth_server: tuple[str, str, str], laptop: Callable[..., Settings], flows: Path
) -> None:
    url, editor, viewer = auth_server
    anonymous = laptop(url, "laptop-anon")
    with pytest.raises(Unauthenticated):
        _pipe(flows, "fragile").run({"n": 1}, settings=anonymous)
    as_viewer = laptop(url, "laptop-viewer", viewer)
    with pytest.raises(PermissionDenied):
        _pipe(flows, "fragile").run({"n": 1}, settings=as_viewer)
    as_editor = laptop(url, "laptop-editor", editor)
    result = _pipe(flows, "fragile").run({"n": 1}, settings=as_editor)
    assert result.value == 4 and result.record.created_by == "edna"

    digest = hashlib.sha256(b"v").hexdigest()
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/api/v1/pipelines/runs").status_code == 401
        assert http.put(f"/api/v1/pipelines/blobs/{digest}", content=b"v").status_code == 401
        seen = http.get(
            f"/api/v1/pipelines/runs/{result.run_id}", headers={"Authorization": f"Bearer {viewer}"}
        )
        assert seen.status_code == 200 and seen.json()["run"]["status"] == "SUCCEEDED"
        as_v = {"Authorization": f"Bearer {viewer}"}
        assert http.put(f"/api/v1/pipelines/blobs/{digest}", content=b"v", headers=as_v).status_code == 403
        lock = http.post("/api/v1/pipelines/locks/fragile", json={"run_id": "x", "owner": "v"}, headers=as_v)
        assert lock.status_code == 403


def test_bad_step_records_are_refused_naming_the_field(server: tuple[str, Path]) -> None:
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as http:
        bad = http.put("/api/v1/pipelines/runs/nope/steps/x", json={"new": True, "status": "DONE"})
        assert bad.status_code == 400 and "status" in bad.json()["message"]
        missing = http.post("/api/v1/pipelines/runs/nope/finish", json={"status": "FAILED"})
        assert missing.status_code == 404


@pytest.fixture(params=["sql", "http"])
def any_store(
    request: pytest.FixtureRequest, server: tuple[str, Path], tmp_path: Path
) -> Iterator[PipelineStore]:
    """The same store contract on the SQL store and over HTTP (on the live server)."""
    if request.param == "sql":
        env = {"LOOPML_HOME": str(tmp_path / "sql-home")}
        store: PipelineStore = SqlPipelineStore.from_settings(
            Settings.load(env=env, toml_path=tmp_path / "x")
        )
    else:
        store = HttpPipelineStore(server[0], artifact_root=str(tmp_path / "http-home"), retries=1)
    yield store
    store.close()


def test_the_store_contract_on_both_stores(any_store: PipelineStore) -> None:
    store, name = any_store, f"contract-{uuid.uuid4().hex[:8]}"
    saved = store.put_definition(Definition(name, "flows/x.py:x", "0 * * * *", None, True, {"n": 1}))
    assert (saved.name, saved.schedule, saved.params, saved.on_alert) == (name, "0 * * * *", {"n": 1}, True)
    assert store.advance_cursor(name, "dataset_cursor", None, 3)
    assert not store.advance_cursor(name, "dataset_cursor", None, 4)  # someone moved it first
    assert store.get_definition(name).dataset_cursor == 3
    assert name in [d.name for d in store.list_definitions()]

    run = PipelineRunRecord(
        uuid.uuid4().hex, name, "flows/x.py:x", "RUNNING", {"n": 1}, "inprocess", True, "ana", 1
    )
    store.acquire(name, run.run_id)
    store.create_run(run)
    with pytest.raises(Conflict, match=f"pipeline '{name}' is already running"):
        store.acquire(name, uuid.uuid4().hex)
    key = hashlib.sha256(name.encode()).hexdigest()
    step = StepRecord(run.run_id, "a", "RUNNING", cache_key=key, started_at=2, upstream=[])
    store.save_step(step, new=True)
    step.status, step.finished_at, step.outputs = "SUCCEEDED", 3, [{"kind": "json", "digest": key, "size": 1}]
    store.save_step(step, new=False)
    assert store.get_step(run.run_id, "a").outputs == step.outputs
    assert [s.run_id for s in store.cache_candidates([key])[key]] == [run.run_id]
    with pytest.raises(NotFound):
        store.get_step(run.run_id, "b")
    assert store.unlock(name) == run.run_id  # its run was still RUNNING: marked FAILED
    assert store.get_run(run.run_id).status == "FAILED"
    assert store.unlock(name) is None

    trigger = TriggerRecord(uuid.uuid4().hex, name, "manual", "test", "started", None, "", 5)
    store.record_trigger(trigger)
    store.update_trigger(trigger.trigger_id, "skipped", run.run_id, "busy")
    assert [(t.status, t.run_id) for t in store.list_triggers(name)] == [("skipped", run.run_id)]
    store.delete_definition(name)
    with pytest.raises(NotFound, match="is not registered"):
        store.get_definition(name)
    assert store.latest_dataset_version(f"{name}-none") == 0
