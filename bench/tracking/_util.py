"""Process CPU accounting, server lifecycle and environment helpers for the tracking benchmark.

CPU is read from ``/proc/PID/stat``: ``utime + stime`` of every process in the server's tree
(the process we started and all its live descendants), plus ``cutime + cstime`` of each of them
so that CPU of a descendant that exited and was reaped inside a window is not lost.  Values are
in clock ticks (``SC_CLK_TCK``, normally 100 per second).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
API_PREFIX = "/api/2.0/mlflow/"


class BenchError(RuntimeError):
    """A failure that makes the benchmark's figures meaningless."""


# --------------------------------------------------------------------------- /proc CPU accounting


def _read_stat(pid: int) -> tuple[int, int] | None:
    """Return ``(ppid, cpu_ticks)`` of one process, or None if it is gone.

    ``cpu_ticks`` is utime + stime + cutime + cstime (fields 14-17 of /proc/PID/stat).
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    rest = raw[raw.rfind(b")") + 2 :].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, utime + stime + cutime + cstime


def _scan_proc() -> dict[int, tuple[int, int]]:
    """``pid -> (ppid, cpu_ticks)`` for every live process."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _read_stat(int(entry.name))
            if st is not None:
                stats[int(entry.name)] = st
    return stats


def _tree_pids(stats: Mapping[int, tuple[int, int]], root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack, seen = [root_pid], set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds used so far by ``root_pid`` and all its descendants."""
    stats = _scan_proc()
    return sum(stats[pid][1] for pid in _tree_pids(stats, root_pid)) / CLK_TCK


def tree_size(root_pid: int) -> int:
    """Number of live processes in the tree rooted at ``root_pid``."""
    return len(_tree_pids(_scan_proc(), root_pid))


def wait_quiet(
    root_pid: int,
    max_cores: float = 0.05,
    interval_s: float = 0.5,
    needed: int = 4,
    timeout_s: float = 180.0,
) -> float:
    """Wait until the tree uses under ``max_cores`` for ``needed`` intervals in a row.

    MLflow answers requests while its job-runner children are still importing (1-2 cores busy
    for ~20 s after readiness); measuring then would charge their start-up to the first
    operation.  Returns the seconds waited (``timeout_s`` if it never got quiet).
    """
    t0 = time.monotonic()
    quiet, prev = 0, tree_cpu_seconds(root_pid)
    while quiet < needed and time.monotonic() - t0 < timeout_s:
        time.sleep(interval_s)
        cur = tree_cpu_seconds(root_pid)
        quiet = quiet + 1 if (cur - prev) / interval_s < max_cores else 0
        prev = cur
    return time.monotonic() - t0


# ------------------------------------------------------------------------------- server lifecycle


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A tracking server child process, started in its own session (process group)."""

    label: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.label} server is not running")
        return self.proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            try:
                self.proc = subprocess.Popen(
                    list(self.argv),
                    env=dict(self.env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                raise BenchError(f"cannot start {self.label} server {self.argv[0]!r}: {e}") from e

    def wait_ready(self, timeout_s: float) -> float:
        """Poll the experiments-search route until it answers 200; return seconds waited."""
        t0 = time.monotonic()
        url = self.base_url + API_PREFIX + "experiments/search"
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while time.monotonic() - t0 < timeout_s:
                if self.proc is not None and self.proc.poll() is not None:
                    raise BenchError(
                        f"{self.label} server exited with code {self.proc.returncode} "
                        f"during startup\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.post(url, json={"max_results": 1}).status_code == 200:
                        return time.monotonic() - t0
                time.sleep(0.25)
        raise BenchError(f"{self.label} server not ready after {timeout_s:.0f}s\n{self.log_tail()}")

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after ``grace_s``."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session=True: the child leads its own group
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(pgid):
            self.proc.poll()  # reap the leader so the group can empty
            time.sleep(0.2)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no server log)"
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


# ------------------------------------------------------------------------------- peer (mlflow) venv


def _venv_package_version(venv: Path, package: str) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    code = f"from importlib.metadata import version; print(version({package!r}))"
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def ensure_mlflow_venv(venv: Path, version: str) -> Path:
    """Create ``venv`` with ``mlflow==version`` unless it already has it; return its mlflow CLI."""
    cli = venv / "bin" / "mlflow"
    if cli.exists() and _venv_package_version(venv, "mlflow") == version:
        return cli
    if not (venv / "bin" / "python").exists():
        print(f"creating {venv} ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=600)
    print(f"installing mlflow=={version} into {venv} (one time) ...", flush=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"mlflow=={version}"], check=True, timeout=1800
    )
    if _venv_package_version(venv, "mlflow") != version:
        raise BenchError(f"{venv} does not have mlflow=={version} after pip install")
    return cli


# ----------------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_head(repo: Path) -> str:
    if shutil.which("git") is None:
        return "unknown"
    res = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return res.stdout.strip() if res.returncode == 0 else "(no commit)"


def loopml_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loopml")
    except PackageNotFoundError:
        return "not installed"


def machine_info(repo: Path, mlflow_venv: Path | None) -> dict[str, object]:
    mlflow_version = _venv_package_version(mlflow_venv, "mlflow") if mlflow_venv else None
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mlflow": mlflow_version or "n/a",
        "loopml": loopml_version(),
        "git_head": _git_head(repo),
        "clk_tck": CLK_TCK,
        "loadavg_at_start": os.getloadavg(),
    }


def dump_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
