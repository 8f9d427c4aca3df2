"""Batch inference over Parquet: streamed by row groups, on every core, resumable after a crash.

The input is cut into *units*: each row group of the input, split into slices of at
most ``batch_rows`` rows. Workers (a process pool by default, or Ray actors) load the
model once, read only their unit's row group, predict, and write the unit's rows
(input columns + predictions) to a part file under ``<output>.parts/``, under a
temporary name then renamed. A part on disk is a finished unit: after a crash
(even ``kill -9``) the same command skips those units and computes only the rest.
When every unit is done the parts are concatenated in input order into ``output``
(itself written under a temporary name and renamed) and the parts are removed.

Memory stays bounded whatever the file size: a worker holds one row group, the
coordinator one part at a time.

>>> result = predict_file("models:/churn@champion", "in.parquet", "out.parquet")  # doctest: +SKIP
>>> result.rows, result.row_groups, result.skipped                                 # doctest: +SKIP
(1000000, 16, 0)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loopml.config import Settings
from loopml.errors import Conflict, InvalidInput, LoopmlError
from loopml.serving.records import normalize_model_uri

if TYPE_CHECKING:
    import pyarrow as pa

    from loopml.models import LoadedModel

Executor = Literal["local", "process", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "process", "ray")
DEFAULT_BATCH_ROWS = 65_536
CODECS: tuple[str, ...] = ("snappy", "zstd", "lz4", "gzip", "brotli", "none")
LEDGER = "ledger.jsonl"
JOB = "job.json"
# Each worker gets one core: N workers with N BLAS threads each would oversubscribe the machine.
_THREAD_PINS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch job did: ``row_groups`` units written in all, ``skipped`` of them done
    by an earlier (interrupted) run, ``computed`` the unit indexes this run predicted."""

    output: Path
    rows: int
    row_groups: int
    skipped: int
    seconds: float
    computed: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "output": str(self.output), "computed": list(self.computed)}


