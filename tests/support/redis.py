"""A throwaway, real ``redis-server`` for the tests, on 127.0.0.1 and a free port.

``redis_server()`` starts Debian's ``redis-server`` (``make sysdeps`` installs it) in a fresh
temporary directory with persistence off, waits until it answers ``PING``, yields
``redis://127.0.0.1:PORT`` and on exit shuts it down and removes the directory.
``find_redis_server()`` returns ``None`` when the binary is missing. Session fixture
(tests/conftest.py)::

    @pytest.fixture(scope="session")
    def redis_url():
        if find_redis_server() is None:
            pytest.skip("redis-server not installed: run `make sysdeps` as root")
        with redis_server() as url:
            yield url

A server is left behind only if the test process is killed outright (SIGKILL).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis

__all__ = ["HOST", "find_redis_server", "redis_server"]

HOST = "127.0.0.1"
_PORT_ATTEMPTS = 3
_STOP_TIMEOUT_S = 10


def find_redis_server() -> str | None:
    """The ``redis-server`` binary on PATH (or Debian's location), else None."""
    found = shutil.which("redis-server")
    if found is None and Path("/usr/bin/redis-server").exists():
        found = "/usr/bin/redis-server"
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _start(binary: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    args = [
        binary,
        *("--port", str(port), "--bind", HOST, "--dir", str(workdir)),
        # No persistence: a test server's data dies with it, and no fork for snapshots.
        *("--save", "", "--appendonly", "no"),
        *("--daemonize", "no", "--protected-mode", "yes"),
        *("--logfile", str(workdir / "redis.log")),
    ]
    return subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )


def _wait_ready(proc: subprocess.Popen[bytes], port: int, workdir: Path, timeout: float) -> bool:
    """True once the server answers PING; False if it exited (its port was taken, say)."""
    deadline = time.monotonic() + timeout
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1, protocol=2)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            with suppress(redis.ConnectionError):
                if client.ping():
                    return True
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError(f"redis-server on {HOST}:{port} did not answer in {timeout:.0f} s:\n{_log(workdir)}")


def _log(workdir: Path) -> str:
    try:
        return "\n".join((workdir / "redis.log").read_text(errors="replace").splitlines()[-30:])
    except OSError:
        return "(no server log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # redis-server shuts down cleanly on SIGTERM (nothing to save here)
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=_STOP_TIMEOUT_S)


@contextmanager
def redis_server(*, binary: str | None = None, timeout: float = 20.0) -> Iterator[str]:
    """Run a fresh redis-server; yield ``redis://127.0.0.1:PORT``.

    Raises RuntimeError (with the tail of the server log) if it cannot start.
    """
    binary = binary or find_redis_server()
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make sysdeps`")
    workdir = Path(tempfile.mkdtemp(prefix="loopml-redis-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(_PORT_ATTEMPTS):
            port = _free_port()
            proc = _start(binary, workdir, port)
            if _wait_ready(proc, port, workdir, timeout):
                break
        else:
            raise RuntimeError(f"redis-server did not start:\n{_log(workdir)}")
        yield f"redis://{HOST}:{port}"
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
