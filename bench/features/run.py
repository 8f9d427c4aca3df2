"""Feature-store benchmark: loopml vs Feast (latest, in its own venv) on the same generated data.

Data (seeded, ``_data.py``, cached under ``.bench/features-data/scale-S/``): one entity with 100k
ids, a feature view of 5 float64 features with 10M rows over 30 days (event + created timestamps),
ttl 2 days; an entity dataframe of 1M rows with ids that have nothing inside the ttl window,
duplicate rows and unknown ids.  ``--scale 0.01`` divides every size by 100.

Contenders, each in a FRESH child process (``_loopml.py`` in this venv, ``_feast.py`` in
``.bench/feast-venv``, made with ``uv venv`` + ``uv pip install "feast[duckdb]"`` when missing):

- historical retrieval of the 1M entity rows: the bare DuckDB floor (one query: created-timestamp
  dedup, ASOF join, ttl), loopml ``get_historical_features``, Feast with its ``duckdb`` offline store
  and with its default ``file`` store (run last and once: ~13 GB at full size).  The timed span
  starts after the imports and the registry set-up, reads the entity Parquet file, and ends with the
  result in memory as an Arrow table;
- materialization of the 30 days into the SQLite online store (Feast: ``materialize``; loopml:
  ``materialize``), then, after the source grew by one day, the incremental one;
- online lookups of 1 and 100 entities (2% unknown ids): in process, then over HTTP (``loopml
  server`` ``POST /api/v1/features/online``; ``feast serve`` ``POST /get-online-features``).

CPU is user + system time of the child (all its threads and reaped children) in the timed span,
from ``os.times()``; peak RSS is the child's ``ru_maxrss`` from ``os.wait4`` (the data is written by
a separate process, so the parent stays small and cannot inflate it).  Figures are medians over
``--repeat`` runs.  The results are compared in another child: loopml's historical result must
equal Feast DuckDB's (row count, matched count, every value, after sorting by ``row_id``); the
rows Feast's ``file`` store dropped are counted.

Targets (issue 6): CPU >= 2x less than Feast DuckDB and >= 10x less than Feast file; within 1.5x
of the floor's CPU; peak RSS <= Feast DuckDB's; materialization >= 5x faster than Feast's (first
and incremental, wall time); online p99 <= 1 ms in process and <= 3 ms over HTTP for one entity.

    .venv/bin/python bench/features/run.py --scale 0.01             # a quick run
    .venv/bin/python bench/features/run.py --json features.json     # full size
    .venv/bin/python bench/features/run.py --skip-feast-file        # repeat runs without the 13 GB one
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

import _http
import _report
from _common import (
    BENCH_DIR,
    HOST,
    BenchError,
    Server,
    ensure_venv,
    free_port,
    git,
    median,
    peer_venv,
    pinned_env,
    run_child,
    venv_package_version,
    write_json,
)
from _data import ensure_data, sizes
from _spec import DAY_US, FEATURES, START_US

HERE = Path(__file__).resolve().parent
FEAST_VENV = peer_venv("feast")
FEAST_PY = FEAST_VENV / "bin" / "python"
FEAST_SPEC = "feast[duckdb]"
LOOPML_PY = Path(sys.executable)
ENV = pinned_env(FEAST_USAGE="False")
REFS = [f"stats:{f}" for f in FEATURES]


def ensure_feast_venv() -> str:
    """Create ``.bench/feast-venv`` with the latest Feast unless it exists; return its version."""
    ensure_venv(FEAST_VENV, [FEAST_SPEC])
    found = venv_package_version(FEAST_VENV, "feast")
    if found is None:
        raise BenchError(f"{FEAST_VENV} has no feast: remove that folder and run again to recreate it")
    return found


def make_data(scale: float) -> Path:
    """The data folder for ``scale``, written by a process of its own (see the module docstring)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        folder: Path = pool.apply(ensure_data, (BENCH_DIR / "features-data", scale))
    return folder


