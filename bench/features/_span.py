"""Timing helpers shared by the child processes (standard library only: they run in both venvs)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common (stdlib only)

from _common import median, percentile, pin_threads, self_cpu_seconds

pin_threads()


@contextmanager
def span(into: dict[str, float], name: str) -> Iterator[None]:
    """Record ``{name}_wall_s`` and ``{name}_cpu_s`` of the block into ``into``."""
    wall0, cpu0 = time.perf_counter(), self_cpu_seconds()
    yield
    into[f"{name}_wall_s"] = time.perf_counter() - wall0
    into[f"{name}_cpu_s"] = self_cpu_seconds() - cpu0


def percentiles_ms(samples: list[float], cpu_s: float | None = None) -> dict[str, float]:
    """p50 and p99 (nearest rank) of durations in seconds, in milliseconds; with ``cpu_s`` (the CPU
    the samples used, all together) also the CPU milliseconds per operation."""
    p50, p99 = median(samples), percentile(samples, 0.99)
    found = {"p50_ms": 1000 * p50, "p99_ms": 1000 * p99, "n": len(samples)}
    if cpu_s is not None:
        found["cpu_ms_per_op"] = 1000 * cpu_s / len(samples)
    return found


def emit(result: dict[str, object]) -> None:
    """The child's answer: one JSON line, the last line of its stdout."""
    print("\n" + json.dumps(result), flush=True)