@dataclass(frozen=True, slots=True)
class Unit:
    """Rows ``[offset, offset + length)`` of input row group ``row_group``; output row group ``index``."""

    index: int
    row_group: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything a worker needs, picklable (sent to processes and Ray actors)."""

    model_uri: str
    manifest_digest: str
    input: str
    parts: str
    columns: tuple[str, ...] | None
    tensor: bool
    method: str
    prediction_column: str
    predictions_only: bool
    trust_pickle: bool
    env: dict[str, str] = field(default_factory=dict)

    def part(self, unit: Unit) -> Path:
        return part_path(Path(self.parts), unit.index)


def part_path(parts: Path, index: int) -> Path:
    return parts / f"part-{index:06d}.parquet"


def parts_dir(output: Path) -> Path:
    """Where the unfinished job keeps its parts, ledger and lock: ``<output>.parts``."""
    return output.with_name(output.name + ".parts")


def predict_file(
    model_uri: str,
    input: str | Path,
    output: str | Path,
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    columns: list[str] | None = None,
    method: str = "predict",
    prediction_column: str = "prediction",
    predictions_only: bool = False,
    trust_pickle: bool = False,
    resume: bool = True,
    ray_address: str | None = None,
    progress: bool = False,
    compression: str = "snappy",
) -> BatchResult:
    """Predict every row of the Parquet file ``input`` with ``model_uri`` into ``output``.

    ``columns`` are fed to the model (default: the signature's columns, else all);
    the other input columns pass through to the output unless ``predictions_only``.
    ``executor`` is ``local`` (this process), ``process`` (a pool of ``workers``
    processes, default one per core) or ``ray`` (``ray_address``, else a local Ray).
    A re-run after a crash resumes; ``resume=False`` starts over. ``compression`` is the
    output's Parquet codec (snappy, zstd, lz4, gzip, none).

    >>> predict_file("churn@champion", "scores/in.parquet", "scores/out.parquet", workers=4)  # doctest: +SKIP
    BatchResult(output=PosixPath('scores/out.parquet'), rows=120000, row_groups=2, skipped=0, ...)
    """
    started = time.perf_counter()
    src, dest = Path(input).absolute(), Path(output).absolute()
    _check_args(src, dest, batch_rows, method, executor)
    if compression.lower() not in CODECS:
        raise InvalidInput(
            f"compression {compression!r} is not one of {', '.join(CODECS)}", details={"field": "compression"}
        )
    from loopml.models import load

    uri = normalize_model_uri(model_uri)
    model = load(uri, trust_pickle=trust_pickle)
    units = plan(src, batch_rows)
    spec = _spec(model, uri, src, dest, columns, method, prediction_column, predictions_only, trust_pickle)
    spec = replace(spec, env=worker_env(Settings.load()))  # the settings load() used, for the workers
    parts = Path(spec.parts)
    with _job_lock(parts, resume):
        _check_job(parts, _fingerprint(spec, src, batch_rows))
        todo = [u for u in units if not _finished(spec, u)]
        _seed_local(spec, model)
        workers = _worker_count(workers, len(todo))
        kind = executor or ("local" if workers == 1 or len(todo) <= 1 else "process")
        computed = _execute(kind, spec, todo, workers, ray_address, _tracker(units, todo, progress))
        rows = assemble(parts, units, dest, compression)
    shutil.rmtree(parts, ignore_errors=True)
    seconds = time.perf_counter() - started
    return BatchResult(dest, rows, len(units), len(units) - len(todo), seconds, tuple(sorted(computed)))


def _check_args(src: Path, dest: Path, batch_rows: int, method: str, executor: str | None) -> None:
    if not src.is_file():
        raise InvalidInput(f"input {src} does not exist or is not a file", details={"field": "input"})
    if src == dest:
        raise InvalidInput(
            f"output {dest} is the input file; choose another output path", details={"field": "output"}
        )
    if batch_rows < 1:
        raise InvalidInput(f"batch_rows must be >= 1, got {batch_rows}", details={"field": "batch_rows"})
    if method not in ("predict", "predict_proba"):
        raise InvalidInput(
            f"method {method!r} is not supported; use predict or predict_proba", details={"field": "method"}
        )
    if executor is not None and executor not in EXECUTORS:
        raise InvalidInput(
            f"executor {executor!r} is not one of {', '.join(EXECUTORS)}", details={"field": "executor"}
        )


def plan(src: Path, batch_rows: int) -> list[Unit]:
    """The units of work of ``src``: its row groups, cut into slices of ``batch_rows`` rows."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(src).metadata
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for what is not Parquet
        raise InvalidInput(
            f"input {src} is not a readable Parquet file: {exc}", details={"field": "input"}
        ) from None
    units: list[Unit] = []
    for rg in range(meta.num_row_groups):
        n = meta.row_group(rg).num_rows
        for offset in range(0, n, batch_rows):
            units.append(Unit(len(units), rg, offset, min(batch_rows, n - offset)))
    if not units:
        raise InvalidInput(f"input {src} has no rows to predict", details={"field": "input"})
    return units


def _spec(
    model: LoadedModel,
    uri: str,
    src: Path,
    dest: Path,
    columns: list[str] | None,
    method: str,
    prediction_column: str,
    predictions_only: bool,
    trust_pickle: bool,
) -> JobSpec:
    sig = model.signature
    tensor = sig is not None and sig.inputs.kind == "tensor"
    if columns is None and sig is not None and sig.inputs.kind == "columns":
        columns = [c.name for c in sig.inputs.columns]
    chosen = tuple(columns) if columns else None
    _check_columns(src, chosen)
    return JobSpec(
        model_uri=uri,
        manifest_digest=model.manifest_digest,
        input=str(src),
        parts=str(parts_dir(dest)),
        columns=chosen,
        tensor=tensor,
        method=method,
        prediction_column=prediction_column,
        predictions_only=predictions_only,
        trust_pickle=trust_pickle,
    )


def _check_columns(src: Path, columns: tuple[str, ...] | None) -> None:
    import pyarrow.parquet as pq

    present = pq.read_schema(src).names
    missing = [c for c in columns or () if c not in present]
    if missing:
        raise InvalidInput(
            f"input {src} lacks the column(s) {missing} the model takes; it has {present}",
            details={"field": "columns", "missing": missing},
        )


def worker_env(settings: Settings) -> dict[str, str]:
    """The ``LOOPML_*`` variables that make a worker see the same store as this process."""
    env = dict(_THREAD_PINS)
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value not in (None, ""):
            env[f"LOOPML_{f.name.upper()}"] = str(value)
    return env


def _fingerprint(spec: JobSpec, src: Path, batch_rows: int) -> dict[str, Any]:
    stat = src.stat()
    keep = ("model_uri", "manifest_digest", "input", "columns", "method", "prediction_column")
    return {
        **{k: getattr(spec, k) for k in keep},
        "columns": list(spec.columns or ()),
        "predictions_only": spec.predictions_only,
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "batch_rows": batch_rows,
    }


@contextmanager
def _job_lock(parts: Path, resume: bool) -> Iterator[None]:
    """One job per output at a time; the lock dies with the process, so a crash never leaves it held."""
    parts.mkdir(parents=True, exist_ok=True)
    with open(parts / "lock", "a+") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): run unlocked
            pass
        except OSError:
            raise Conflict(
                f"another job is writing {parts.name.removesuffix('.parts')} (lock {parts / 'lock'}); "
                "wait for it or choose another output",
                details={"field": "output"},
            ) from None
        if not resume:
            for old in parts.iterdir():
                if old.name != "lock":
                    old.unlink()
        yield