def contender(label: str, argv: Sequence[str], logs: Path, home: Path | None = None) -> dict[str, object]:
    """Run one contender; its JSON answer plus ``peak_rss_mb`` and the whole process's CPU.

    ``home`` is the ``LOOPML_HOME`` of a loopml child (its registry, online store and push log).
    """
    log = logs / f"{label}.log"
    env = ENV if home is None else {**ENV, "LOOPML_HOME": str(home)}
    with log.open("wb") as err:
        done = run_child(argv, env=env, cwd=HERE, stderr=err)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BenchError(f"{label} failed (exit {done.returncode}):\n{tail}")
    result: dict[str, object] = done.last_json()
    result["peak_rss_mb"] = done.peak_rss_mb
    result["process_cpu_s"] = done.cpu_s
    print(f"  {label}: {_report.brief(result)}", flush=True)
    return result


def median_of(runs: list[dict[str, object]]) -> dict[str, object]:
    """Per numeric figure (nested ones too), the median over runs; other values from the last run."""
    merged: dict[str, object] = {}
    for key, last in runs[-1].items():
        values = [run[key] for run in runs]
        if isinstance(last, dict):
            merged[key] = median_of(values)  # type: ignore[arg-type]
        elif isinstance(last, int | float) and not isinstance(last, bool):
            merged[key] = median(values)  # type: ignore[arg-type]
        else:
            merged[key] = last
    if len(runs) > 1:
        merged["runs"] = len(runs)
    return merged


def historical(data: Path, out: Path, repeat: int, with_feast: bool) -> dict[str, object]:
    runs: dict[str, list[dict[str, object]]] = {}
    for rep in range(repeat):
        print(f"historical retrieval, run {rep + 1}/{repeat}", flush=True)
        contenders = [
            ("floor", [str(LOOPML_PY), "_loopml.py", "floor", str(data), str(out / "floor.parquet")]),
            ("loopml", [str(LOOPML_PY), "_loopml.py", "hist", str(data), str(out / "loopml.parquet")]),
        ]
        if with_feast:
            work = _fresh(data / "work" / "feast-hist-duckdb")
            argv = [
                str(FEAST_PY),
                "_feast.py",
                "hist",
                "duckdb",
                str(data),
                str(out / "feast_duckdb.parquet"),
            ]
            contenders.append(("feast_duckdb", [*argv, str(work)]))
        for label, argv in contenders:
            home = _fresh(data / "work" / "loopml-hist") if label == "loopml" else None
            runs.setdefault(label, []).append(contender(f"hist-{label}", argv, out, home))
    return {label: median_of(found) for label, found in runs.items()}


def feast_file(data: Path, out: Path) -> dict[str, object]:
    print("historical retrieval, Feast file offline store (once)", flush=True)
    work = _fresh(data / "work" / "feast-hist-file")
    argv = [str(FEAST_PY), "_feast.py", "hist", "file", str(data), str(out / "feast_file.parquet"), str(work)]
    return contender("hist-feast_file", argv, out)


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def online(data: Path, out: Path, repeat: int, with_feast: bool) -> dict[str, object]:
    """Materialization and in-process lookups; the last run's stores stay for the HTTP servers."""
    runs: dict[str, list[dict[str, object]]] = {}
    for rep in range(repeat):
        print(f"materialization and in-process lookups, run {rep + 1}/{repeat}", flush=True)
        home = _fresh(data / "work" / "loopml-home")
        argv = [str(LOOPML_PY), "_loopml.py", "online", str(data), str(home), str(out / "online_loopml.json")]
        runs.setdefault("loopml", []).append(contender("online-loopml", argv, out, home))
        if with_feast:
            repo = _fresh(data / "work" / "feast-repo")
            argv = [
                str(FEAST_PY),
                "_feast.py",
                "online",
                str(data),
                str(repo),
                str(out / "online_feast.json"),
            ]
            runs.setdefault("feast", []).append(contender("online-feast", argv, out))
    return {label: median_of(found) for label, found in runs.items()}


@dataclass(frozen=True)
class HttpServer:
    """A feature server to start, where to ask it, and how to read its answer."""

    server: Server
    path: str
    body: Callable[[list[int]], object]
    count: Callable[[Any], int]  # how many entities an answer holds values for


