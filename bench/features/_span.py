"""Timing helpers shared by the child processes (standard library only: they run in both venvs)."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _cpu() -> float:
    """User + system CPU seconds of this process (all its threads) and of its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextmanager
def span(into: dict[str, float], name: str) -> Iterator[None]:
    """Record ``{name}_wall_s`` and ``{name}_cpu_s`` of the block into ``into``."""
    wall0, cpu0 = time.perf_counter(), _cpu()
    yield
    into[f"{name}_wall_s"] = time.perf_counter() - wall0
    into[f"{name}_cpu_s"] = _cpu() - cpu0


def percentiles_ms(samples: list[float], cpu_s: float | None = None) -> dict[str, float]:
    """p50 and p99 (nearest rank) of durations in seconds, in milliseconds; with ``cpu_s`` (the CPU
    the samples used, all together) also the CPU milliseconds per operation."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    found = {"p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * p99, "n": len(ordered)}
    if cpu_s is not None:
        found["cpu_ms_per_op"] = 1000 * cpu_s / len(ordered)
    return found


def emit(result: dict[str, object]) -> None:
    """The child's answer: one JSON line, the last line of its stdout."""
    print("\n" + json.dumps(result), flush=True)
