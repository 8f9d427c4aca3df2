"""A real ``loopml server`` subprocess on 127.0.0.1 for the tests, stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def loopml_process(
    home: Path,
    args: list[str],
    *,
    port: int,
    ready_path: str,
    what: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run ``loopml ARGS`` with ``LOOPML_HOME=home`` until the block ends; yield its base URL
    once ``ready_path`` answers 200. The whole process group is stopped afterwards."""
    base = {**os.environ, "LOOPML_HOME": str(home), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    base.pop("LOOPML_TRACKING_URI", None)
    env = {**base, **(env or {})}
    log_path = home.parent / f"{what.replace(' ', '-')}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loopml.cli", *args],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=cwd,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url + ready_path, proc, log_path, what)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextmanager
def live_server(
    home: Path, *, workers: int = 1, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[str]:
    """Start ``loopml server`` with ``LOOPML_HOME=home`` (in directory ``cwd``); yield its base URL."""
    port = free_port()
    args = ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    what = "loopml server"
    with loopml_process(home, args, port=port, ready_path="/health", what=what, env=env, cwd=cwd) as url:
        yield url


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
