"""Measurement windows: sample CPU just before and after a run of identical-kind operations.

A window runs operations until it has done at least ``min_ops`` of them *and* lasted at least
``min_seconds`` (capped by ``max_ops`` / ``max_seconds``), so a fast server gets enough CPU
ticks per window for a precise figure while a slow one still finishes in bounded time.  The
operation stream is indexed globally, so the i-th operation is the same request on every server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _common import machine_busy_seconds, median
from _workload import SqliteFloor

Step = Callable[[int], float]  # runs operation i, returns the request's wall seconds


@dataclass(frozen=True)
class WindowSpec:
    warmup: int
    min_ops: int
    min_seconds: float
    max_ops: int
    max_seconds: float = 300.0

    def done(self, ops: int, elapsed: float) -> bool:
        if ops >= self.max_ops or elapsed >= self.max_seconds:
            return True
        return ops >= self.min_ops and elapsed >= self.min_seconds


@dataclass(frozen=True)
class Window:
    ops: int
    cpu_s: float  # server CPU (or, for the floor, this process's CPU in the inserts)
    wall_s: float  # window wall time, including the driver's payload building
    request_s: float  # sum of request wall times (payloads pre-encoded)
    other_cpu_s: float  # machine CPU used by neither the server nor this driver

    @property
    def cpu_ms_per_op(self) -> float:
        return 1000.0 * self.cpu_s / self.ops

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.request_s if self.request_s > 0 else float("nan")


@dataclass
class OpResult:
    name: str
    windows: list[Window] = field(default_factory=list)

    @property
    def cpu_ms_per_op(self) -> float:
        return median(w.cpu_ms_per_op for w in self.windows)

    @property
    def ops_per_s(self) -> float:
        return median(w.ops_per_s for w in self.windows)

    @property
    def other_load(self) -> float:
        """Median CPU cores busy with other work on the machine during the windows."""
        return median(w.other_cpu_s / w.wall_s for w in self.windows)

    def to_json(self) -> dict[str, object]:
        return {
            "cpu_ms_per_op": self.cpu_ms_per_op,
            "ops_per_s": self.ops_per_s,
            "other_load_cores": self.other_load,
            "windows": [
                asdict(w) | {"cpu_ms_per_op": w.cpu_ms_per_op, "ops_per_s": w.ops_per_s} for w in self.windows
            ],
        }


def run_window(step: Step, cpu: Callable[[], float], spec: WindowSpec, start: int) -> Window:
    """Run operations ``start, start+1, ...`` as one window, sampling ``cpu`` around it."""
    busy0, self0 = machine_busy_seconds(), time.process_time()
    cpu0 = cpu()
    t0 = time.perf_counter()
    ops, request_s = 0, 0.0
    while not spec.done(ops, time.perf_counter() - t0):
        request_s += step(start + ops)
        ops += 1
    wall = time.perf_counter() - t0
    cpu1 = cpu()
    busy1, self1 = machine_busy_seconds(), time.process_time()
    server = cpu1 - cpu0
    other = max(0.0, (busy1 - busy0) - server - (self1 - self0))
    return Window(ops, server, wall, request_s, other)


def run_operation(
    name: str,
    new_step: Callable[[], Step],
    cpu: Callable[[], float],
    spec: WindowSpec,
    reps: int,
) -> OpResult:
    """Warm up, then measure ``reps`` windows; ``new_step`` is called before each window."""
    step = new_step()
    for i in range(spec.warmup):
        step(i)
    index = spec.warmup
    result = OpResult(name)
    for _ in range(reps):
        step = new_step()
        window = run_window(step, cpu, spec, index)
        index += window.ops
        result.windows.append(window)
    return result


def measure_floor(db_path: Path, spec: WindowSpec, reps: int) -> OpResult:
    """Raw SQLite floor: this process's CPU time in ``executemany`` + commit of 1000 rows."""
    floor = SqliteFloor(db_path)
    try:
        index = 0
        for _ in range(spec.warmup):
            floor.insert_batch(floor.rows(index))
            index += 1
        result = OpResult("sqlite_floor")
        for _ in range(reps):
            busy0, self0 = machine_busy_seconds(), time.process_time()
            t0 = time.perf_counter()
            ops, cpu_s, request_s = 0, 0.0, 0.0
            while not spec.done(ops, time.perf_counter() - t0):
                rows = floor.rows(index + ops)  # built outside the measured span
                c0, w0 = time.process_time(), time.perf_counter()
                floor.insert_batch(rows)
                cpu_s += time.process_time() - c0
                request_s += time.perf_counter() - w0
                ops += 1
            wall = time.perf_counter() - t0
            self_cpu = time.process_time() - self0
            other = max(0.0, machine_busy_seconds() - busy0 - self_cpu)
            result.windows.append(Window(ops, cpu_s, wall, request_s, other))
            index += ops
        return result
    finally:
        floor.close()