def _check_job(parts: Path, fingerprint: dict[str, Any]) -> None:
    path = parts / JOB
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
        if changed:
            raise Conflict(
                f"{parts} holds an unfinished job whose {', '.join(changed)} differ from this one; "
                "re-run the same command to resume it, or start over with --restart (resume=False)",
                details={"field": changed[0], "parts": str(parts)},
            )
        for stale in parts.glob(".*.tmp"):  # a unit a crash interrupted: it is computed again
            stale.unlink(missing_ok=True)
        return
    tmp = parts / f".{JOB}.tmp"
    tmp.write_text(json.dumps(fingerprint, indent=1))
    os.replace(tmp, path)


def _finished(spec: JobSpec, unit: Unit) -> bool:
    import pyarrow.parquet as pq

    path = spec.part(unit)
    if not path.exists():
        return False
    try:
        return bool(pq.ParquetFile(path).metadata.num_rows == unit.length)
    except Exception:  # unreadable: compute it again
        return False


def _worker_count(workers: int | None, units: int) -> int:
    if workers is not None and workers < 1:
        raise InvalidInput(f"workers must be >= 1, got {workers}", details={"field": "workers"})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(workers or cores, max(units, 1)))


# --- workers ------------------------------------------------------------------------------

_MODELS: dict[tuple[str, str], LoadedModel] = {}
_ROW_GROUP: dict[tuple[str, int], pa.Table] = {}


def init_worker(spec: JobSpec) -> None:
    """Process/actor start-up: the coordinator's store settings and one thread per worker."""
    os.environ.update(spec.env)
    with suppress(ImportError):  # numpy may already be loaded: cap its pools at run time too
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        threadpool_limits(1)


def _seed_local(spec: JobSpec, model: LoadedModel) -> None:
    _MODELS[(spec.model_uri, spec.manifest_digest)] = model


def _model(spec: JobSpec) -> LoadedModel:
    key = (spec.model_uri, spec.manifest_digest)
    if key not in _MODELS:
        from loopml.models import load

        # Pinned by digest: if the alias moved since the job started, the worker refuses to mix versions.
        _MODELS[key] = load(
            spec.model_uri, trust_pickle=spec.trust_pickle, manifest_digest=spec.manifest_digest
        )
    return _MODELS[key]


