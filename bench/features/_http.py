"""Online lookups over HTTP: start a feature server on 127.0.0.1, time requests from this process.

Latency is measured at the client (one keep-alive ``httpx.Client``, bodies encoded before the
clock starts), over the same entity batches as the in-process lookups.  The servers are started in
their own session and stopped by their process group, which this module created.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from _common import BenchError, Server, answers_200, tree_cpu_seconds
from _span import percentiles_ms
from _spec import lookup_batches

SIZES = ((1, 2000, 200), (100, 300, 30))  # (entities per request, timed requests, warm-up requests)


class Skipped(RuntimeError):
    """The server cannot answer this benchmark's requests (the reason is the message)."""


@contextlib.contextmanager
def running(server: Server, health: str) -> Iterator[int]:
    """Run ``server`` until the block ends (which gets its pid); GET ``health`` until it answers 200.

    Skipped if it exits or does not answer within 180 s (the reason and its log in the message).
    """
    with server:
        try:
            server.wait_ready(answers_200("GET", server.base_url + health))
        except BenchError as e:
            raise Skipped(str(e)) from e
        yield server.pid


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
