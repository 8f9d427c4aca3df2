"""Server processes for the serving benchmark: start pinned to a core, CPU from /proc, stop.

CPU of a server is ``utime + stime + cutime + cstime`` (fields 14-17 of ``/proc/PID/stat``)
summed over the process we started and all its live descendants (``mlflow models serve``
runs uvicorn as a child), in clock ticks of ``SC_CLK_TCK``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """A failure that makes the benchmark's figures meaningless."""


def _scan_proc() -> dict[int, tuple[int, int]]:
    """``pid -> (ppid, cpu_ticks)`` for every live process."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        rest = raw[raw.rfind(b")") + 2 :].split()  # the command name may contain spaces
        stats[int(entry.name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return stats


def _tree(stats: Mapping[int, tuple[int, int]], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in stats and pid not in found:
            found.append(pid)
            stack.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its descendants."""
    stats = _scan_proc()
    return sum(stats[pid][1] for pid in _tree(stats, root)) / CLK_TCK


def tree_size(root: int) -> int:
    return len(_tree(_scan_proc(), root))


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent not idle (first line of /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """``argv`` under ``taskset -c cpu`` (children inherit the affinity), or as is."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)


@dataclass
class Server:
    """An HTTP model server child process in its own session (process group)."""

    label: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    port: int
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    startup_s: float = field(default=0.0, init=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/invocations"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.label} is not running")
        return self.proc.pid

    def start(self, probe_body: bytes, timeout_s: float = 180.0) -> httpx.Response:
        """Start, then POST ``probe_body`` until it answers 200; returns that answer."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        headers = {"content-type": "application/json"}
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            while time.monotonic() - t0 < timeout_s:
                if self.proc.poll() is not None:
                    raise BenchError(f"{self.label} exited with {self.proc.returncode}\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    res = client.post(self.url, content=probe_body, headers=headers)
                    if res.status_code == 200:
                        self.startup_s = time.monotonic() - t0
                        return res
                    if res.status_code < 500:
                        raise BenchError(f"{self.label} answered {res.status_code}: {res.text[:500]}")
                time.sleep(0.2)
        raise BenchError(f"{self.label} not ready after {timeout_s:.0f}s\n{self.log_tail()}")

    def wait_quiet(self, max_cores: float = 0.05, interval_s: float = 0.25, needed: int = 4) -> None:
        """Wait (up to 30 s) until the tree is idle, so start-up work is not charged to requests."""
        t0, quiet, prev = time.monotonic(), 0, tree_cpu_seconds(self.pid)
        while quiet < needed and time.monotonic() - t0 < 30.0:
            time.sleep(interval_s)
            cur = tree_cpu_seconds(self.pid)
            quiet = quiet + 1 if (cur - prev) / interval_s < max_cores else 0
            prev = cur

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM our process group (the child leads it), SIGKILL what is left after ``grace_s``."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(pgid):
            self.proc.poll()
            time.sleep(0.1)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(f"  | {line}" for line in text[-lines:])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