def _row_group(path: str, index: int) -> pa.Table:
    # Consecutive units usually share a row group: keep the last one read (and only that one).
    key = (path, index)
    if key not in _ROW_GROUP:
        import pyarrow.parquet as pq

        _ROW_GROUP.clear()
        _ROW_GROUP[key] = pq.ParquetFile(path).read_row_group(index)
    return _ROW_GROUP[key]


def run_unit(spec: JobSpec, unit: Unit) -> tuple[int, int, float]:
    """Predict one unit and write its part atomically; returns ``(unit index, rows, seconds)``."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    rows = _row_group(spec.input, unit.row_group).slice(unit.offset, unit.length)
    table = predict_table(_model(spec), rows, spec)
    final = spec.part(unit)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    # Parts are read once, by assemble(): neither compression nor dictionaries to pay for twice.
    pq.write_table(table, tmp, compression="none", use_dictionary=False, row_group_size=max(unit.length, 1))
    os.replace(tmp, final)
    return unit.index, table.num_rows, time.perf_counter() - start


def predict_table(model: LoadedModel, rows: pa.Table, spec: JobSpec) -> pa.Table:
    """``rows`` with the model's predictions appended (or the predictions alone)."""
    import pyarrow as pa

    frame = (rows.select(list(spec.columns)) if spec.columns else rows).to_pandas()
    data: Any = frame.to_numpy() if spec.tensor else frame
    predicted = getattr(model, spec.method)(data)
    out = prediction_columns(predicted, spec.prediction_column, rows.num_rows)
    if spec.predictions_only:
        return pa.table(out)
    clash = [name for name in out if name in rows.column_names]
    if clash:
        raise InvalidInput(
            f"prediction column(s) {clash} already exist in the input; choose another "
            "--prediction-column or pass --predictions-only",
            details={"field": "prediction_column"},
        )
    table = rows.replace_schema_metadata(None)  # pandas metadata would not describe the new columns
    for name, values in out.items():
        table = table.append_column(name, values)
    return table


def prediction_columns(predicted: Any, name: str, n: int) -> dict[str, pa.Array]:
    """Predictions as named Arrow columns: 1-D -> ``name``; (n, k) -> ``name_0`` .. ``name_k-1``;
    a DataFrame keeps its column names."""
    import numpy as np
    import pyarrow as pa

    if hasattr(predicted, "columns") and hasattr(predicted, "iloc"):  # a pandas DataFrame
        table = pa.Table.from_pandas(predicted, preserve_index=False)
        cols = {str(c): table.column(i).combine_chunks() for i, c in enumerate(table.column_names)}
    else:
        arr = np.asarray(predicted)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 1:
            cols = {name: pa.array(arr)}
        elif arr.ndim == 2:
            cols = {f"{name}_{j}": pa.array(arr[:, j]) for j in range(arr.shape[1])}
        else:
            raise InvalidInput(
                f"the model returned predictions of shape {arr.shape}; batch output takes 1-D or 2-D",
                details={"field": "prediction"},
            )
    if any(len(c) != n for c in cols.values()):
        raise InvalidInput(
            f"the model returned {min(len(c) for c in cols.values())} predictions for {n} rows",
            details={"field": "prediction"},
        )
    return cols


# --- executors ----------------------------------------------------------------------------

Tracker = Callable[[int, int], None]


def _execute(
    kind: str, spec: JobSpec, todo: list[Unit], workers: int, ray_address: str | None, track: Tracker
) -> list[int]:
    if not todo:
        return []
    ledger = _Ledger(Path(spec.parts) / LEDGER)
    done: list[int] = []

    def finished(index: int, rows: int, seconds: float) -> None:
        ledger.write(index, rows, seconds)
        done.append(index)
        track(index, rows)

    try:
        if kind == "local":
            for unit in todo:
                finished(*run_unit(spec, unit))
        elif kind == "process":
            _run_processes(spec, todo, workers, finished)
        else:
            from loopml.serving._batch_ray import run_on_ray

            run_on_ray(spec, todo, workers, ray_address, finished)
    finally:
        ledger.close()
        getattr(track, "close", lambda: None)()
    return done


