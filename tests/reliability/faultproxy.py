"""A small fault-injecting TCP proxy (asyncio, in a background thread) for the tests.

Each accepted connection takes the next fault from a plan, then connections pass through:

- ``latency``: every chunk in either direction waits ``arg`` seconds;
- ``cut_request``: forwards the first ``arg`` bytes of the request, then closes both sides;
- ``cut_response``: forwards the first ``arg`` bytes of the response, then closes both sides;
- ``reset``: on the first request bytes, closes the client socket with an RST (SO_LINGER 0);
- ``hang``: reads the request and never answers (until the client gives up or the proxy stops).

>>> with FaultProxy(upstream_port=5000) as proxy:     # doctest: +SKIP
...     proxy.plan([("reset", 0), ("cut_response", 100)])
...     client = HttpTrackingService(proxy.url)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

FAULTS = ("pass", "latency", "cut_request", "cut_response", "reset", "hang")


@dataclass
class Stats:
    connections: int = 0
    faults: dict[str, int] = field(default_factory=dict)

    @property
    def injected(self) -> int:
        return sum(n for kind, n in self.faults.items() if kind != "pass")


class FaultProxy:
    """``127.0.0.1:<port>`` forwarding to ``127.0.0.1:<upstream_port>`` with planned faults."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.stats = Stats()
        self._plan: deque[tuple[str, float]] = deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, faults: list[tuple[str, float]]) -> None:
        """The faults for the next connections, in order (then they pass through). Open
        connections are closed first, so a client's next request meets the first fault
        rather than an idle keep-alive connection."""
        assert all(kind in FAULTS for kind, _ in faults), faults
        with self._lock:
            self._plan = deque(faults)
        asyncio.run_coroutine_threadsafe(self._drop_connections(), self._loop).result(10)

    async def _drop_connections(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _next_fault(self) -> tuple[str, float]:
        with self._lock:
            fault = self._plan.popleft() if self._plan else ("pass", 0.0)
            self.stats.connections += 1
            self.stats.faults[fault[0]] = self.stats.faults.get(fault[0], 0) + 1
        return fault

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        kind, arg = self._next_fault()
        try:
            if kind == "hang":
                while await reader.read(65536):
                    pass
                return
            if kind == "reset":
                await reader.read(1)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            limits = {"cut_request": (int(arg), None), "cut_response": (None, int(arg))}.get(
                kind, (None, None)
            )
            delay = arg if kind == "latency" else 0.0
            pumps = [
                asyncio.ensure_future(_pump(reader, up_writer, limits[0], delay)),
                asyncio.ensure_future(_pump(up_reader, writer, limits[1], delay)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                up_writer.close()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pump(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int | None, delay: float
) -> None:
    """Copy ``src`` to ``dst`` until EOF, or until ``limit`` bytes (then stop: the caller closes)."""
    sent = 0
    try:
        while True:
            chunk = await src.read(65536 if limit is None else max(1, min(65536, limit - sent)))
            if not chunk:
                return
            if delay:
                await asyncio.sleep(delay)
            dst.write(chunk)
            await dst.drain()
            sent += len(chunk)
            if limit is not None and sent >= limit:
                return
    except (ConnectionError, OSError):
        return