def _servers(data: Path, out: Path, with_feast: bool) -> list[HttpServer]:
    home, port = data / "work" / "loopml-home", free_port()
    now = START_US + 31 * DAY_US  # the same "now" as the in-process lookups
    argv = [str(LOOPML_PY.parent / "loopml"), "server", "--host", HOST, "--port", str(port)]
    loopml = Server("loopml", argv, {**ENV, "LOOPML_HOME": str(home)}, out / "http-loopml.log", port, home)
    servers = [
        HttpServer(
            loopml,
            "/api/v1/features/online",
            lambda batch: {"entities": {"entity_id": batch}, "features": REFS, "now": now},
            lambda doc: len(doc["values"]["f0"]),
        )
    ]
    if with_feast:
        repo, port = data / "work" / "feast-repo", free_port()
        argv = [str(FEAST_VENV / "bin" / "feast"), "-c", str(repo), "serve", "-h", HOST, "-p", str(port)]
        argv += ["--no-access-log", "--max-requests", "0", "--max-requests-jitter", "0"]
        servers.append(
            HttpServer(
                Server("feast", argv, ENV, out / "http-feast.log", port, repo),
                "/get-online-features",
                lambda batch: {"entities": {"entity_id": batch}, "features": REFS},
                lambda doc: len(doc["results"][-1]["values"]),
            )
        )
    return servers


def http(data: Path, out: Path, with_feast: bool) -> dict[str, object]:
    """Online lookups over HTTP against ``loopml server`` and ``feast serve`` on the stores just built."""
    ids = sizes_of(data)["ids"]
    found: dict[str, object] = {}
    for spec in _servers(data, out, with_feast):
        label = spec.server.label
        print(f"online lookups over HTTP: {label}", flush=True)
        try:
            with _http.running(spec.server, "/health") as pid:
                url = spec.server.base_url + spec.path
                found[label] = _http.lookups(url, ids, spec.body, spec.count, pid)
        except _http.Skipped as exc:
            found[label] = {"skipped": str(exc)}
            print(f"  {label} over HTTP skipped: {exc}", flush=True)
    return found


def sizes_of(data: Path) -> dict[str, int]:
    meta = json.loads((data / "meta.json").read_text())
    return {k: int(meta[k]) for k in ("ids", "rows", "entity_rows")}


def compare(data: Path, out: Path) -> dict[str, object]:
    argv = [str(LOOPML_PY), "_compare.py", str(out), str(data)]
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, cwd=HERE, check=False, timeout=1800)
    if done.returncode != 0:  # the figures are still worth printing: say why there is no verdict
        print(f"comparing the results failed:\n{done.stderr[-3000:]}", flush=True)
        return {"error": done.stderr[-3000:]}
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def provenance() -> dict[str, object]:
    """The commit measured and the feature-store files that differed from it (the venv runs the tree)."""
    return {
        "git_head": git("rev-parse", "--short", "HEAD"),
        "dirty_features_files": git("status", "--short", "src/loopml/features").splitlines(),
        "nproc": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="data size factor (default 1: 10M rows)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender, medians reported")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--skip-feast-file", action="store_true", help="skip Feast's file offline store")
    parser.add_argument("--no-feast", action="store_true", help="loopml and the floor only (no venv needed)")
    parser.add_argument("--no-http", action="store_true", help="skip the lookups over HTTP")
    args = parser.parse_args()
    with_feast = not args.no_feast
    report: dict[str, object] = {"scale": args.scale, "sizes": sizes(args.scale), "repeat": args.repeat}
    report["feast_version"] = ensure_feast_venv() if with_feast else None
    report["provenance"] = provenance()
    data = make_data(args.scale)
    out = _fresh(data / "out")
    load: dict[str, float] = {}
    report["load_1min"] = load  # latency percentiles mean little on a machine busy with other work
    load["historical"] = os.getloadavg()[0]
    report["historical"] = historical(data, out, args.repeat, with_feast)
    load["online"] = os.getloadavg()[0]
    report["online"] = online(data, out, args.repeat, with_feast)
    load["http"] = os.getloadavg()[0]
    report["http"] = {} if args.no_http else http(data, out, with_feast)
    load["end"] = os.getloadavg()[0]
    if with_feast and not args.skip_feast_file:
        report["historical"]["feast_file"] = feast_file(data, out)  # type: ignore[index]
    report["comparison"] = compare(data, out)
    report["targets"] = _report.targets(report)
    _report.show(report)
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
