"""Online lookups over HTTP: start a feature server on 127.0.0.1, time requests from this process.

Latency is measured at the client (one keep-alive ``httpx.Client``, bodies encoded before the
clock starts), over the same entity batches as the in-process lookups.  The servers are started in
their own session and stopped by their process group, which this module created.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from _span import percentiles_ms
from _spec import lookup_batches

HOST = "127.0.0.1"
SIZES = ((1, 2000, 200), (100, 300, 30))  # (entities per request, timed requests, warm-up requests)


class Skipped(RuntimeError):
    """The server cannot answer this benchmark's requests (the reason is the message)."""


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its live descendants (utime+stime+cutime+cstime)."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{entry.name}/stat").read_bytes()
                rest = raw[raw.rfind(b")") + 2 :].split()  # the command name may contain spaces
                stats[int(entry.name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in stats and pid not in seen:
            seen.add(pid)
            total += stats[pid][1]
            stack.extend(children.get(pid, ()))
    return total / CLK_TCK


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path, health: str) -> Iterator[int]:
    """Run a server until the block ends (which gets its pid); ``health`` is polled until it answers 200."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(proc, health, log)
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise Skipped(f"server exited with code {proc.returncode} at start-up:\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.25)
    raise Skipped(f"server not ready after {timeout_s:.0f}s (log: {log})")


def measure(url: str, bodies: list[bytes], warmup: int, server_pid: int) -> dict[str, float]:
    """POST each body in turn; p50/p99 of the timed ones and the server's CPU per request over
    them (from /proc, ticks of 10 ms: over hundreds of requests).  Every answer must be HTTP 200."""
    samples, cpu0 = [], 0.0
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        for i, body in enumerate(bodies):
            t0 = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            elapsed = time.perf_counter() - t0
            if response.status_code != 200:
                raise Skipped(f"POST {url} answered {response.status_code}: {response.text[:300]}")
            if i + 1 == warmup:
                cpu0 = tree_cpu_seconds(server_pid)
            elif i >= warmup:
                samples.append(elapsed)
    return percentiles_ms(samples, tree_cpu_seconds(server_pid) - cpu0)


def lookups(
    url: str, ids: int, body: Callable[[list[int]], object], count: Callable[[Any], int], server_pid: int
) -> dict[str, object]:
    """Time the lookups of 1 and 100 entities; ``body(batch)`` builds one request's JSON.

    A probe request first checks that the answer holds values for every entity asked for
    (``count(answer)``), so a server answering 200 with something else is not measured.
    """
    probe = lookup_batches(ids, 100, 1)[0]
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        response = client.post(url, json=body(probe))
    if response.status_code != 200:
        raise Skipped(f"POST {url} answered {response.status_code}: {response.text[:300]}")
    if count(response.json()) != len(probe):
        raise Skipped(f"POST {url} did not answer one value per entity: {response.text[:300]}")
    figures: dict[str, object] = {}
    for size, n, warmup in SIZES:
        bodies = [json.dumps(body(batch)).encode() for batch in lookup_batches(ids, size, n + warmup)]
        figures[str(size)] = measure(url, bodies, warmup, server_pid)
    return figures
