"""Where step tasks run: in process (default), a local process pool, or Ray.

Chosen by name (``LOOPML_EXECUTOR`` or ``executor=``): ``inprocess``, ``process`` or
``process:N`` (N worker processes, BLAS pinned to one thread each), ``ray`` (a private
local Ray instance, dashboard off, shut down after the run) or ``ray://HOST:PORT`` (a
running cluster; its workers must see the artifact root). Ray is imported only when chosen
and never started unless asked for. Tasks cross processes with cloudpickle; functions of
the user's own modules are pickled by value, so workers need not import them.

>>> with open_executor("inprocess") as ex:  # doctest: +SKIP
...     future = ex.submit(task)
"""

from __future__ import annotations

import abc
import os
import sys
from concurrent.futures import Future
from concurrent.futures import ProcessPoolExecutor as _Pool
from types import TracebackType
from typing import Any

from loopml.errors import InvalidInput
from loopml.pipelines.hashing import is_project_module
from loopml.pipelines.tasks import Task, TaskResult, execute_task

_PINNED = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


class Executor(abc.ABC):
    """Subclasses implement :meth:`submit` (start a task, return a future of its
    :class:`TaskResult`) and may override :meth:`close`; ``slots`` is how many tasks may run
    at once."""

    name: str = ""
    slots: int = 1

    @abc.abstractmethod
    def submit(self, task: Task) -> Future[TaskResult]: ...

    def close(self) -> None:  # noqa: B027 - optional hook: most executors hold nothing
        """Release workers (the default holds none)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Runs each task right away in this process and thread."""

    name = "inprocess"

    def submit(self, task: Task) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        try:
            future.set_result(execute_task(task))
        except BaseException as exc:  # a bug outside the step (e.g. storage): surface it
            future.set_exception(exc)
        return future


def _pin_threads() -> None:
    """One BLAS/OpenMP thread per worker (several workers share the cores)."""
    for var in _PINNED:
        os.environ[var] = "1"
    if "numpy" in sys.modules:  # loaded by the re-imported main script before these took effect
        try:
            from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
        except ImportError:
            return
        threadpool_limits(1)


def _run_pickled(payload: bytes) -> TaskResult:
    import cloudpickle

    task: Task = cloudpickle.loads(payload)
    return execute_task(task)


def _dumps(task: Task) -> bytes:
    import cloudpickle

    module = sys.modules.get(getattr(task.fn, "__module__", "") or "")
    if module is not None and module.__name__ != "__main__" and is_project_module(module):
        cloudpickle.register_pickle_by_value(module)
    return bytes(cloudpickle.dumps(task))


class ProcessPoolExecutor(Executor):
    """``workers`` spawned processes (no fork: safe beside the server's threads)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing

        self.slots = workers
        self.name = f"process:{workers}"
        self._pool = _Pool(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_pin_threads)

    def submit(self, task: Task) -> Future[TaskResult]:
        return self._pool.submit(_run_pickled, _dumps(task))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _check_ray_client(ray: Any, address: str) -> None:
    """A ``ray://`` executor needs the Ray Client (grpcio) and a process not already on a local Ray
    (its tasks would silently run there instead of on ``address``)."""
    import importlib.util

    if ray.is_initialized() and not ray.util.client.ray.is_connected():
        raise InvalidInput(
            f"executor {address!r}: this process already runs a local Ray instance; "
            "call ray.shutdown() first or use executor 'ray'",
            details={"field": "executor"},
        )
    if importlib.util.find_spec("grpc") is None:
        raise InvalidInput(
            f"executor {address!r} needs the Ray Client: pip install 'ray[client]'",
            details={"field": "executor"},
        )


class RayExecutor(Executor):
    """Tasks as Ray remote functions (one CPU each) on a local instance or ``ray://`` cluster."""

    def __init__(self, address: str | None, workers: int) -> None:
        try:
            import ray
        except ImportError:
            raise InvalidInput(
                "executor 'ray' needs Ray: pip install 'loopml[ray]'", details={"field": "executor"}
            ) from None
        self._ray: Any = ray
        self.name = address or "ray"
        self.slots = workers
        if address:
            _check_ray_client(ray, address)
        self._started_here = not ray.is_initialized()
        env = {"env_vars": {var: "1" for var in _PINNED}}
        if self._started_here:
            if address:
                ray.init(address=address, log_to_driver=False, runtime_env=env)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env=env)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_run_pickled)
        self.slots = max(1, int(self._ray.cluster_resources().get("CPU", workers)))

    def submit(self, task: Task) -> Future[TaskResult]:
        future: Future[TaskResult] = self._remote.remote(_dumps(task)).future()
        return future

    def close(self) -> None:
        if self._started_here:
            self._ray.shutdown()


def open_executor(spec: str | None) -> Executor:
    """The executor ``spec`` names (see the module docstring); ``None`` is in-process."""
    spec = (spec or "inprocess").strip()
    if spec in ("inprocess", "local"):
        return InProcessExecutor()
    if spec == "process" or spec.startswith("process:"):
        count = spec.partition(":")[2] or str(os.cpu_count() or 1)
        if not count.isdigit() or int(count) < 1:
            raise InvalidInput(
                f"executor {spec!r}: write process:N with N >= 1", details={"field": "executor"}
            )
        return ProcessPoolExecutor(int(count))
    if spec == "ray" or spec.startswith("ray:"):
        workers = spec.partition(":")[2]
        if workers.isdigit():
            return RayExecutor(None, int(workers))
        return RayExecutor(None, os.cpu_count() or 1) if spec == "ray" else RayExecutor(spec, 1)
    raise InvalidInput(
        f"unknown executor {spec!r}; use inprocess, process[:N], ray[:N] or ray://HOST:PORT",
        details={"field": "executor"},
    )
