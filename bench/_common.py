"""What every benchmark harness shares: process CPU and memory from /proc, server child processes,
medians and percentiles, the peers' venvs under ``.bench/``, machine facts and the ``--json`` file.

CPU of a process is ``utime + stime + cutime + cstime`` (fields 14-17 of ``/proc/PID/stat``, in
clock ticks of ``SC_CLK_TCK``, normally 100 per second): the last two keep the CPU of children that
exited and were reaped inside a window.  A server's CPU is that summed over the process we started
and all its live descendants (``mlflow server`` runs uvicorn and job consumers as children).

Only the standard library is imported here (httpx when a server is first polled), so that children
running in a peer's venv (``.bench/feast-venv``, which has no httpx) can import this module too.
A harness in ``bench/<area>/`` puts ``bench/`` on ``sys.path`` before importing it::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _common import Server, tree_cpu_seconds
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
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"  # peers' venvs, cached data and temporary work folders (gitignored)
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
# One BLAS / OpenMP thread in every process a benchmark starts: the machine is shared and small.
PINS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

T = TypeVar("T")


class BenchError(RuntimeError):
    """A failure that makes the benchmark's figures meaningless."""


# ------------------------------------------------------------------------------------ statistics


def median(values: Iterable[float]) -> float:
    """The median of ``values`` (the mean of the middle two for an even count): ``median([3, 1, 2]) == 2``."""
    return statistics.median(values)


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` a fraction: ``percentile(range(100), 0.99) == 99``.

    The value at index ``int(q * n)`` of the sorted values (clamped to the last one), which is what
    every harness reported before this module existed.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values: measure at least one sample")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


# ------------------------------------------------------------------------------ /proc accounting


def read_stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, cpu_ticks)`` of one process from ``/proc/PID/stat``, or None if it is gone.

    ``cpu_ticks`` is utime + stime + cutime + cstime: ``read_stat(os.getpid())[1] / CLK_TCK`` is
    the CPU seconds this process and its reaped children have used.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    rest = raw[raw.rfind(b")") + 2 :].split()
    return int(rest[1]), sum(int(x) for x in rest[11:15])


def scan_proc() -> dict[int, tuple[int, int]]:
    """``pid -> (ppid, cpu_ticks)`` for every live process."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = read_stat(int(entry.name))
            if found is not None:
                stats[int(entry.name)] = found
    return stats


def tree_pids(stats: Mapping[int, tuple[int, int]], root: int) -> list[int]:
    """``root`` and its live descendants in ``stats`` (from :func:`scan_proc`), root first."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack, seen = [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds one process (with its reaped children) has used; BenchError if it is gone."""
    found = read_stat(pid)
    if found is None:
        raise BenchError(f"process {pid} is gone: cannot read /proc/{pid}/stat")
    return found[1] / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and all its live descendants."""
    stats = scan_proc()
    return sum(stats[pid][1] for pid in tree_pids(stats, root)) / CLK_TCK


def tree_size(root: int) -> int:
    """Number of live processes in the tree rooted at ``root``."""
    return len(tree_pids(scan_proc(), root))


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a live process so far (``VmHWM`` of ``/proc/PID/status``), in MiB.

    For a child that has exited, :func:`run_child` reports ``ru_maxrss`` from ``wait4`` instead.
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError) as e:
        raise BenchError(f"process {pid} is gone: cannot read /proc/{pid}/status") from e
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise BenchError(f"/proc/{pid}/status has no VmHWM line (a kernel thread?)")


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent not idle (first line of ``/proc/stat``, idle and iowait off)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def self_cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) and of its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# ---------------------------------------------------------------------------- child processes


def pin_threads(force: bool = False) -> None:
    """Set :data:`PINS` in this process's environment (kept if already set unless ``force``).

    Call it before NumPy or another BLAS user is imported; every child inherits it.
    """
    for key, value in PINS.items():
        if force:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)


def pinned_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """A child's environment: ``base`` (default ``os.environ``), :data:`PINS`, then ``extra``."""
    return {**(os.environ if base is None else base), **PINS, **extra}


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """``argv`` under ``taskset -c cpu`` (children inherit the affinity), or as is."""
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)


@dataclass(frozen=True)
class ChildRun:
    """What :func:`run_child` saw of one finished child process."""

    returncode: int
    stdout: str
    peak_rss_mb: float  # ru_maxrss of the child (its largest process if it had children)
    cpu_s: float  # user + system of the child and its reaped children

    def last_json(self) -> dict[str, Any]:
        """The last stdout line that starts with ``{``, parsed: how children hand back figures."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise BenchError(f"the child printed no JSON line; its output ends with: {self.stdout[-500:]!r}")
        found: dict[str, Any] = json.loads(lines[-1])
        return found


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    capture: bool = True,
    stderr: IO[bytes] | None = None,
) -> ChildRun:
    """Run ``argv`` to its end; its stdout (if ``capture``, else discarded), peak RSS and CPU.

    Peak RSS is ``ru_maxrss`` from ``wait4``: on Linux a child's high-water mark starts from its
    parent's at fork, so a parent that holds big data must not start the measured children.
    ``stderr`` (default: inherited) is where the child's stderr goes.
    """
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=stderr,
        env=dict(env),
        cwd=cwd,
    )
    out = proc.stdout.read().decode(errors="replace") if proc.stdout is not None else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stdout is not None:
        proc.stdout.close()
    return ChildRun(proc.returncode, out, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


# ------------------------------------------------------------------------------------- servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def answers_200(method: str, url: str, **request: Any) -> Callable[[httpx.Client], httpx.Response | None]:
    """A readiness probe for :meth:`Server.wait_ready`: the response when ``url`` answers 200."""

    def probe(client: httpx.Client) -> httpx.Response | None:
        res = client.request(method, url, **request)
        return res if res.status_code == 200 else None

    return probe


@dataclass
class Server:
    """A server child process in its own session (process group), stopped with the whole group.

    ``with Server(...) as server:`` starts it and stops it at the end of the block::

        with Server("loopml", argv, env, log, port) as server:
            server.wait_ready(answers_200("GET", server.base_url + "/health"))
            cpu0 = tree_cpu_seconds(server.pid)
    """

    label: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    port: int
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    startup_s: float = field(default=0.0, init=False)  # from start() to the first good probe
    _started_at: float = field(default=0.0, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.label} is not running")
        return self.proc.pid

    def start(self) -> None:
        """Start the process (output to ``log_path``); BenchError if it cannot be executed."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._started_at = time.monotonic()
        with self.log_path.open("wb") as log:
            try:
                self.proc = subprocess.Popen(
                    list(self.argv),
                    env=dict(self.env),
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                raise BenchError(f"cannot start {self.label} ({self.argv[0]!r}): {e}") from e

    def wait_ready(
        self,
        probe: Callable[[httpx.Client], T | None],
        timeout_s: float = 180.0,
        poll_s: float = 0.25,
        client_timeout_s: float = 5.0,
    ) -> T:
        """Call ``probe`` until it returns something (connection errors count as not yet); return it.

        Sets :attr:`startup_s`. BenchError if the process exits first or ``timeout_s`` passes; a
        probe may raise BenchError itself for an answer that waiting will not fix.
        """
        import httpx  # here, not at the top: children in the peers' venvs import this module too

        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=client_timeout_s, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise BenchError(
                        f"{self.label} exited with code {code} during start-up\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    found = probe(client)
                    if found is not None:
                        self.startup_s = time.monotonic() - self._started_at
                        return found
                time.sleep(poll_s)
        raise BenchError(f"{self.label} not ready after {timeout_s:.0f}s\n{self.log_tail()}")

    def wait_quiet(
        self, max_cores: float = 0.05, interval_s: float = 0.5, needed: int = 4, timeout_s: float = 180.0
    ) -> float:
        """Wait until the tree uses under ``max_cores`` for ``needed`` intervals in a row.

        Servers keep working after they first answer (MLflow's job-runner children import for
        ~20 s); measuring then would charge that start-up to the first operation. Returns the
        seconds waited (about ``timeout_s`` if it never got quiet).
        """
        t0 = time.monotonic()
        quiet, prev = 0, tree_cpu_seconds(self.pid)
        while quiet < needed and time.monotonic() - t0 < timeout_s:
            time.sleep(interval_s)
            cur = tree_cpu_seconds(self.pid)
            quiet = quiet + 1 if (cur - prev) / interval_s < max_cores else 0
            prev = cur
        return time.monotonic() - t0

    def stop(self, grace_s: float = 20.0, poll_s: float = 0.2) -> None:
        """SIGTERM the process group (the child leads it), SIGKILL what is left after ``grace_s``."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(pgid):
            self.proc.poll()  # reap the leader so the group can empty
            time.sleep(poll_s)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's output, indented for an error message."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no server log)"
        return "\n".join(f"  | {line}" for line in text[-lines:])

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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


# ----------------------------------------------------------------------------------- peer venvs


def peer_venv(name: str) -> Path:
    """Where a peer's own venv lives: ``peer_venv("feast") == ROOT / ".bench" / "feast-venv"``."""
    return BENCH_DIR / f"{name}-venv"


def venv_package_version(venv: Path, package: str) -> str | None:
    """The version of ``package`` installed in ``venv``, or None (no venv, or not installed)."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    code = f"from importlib.metadata import version; print(version({package!r}))"
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def ensure_venv(venv: Path, requirements: Sequence[str], pin: tuple[str, str] | None = None) -> Path:
    """Create ``venv`` with ``requirements`` (one time) unless it exists; return its python.

    With ``pin=(package, version)`` an existing venv with another version gets ``requirements``
    installed again. Uses ``.tools/bin/uv`` when present, else ``python3 -m venv`` and pip.
    """
    python = venv / "bin" / "python"
    if python.exists() and (pin is None or venv_package_version(venv, pin[0]) == pin[1]):
        return python
    uv = ROOT / ".tools" / "bin" / "uv"
    if not python.exists():
        print(f"creating {venv} ...", flush=True)
        create = [str(uv), "venv", "-q", "-p", "python3"] if uv.exists() else ["python3", "-m", "venv"]
        subprocess.run([*create, str(venv)], check=True, timeout=600)
    print(f"installing {' '.join(requirements)} into {venv} (one time) ...", flush=True)
    if uv.exists():
        install = [str(uv), "pip", "install", "-q", "-p", str(python), *requirements]
    else:
        install = [str(python), "-m", "pip", "install", "-q", *requirements]
    subprocess.run(install, check=True, timeout=1800)
    if pin is not None and venv_package_version(venv, pin[0]) != pin[1]:
        raise BenchError(f"{venv} does not have {pin[0]}=={pin[1]} after installing {requirements}")
    return python


def require_venv(venv: Path, how: str) -> Path:
    """The python of an existing ``venv``; BenchError saying ``how`` to create it if it is missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise BenchError(f"no venv at {venv}: {how}")
    return python


# --------------------------------------------------------------------------- machine and output


def git(*args: str) -> str:
    """``git -C ROOT ARGS`` stdout, stripped; empty if git is missing or fails."""
    if shutil.which("git") is None:
        return ""
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def git_head() -> str:
    """The short commit id of the tree being measured, ``unknown`` without git."""
    if shutil.which("git") is None:
        return "unknown"
    return git("rev-parse", "--short", "HEAD") or "(no commit)"


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def loopml_version() -> str:
    """The installed loopml's version (the venv runs the working tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loopml")
    except PackageNotFoundError:
        return "not installed"


def machine_info(mlflow: str = "n/a") -> dict[str, object]:
    """Facts that make two runs' figures comparable (or not), for the ``--json`` file."""
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mlflow": mlflow,
        "loopml": loopml_version(),
        "git_head": git_head(),
        "clk_tck": CLK_TCK,
        "loadavg_at_start": os.getloadavg(),
    }


def write_json(path: Path | str, data: object) -> None:
    """Write the ``--json`` file: indented, one trailing newline."""
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
