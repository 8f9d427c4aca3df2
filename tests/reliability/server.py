"""A ``loopml server`` process the reliability tests can kill -9 and start again on the same
home and port (tests.support.live_server stops its server only gracefully)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.live_server import _wait_ready, free_port


class KillableServer:
    """``loopml server`` on 127.0.0.1 in its own process group."""

    def __init__(self, home: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.home, self.workers = home, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {**os.environ, "LOOPML_HOME": str(home), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        base.pop("LOOPML_TRACKING_URI", None)
        self.env = {**base, "LOOPML_MONITOR_SCHEDULER": "0", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log_path = self.home.parent / f"server-{self.port}-{self.starts}.log"
        args = ["server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loopml.cli", *args],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.starts += 1
        _wait_ready(self.url + "/health", self.proc, log_path, "loopml server")

    def kill9(self) -> None:
        """SIGKILL the whole process group: no shutdown handler, no flush, no cleanup."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
