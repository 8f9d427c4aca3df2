"""``loopml stream``: predict a stream of messages in micro-batches, at-least-once.

    $ loopml stream models:/churn@champion \\
        --source "redis://127.0.0.1:6379/requests?group=scoring&consumer=w1" \\
        --sink redis://127.0.0.1:6379/predictions --batch-size 128 --max-latency-ms 20

The model and the stream clients are imported inside the command, so ``loopml --help``
stays fast.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from loopml.serving.stream import StreamRunner, StreamStats

PROGRESS_EVERY_S = 10.0
_URL_HELP = "redis://HOST:PORT/STREAM?group=G&consumer=C (Redis Streams) or kafka://BROKER:PORT/TOPIC?group=G"


def stream(
    model_uri: Annotated[str, typer.Argument(help="Model to predict with, e.g. models:/churn@champion.")],
    source: Annotated[str, typer.Option("--source", help=f"Where messages come from: {_URL_HELP}.")],
    sink: Annotated[str, typer.Option("--sink", help="Where predictions go (same URL forms).")],
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Largest micro-batch.")] = 64,
    max_latency_ms: Annotated[
        float, typer.Option(min=0, help="Longest a message waits for its batch to fill.")
    ] = 50.0,
    max_messages: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many messages (default: run until stopped).")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(min=0, help="Stop after this many seconds without a message.")
    ] = None,
    trust_pickle: Annotated[
        bool, typer.Option(help="Allow a pickle-based model (only if you trust who logged it).")
    ] = False,
) -> None:
    """Consume SOURCE, predict with MODEL_URI, write to SINK; acknowledge only after the write.

    Messages read but not acknowledged before a crash are processed again on restart (keep the
    consumer name); each output carries the source message id as source_id. SIGTERM or Ctrl+C
    finishes the batch in hand, then exits.
    """
    from loopml.serving.stream import StreamRunner, open_sink, open_source

    src = open_source(source)
    try:
        out = open_sink(sink)
        try:
            runner = StreamRunner(
                model_uri,
                src,
                out,
                batch_size=batch_size,
                max_latency_ms=max_latency_ms,
                max_messages=max_messages,
                idle_timeout_s=idle_timeout,
                trust_pickle=trust_pickle,
                on_batch=_progress(),
            )
            version = f" (version {runner.model_version})" if runner.model_version else ""
            typer.echo(
                f"streaming {model_uri}{version}: {src.describe()} -> {out.describe()} (Ctrl+C to stop)",
                err=True,
            )
            _run(runner)
        finally:
            out.close()
    finally:
        src.close()


def _run(runner: StreamRunner) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        typer.echo(f"{signal.Signals(signum).name}: finishing the current batch", err=True)
        runner.stop()
        # A second signal is not ignored: it interrupts the way it normally would.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = runner.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo(f"done: {stats.summary()}", err=True)


def _progress() -> Callable[[StreamStats], None]:
    last = [time.monotonic()]

    def report(stats: StreamStats) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            typer.echo(f"progress: {stats.summary()}", err=True)

    return report
