"""One step execution as a self-contained task: what every executor runs, in any process.

A task carries the step function, its arguments (refs of stored values, or literal
parameters) and the artifact root; :func:`execute_task` reads the inputs, runs the function
with its stdout/stderr captured, retries with exponential backoff, and stores the outputs
and the logs as blobs. It needs no database, so a pool process or a Ray worker runs it as
is; the run's bookkeeping stays with the caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loopml.errors import InvalidInput
from loopml.pipelines.dsl import StepContext
from loopml.pipelines.values import Ref, json_bytes, load_value, store_value
from loopml.store.blobs import BlobStore, open_blob_store

_stores: dict[str, BlobStore] = {}
_capturing = threading.RLock()


def blob_store(root: str) -> BlobStore:
    """One blob store per root per process (a worker reuses it across tasks)."""
    if root not in _stores:
        _stores[root] = open_blob_store(root)
    return _stores[root]


@dataclass
class Task:
    """What to run: ``args`` maps a parameter to ("ref", ref), ("refs", [ref]) or ("value", literal)."""

    key: str
    fn: Callable[..., Any]
    args: dict[str, tuple[str, Any]]
    n_outputs: int
    artifact_root: str
    retries: int = 0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    context_param: str | None = None


@dataclass
class TaskResult:
    """The outcome: output refs on success, else the final traceback; logs are blob digests."""

    key: str
    ok: bool
    outputs: list[Ref] = field(default_factory=list)
    attempts: int = 0
    logs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0


def _arguments(blobs: BlobStore, args: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (kind, payload) in args.items():
        if kind == "ref":
            out[name] = load_value(blobs, payload)
        elif kind == "refs":
            out[name] = [load_value(blobs, r) for r in payload]
        else:
            out[name] = payload
    return out


def _outputs(blobs: BlobStore, task: Task, value: Any) -> list[Ref]:
    if task.n_outputs == 1:
        return [store_value(blobs, value, what=f"the output of step {task.key!r}")]
    if not isinstance(value, tuple) or len(value) != task.n_outputs:
        raise InvalidInput(
            f"step {task.key!r} is annotated to return {task.n_outputs} values but returned "
            f"{type(value).__name__}; return a tuple of {task.n_outputs}",
            details={"step": task.key},
        )
    return [store_value(blobs, v, what=f"output {i} of step {task.key!r}") for i, v in enumerate(value)]


def execute_task(task: Task) -> TaskResult:
    """Run the task with retries; never raises for a failure of the step itself."""
    blobs = blob_store(task.artifact_root)
    result = TaskResult(task.key, ok=False, started_at=time.time())
    out, err = io.StringIO(), io.StringIO()
    delay = task.backoff_s
    for attempt in range(1, task.retries + 2):
        result.attempts = attempt
        if attempt > 1:
            err.write(f"--- attempt {attempt} of {task.retries + 1} after {delay:.3g}s ---\n")
        ctx = StepContext(task.key, attempt)
        try:
            kwargs = _arguments(blobs, task.args)
            if task.context_param:
                kwargs[task.context_param] = ctx
            # sys.stdout is process-wide: steps of concurrent runs in one process (the server's
            # scheduler threads) take turns, so each capture restores what it replaced.
            with _capturing, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                value = task.fn(**kwargs)
            result.outputs = _outputs(blobs, task, value)
            result.ok, result.error = True, None
            if task.context_param and (ctx.metrics or ctx.params or ctx.tags):
                data = json_bytes(ctx.to_dict())
                result.logs["context"] = blobs.put_hashed(data, hashlib.sha256(data).hexdigest())[0]
            break
        except Exception:
            result.error = traceback.format_exc()
            err.write(result.error)
        if attempt <= task.retries:
            time.sleep(delay)
            delay = min(delay * 2, task.max_backoff_s)
    for name, text in (("stdout", out.getvalue()), ("stderr", err.getvalue()), ("traceback", result.error)):
        if text:
            data = text.encode()
            result.logs[name] = blobs.put_hashed(data, hashlib.sha256(data).hexdigest())[0]
    result.finished_at = time.time()
    return result