def _run_processes(spec: JobSpec, todo: list[Unit], workers: int, finished: Callable[..., None]) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # Not fork: the coordinator holds threads (Arrow's pool, the progress bar) that fork would copy
    # mid-state. A forkserver imports the heavy modules once and forks each worker from that clean
    # process, instead of every spawned worker importing them again.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(_preload())
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(spec,)) as pool:
        pending = {pool.submit(run_unit, spec, unit) for unit in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise _worker_error(error) from None
                finished(*future.result())


def _preload() -> list[str]:
    """What workers import anyway: this module, the store, and the model libraries loading it took."""
    import sys

    libraries = {"sklearn", "skops", "xgboost", "lightgbm", "onnxruntime", "cloudpickle"}
    loaded = sorted(name for name in sys.modules if name in libraries)
    return ["loopml.serving.batch", "loopml.sdk", "loopml.models", "pandas", "pyarrow.parquet", *loaded]


def _worker_error(error: BaseException) -> LoopmlError:
    if isinstance(error, LoopmlError):
        return error
    return LoopmlError(
        f"a batch worker failed: {type(error).__name__}: {error}; finished row groups are kept, "
        "re-run the same command to resume",
        details={"field": "model"},
    )


class _Ledger:
    """Append-only record of the units each run computed (the parts on disk are the truth)."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a")  # noqa: SIM115 (closed by close(), after the executor)
        self.pid = os.getpid()

    def write(self, index: int, rows: int, seconds: float) -> None:
        line = {"unit": index, "rows": rows, "seconds": round(seconds, 4), "pid": self.pid, "ts": time.time()}
        self.handle.write(json.dumps(line) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_ledger(parts: Path) -> list[dict[str, Any]]:
    """The ledger of an unfinished job (empty once the job completed and its parts were removed)."""
    path = parts / LEDGER
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tracker(units: list[Unit], todo: list[Unit], progress: bool) -> Tracker:
    if not progress:
        return lambda index, rows: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    total = sum(u.length for u in units)
    task = bar.add_task("rows", total=total, completed=total - sum(u.length for u in todo))
    bar.start()

    class _Track:
        def __call__(self, index: int, rows: int) -> None:
            bar.advance(task, rows)

        def close(self) -> None:
            bar.stop()

    return _Track()


# --- assembly -----------------------------------------------------------------------------


def assemble(parts: Path, units: list[Unit], dest: Path, compression: str = "snappy") -> int:
    """Concatenate the parts in unit order into ``dest`` (atomically); returns the row count."""
    import pyarrow.parquet as pq

    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for unit in units:
            table = pq.read_table(part_path(parts, unit.index))
            if writer is None:
                dictionary = _dictionary_columns(table.schema)
                writer = pq.ParquetWriter(
                    tmp, table.schema, compression=compression, use_dictionary=dictionary
                )
            elif table.schema != writer.schema:
                table = _conform(table, writer.schema, unit)
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
            rows += table.num_rows
        if writer is not None:
            writer.close()
            writer = None
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return rows


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    # Dictionary encoding pays for strings and categories, and costs ~5x the write time on
    # floats (nearly all distinct): the columns a model reads and writes are mostly floats.
    import pyarrow as pa

    return [f.name for f in schema if not pa.types.is_floating(f.type)]


def _conform(table: pa.Table, schema: pa.Schema, unit: Unit) -> pa.Table:
    try:
        return table.select(schema.names).cast(schema)
    except Exception:
        raise InvalidInput(
            f"row group {unit.index} predicted columns {table.schema} but the first had {schema}; "
            "the model must return the same columns and types for every batch",
            details={"field": "prediction"},
        ) from None
