"""Closed-loop HTTP load with ``wrk`` and the server CPU it costs, one window at a time.

A window is one ``wrk`` run (one thread, ``C`` keep-alive connections, every request the
same pre-built POST body). Server CPU is read from /proc just before and after it; CPU used
by neither the server nor ``wrk`` is reported as other load. ``wrk`` prints its own summary
from a Lua ``done`` hook as one JSON line: requests, errors, duration and latency percentiles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _common import BenchError, machine_busy_seconds, median, pinned, self_cpu_seconds, tree_cpu_seconds

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "errors": %%d, "status_errors": %%d, '
    .. '"p50_us": %%d, "p99_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class Window:
    requests: int
    seconds: float
    cpu_s: float
    p50_ms: float
    p99_ms: float
    other_cores: float

    @property
    def cpu_ms_per_req(self) -> float:
        return 1000.0 * self.cpu_s / self.requests

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds


@dataclass
class Result:
    """Medians over windows of one (server, model, rows, connections) case."""

    server: str
    model: str
    rows: int
    connections: int
    windows: list[Window] = field(default_factory=list)

    def _median(self, attr: str) -> float:
        return median(getattr(w, attr) for w in self.windows)

    @property
    def cpu_ms(self) -> float:
        return self._median("cpu_ms_per_req")

    @property
    def rps(self) -> float:
        return self._median("req_per_s")

    @property
    def p50_ms(self) -> float:
        return self._median("p50_ms")

    @property
    def p99_ms(self) -> float:
        return self._median("p99_ms")

    @property
    def other_cores(self) -> float:
        return self._median("other_cores")

    def to_json(self) -> dict[str, object]:
        keys = ("cpu_ms", "rps", "p50_ms", "p99_ms", "other_cores")
        return {
            "server": self.server,
            "model": self.model,
            "rows": self.rows,
            "connections": self.connections,
            **{k: getattr(self, k) for k in keys},
            "windows": [asdict(w) for w in self.windows],
        }


class Wrk:
    """Runs ``wrk`` pinned to ``cpu`` against a URL with one body file per request size."""

    def __init__(self, work: Path, cpu: int | None) -> None:
        exe = shutil.which("wrk")
        if exe is None:
            raise BenchError("wrk is not installed: `apt-get install -y wrk` (or `make sysdeps` as root)")
        self.exe, self.work, self.cpu = exe, work, cpu

    def script(self, name: str, body: bytes) -> Path:
        body_path = self.work / f"{name}.json"
        body_path.write_bytes(body)
        lua = self.work / f"{name}.lua"
        lua.write_text(LUA % {"body": body_path})
        return lua

    def run(self, url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
        argv = [
            self.exe,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ]
        done = subprocess.run(pinned(argv, self.cpu), capture_output=True, text=True, timeout=seconds + 60)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("{")), None)
        if done.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}")
        out = json.loads(line)
        if out["errors"] or out["status_errors"] or not out["requests"]:
            raise BenchError(f"wrk saw errors against {url}: {out}")
        return out

    def measure(
        self, result: Result, pid: int, url: str, script: Path, *, warmup_s: int, window_s: int, reps: int
    ) -> Result:
        self.run(url, script, result.connections, warmup_s)
        for _ in range(reps):
            busy0, child0 = machine_busy_seconds(), self_cpu_seconds()
            cpu0, t0 = tree_cpu_seconds(pid), time.perf_counter()
            out = self.run(url, script, result.connections, window_s)
            cpu1, wall = tree_cpu_seconds(pid), time.perf_counter() - t0
            busy1, child1 = machine_busy_seconds(), self_cpu_seconds()
            server = cpu1 - cpu0
            other = max(0.0, (busy1 - busy0) - server - (child1 - child0)) / wall
            result.windows.append(
                Window(
                    requests=int(out["requests"]),
                    seconds=out["duration_us"] / 1e6,
                    cpu_s=server,
                    p50_ms=out["p50_us"] / 1000.0,
                    p99_ms=out["p99_us"] / 1000.0,
                    other_cores=other,
                )
            )
        return result
