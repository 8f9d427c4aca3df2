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
def live_server(home: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start ``loopml server`` with ``LOOPML_HOME=home``; yield its base URL."""
    port = free_port()
    full_env = {**os.environ, "LOOPML_HOME": str(home), "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    full_env.pop("LOOPML_TRACKING_URI", None)
    log_path = home.parent / f"server-{port}.log"
    cmd = [sys.executable, "-m", "loopml.cli", "server", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--workers", str(workers)], env=full_env, stdout=log, stderr=log, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log_path)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"loopml server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"loopml server did not become ready in {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}"
    )
