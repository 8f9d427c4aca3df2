"""The Ray executor of :mod:`loopml.serving.batch`: the same units, run by Ray actors.

Each actor loads the model once (like a pool process) and writes its units' parts to
the job's ``<output>.parts`` directory, so on a multi-node cluster the input and the
output must be on a filesystem every node sees (NFS, a mounted bucket). Ray is
imported only here, only when ``executor="ray"`` is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loopml.errors import InvalidInput, LoopmlError
from loopml.serving.batch import JobSpec, Unit, init_worker, run_unit


class _Worker:
    """A Ray actor: set up like a pool process, then run units one at a time."""

    def __init__(self, spec: JobSpec) -> None:
        init_worker(spec)
        self.spec = spec

    def run(self, unit: Unit) -> tuple[int, int, float]:
        return run_unit(self.spec, unit)


def run_on_ray(
    spec: JobSpec,
    todo: list[Unit],
    workers: int,
    address: str | None,
    finished: Callable[[int, int, float], None],
) -> None:
    """Run ``todo`` on ``workers`` actors of the cluster at ``address`` (else a local Ray)."""
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, address, workers)
    try:
        from ray.util import ActorPool

        actor = ray.remote(num_cpus=1)(_Worker).options(runtime_env={"env_vars": dict(spec.env)})
        pool = ActorPool([actor.remote(spec) for _ in range(workers)])
        results = pool.map_unordered(lambda a, unit: a.run.remote(unit), todo)
        for index, rows, seconds in results:
            finished(index, rows, seconds)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
        if isinstance(cause, LoopmlError):
            raise cause from None
        raise LoopmlError(
            f"a Ray batch worker failed: {cause}; finished row groups are kept, re-run to resume",
            details={"field": "model"},
        ) from None
    finally:
        if started_here:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidInput(
            "executor 'ray' needs Ray: pip install 'loopml[ray]'", details={"field": "executor"}
        ) from None
    return ray


def _init(ray: Any, address: str | None, workers: int) -> None:
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # a private local instance sized to the job, without the dashboard's extra processes
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
