"""kill -9 of the server mid-load and mid-upload, then a restart on the same home and port:
the SQLite file passes ``PRAGMA integrity_check``, every blob's bytes match its digest, no
partial artifact is visible, the clients' retried calls complete, nothing acknowledged is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from loopml.client.http import HttpTrackingService
from loopml.errors import LoopmlError
from loopml.tracking.records import Metric
from tests.reliability.server import KillableServer

pytestmark = pytest.mark.server

KEYS = 5
UPLOAD_BYTES = 3 << 20
RETRIES = 40  # full-jitter backoff capped at 5 s: ~100 s, outlasts a restart on a busy machine


def _client(url: str) -> HttpTrackingService:
    return HttpTrackingService(url, retries=RETRIES, timeout=30)


class Writers:
    """Threads calling ``work(client, i)`` in a loop through the crash; records what was
    acknowledged and which calls gave up."""

    def __init__(self, url: str, n: int, work: Callable[[HttpTrackingService, int, int], object]) -> None:
        self.url, self.work = url, work
        self.acked: list[tuple[int, int, object]] = []
        self.gave_up: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(w,), daemon=True) for w in range(n)]

    def _loop(self, worker: int) -> None:
        svc = _client(self.url)
        try:
            i = 0
            while not self.stop.is_set():
                try:
                    self.acked.append((worker, i, self.work(svc, worker, i)))
                except LoopmlError as exc:
                    self.gave_up.append(exc.message)
                i += 1
        finally:
            svc.close()

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=300)


def _crash_and_restart(server: KillableServer, writers: Writers, before_s: float, after_s: float) -> None:
    deadline = time.monotonic() + 60
    while len(writers.acked) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(before_s)
    acked_before = len(writers.acked)
    server.kill9()
    server.start()
    time.sleep(after_s)
    deadline = time.monotonic() + 120
    while len(writers.acked) <= acked_before and time.monotonic() < deadline:
        time.sleep(0.1)  # the retried calls complete against the new process


def _integrity(home: Path) -> None:
    with sqlite3.connect(home / "loopml.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    blobs = (
        [p for p in (home / "artifacts" / "sha256").rglob("*") if p.is_file()]
        if (home / "artifacts").exists()
        else []
    )
    for blob in blobs:
        digest = blob.parent.name + blob.name
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest, f"blob {blob} does not match its name"


def _report(figures: dict[str, object]) -> None:
    print(f"crash: {json.dumps(figures)}")
    out = os.environ.get("LOOPML_RELIABILITY_REPORT")
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps({"test": "crash", **figures}) + "\n")


# make test crashes the SQLite server; make reliability (LOOPML_RELIABILITY_FULL=1) PostgreSQL's too.
FULL = os.environ.get("LOOPML_RELIABILITY_FULL") == "1"
POSTGRES = pytest.param(
    "postgres",
    marks=[pytest.mark.postgres, pytest.mark.skipif(not FULL, reason="make reliability runs it")],
)


@pytest.mark.parametrize("backend", ["sqlite", POSTGRES])
def test_kill9_mid_load_loses_nothing_acknowledged(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"LOOPML_DATABASE_URL": request.getfixturevalue("postgres_url")} if backend == "postgres" else {}
    server = KillableServer(home, workers=2, env=env)
    server.start()
    try:
        exp = httpx.post(
            f"{server.url}/api/v1/experiments", json={"name": f"crash-{uuid.uuid4().hex[:8]}"}
        ).json()
        run_id = httpx.post(f"{server.url}/api/v1/runs", json=exp).json()["info"]["run_id"]

        def log(svc: HttpTrackingService, worker: int, step: int) -> int:
            svc.log_batch(
                run_id, [Metric(f"w{worker}_m{k}", float(step), 1_000 + step, step) for k in range(KEYS)]
            )
            return step

        with Writers(server.url, 3, log) as writers:
            _crash_and_restart(server, writers, before_s=1.0, after_s=1.0)
        lost = 0
        for worker in range(3):
            for k in range(KEYS):
                history = httpx.get(
                    f"{server.url}/api/v1/runs/{run_id}/metrics/w{worker}_m{k}/history"
                ).json()
                stored = {m["step"] for m in history["metrics"]}
                lost += sum(1 for w, step, _ in writers.acked if w == worker and step not in stored)
        if backend == "sqlite":
            _integrity(home)
    finally:
        server.stop()
    _report({"backend": backend, "case": "mid-load", "acknowledged_batches": len(writers.acked),
             "gave_up": len(writers.gave_up), "lost": lost})  # fmt: skip
    assert writers.gave_up == [] and lost == 0


def test_kill9_mid_upload_leaves_no_partial_artifact(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = KillableServer(home)
    server.start()
    try:
        exp = httpx.post(f"{server.url}/api/v1/experiments", json={"name": "uploads"}).json()
        run_id = httpx.post(f"{server.url}/api/v1/runs", json=exp).json()["info"]["run_id"]
        # A raw upload cut by the kill: its bytes never all arrive.
        raw = httpx.Client(base_url=server.url, timeout=60)
        partial = threading.Thread(target=_slow_upload, args=(raw, run_id), daemon=True)
        partial.start()

        def upload(svc: HttpTrackingService, worker: int, i: int) -> str:
            data = os.urandom(UPLOAD_BYTES)
            svc.put_artifact(run_id, f"w{worker}/f{i}.bin", io.BytesIO(data))
            return hashlib.sha256(data).hexdigest()

        with Writers(server.url, 2, upload) as writers:
            _crash_and_restart(server, writers, before_s=0.5, after_s=0.5)
        partial.join(timeout=60)
        raw.close()
        listed = httpx.get(
            f"{server.url}/api/v1/runs/{run_id}/artifacts", params={"recursive": "true"}
        ).json()
        files = {f["path"]: f for f in listed["files"]}
        assert "slow/partial.bin" not in files
        for worker, i, digest in writers.acked:
            info = files[f"w{worker}/f{i}.bin"]
            assert info["file_size"] == UPLOAD_BYTES
            content = httpx.get(
                f"{server.url}/api/v1/runs/{run_id}/artifact-content/w{worker}/f{i}.bin"
            ).content
            assert hashlib.sha256(content).hexdigest() == digest
        for info in files.values():  # whatever is listed is whole
            assert info["file_size"] == UPLOAD_BYTES, info
        _integrity(home)
    finally:
        server.stop()
    _report({"backend": "sqlite", "case": "mid-upload", "acknowledged_uploads": len(writers.acked),
             "gave_up": len(writers.gave_up), "lost": 0})  # fmt: skip
    assert writers.gave_up == []


def _slow_upload(http: httpx.Client, run_id: str) -> None:
    def body() -> object:
        for _ in range(600):  # 30 s or more: still sending when the server is killed
            yield b"\0" * 65536
            time.sleep(0.05)

    with contextlib.suppress(httpx.HTTPError):  # cut by the kill, as intended
        http.put(f"/api/v1/runs/{run_id}/artifacts/slow/partial.bin", content=body())  # type: ignore[arg-type]
