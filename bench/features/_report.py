"""The feature-store benchmark's tables and its targets (issue 6), from the figures ``run.py`` gathered."""

from __future__ import annotations

from typing import Any

from _common import ratio

Report = dict[str, Any]


def brief(result: Report) -> str:
    """One line per child run, printed as it finishes."""
    parts = []
    for name in ("hist", "materialize", "incremental"):
        if f"{name}_wall_s" in result:
            parts.append(
                f"{name} {result[f'{name}_wall_s']:.2f} s wall / {result[f'{name}_cpu_s']:.2f} s cpu"
            )
    parts.append(f"peak {result['peak_rss_mb']:.0f} MB")
    return ", ".join(parts)


def _get(report: Report, *path: str) -> Any:
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _target(name: str, value: float | None, op: str, limit: float, unit: str = "x") -> Report:
    ok = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"target": name, "value": value, "op": op, "limit": limit, "unit": unit, "pass": ok}


def targets(report: Report) -> list[Report]:
    """Each target of the issue with the figure it is judged on and PASS/FAIL (None: not measured)."""
    cpu = {
        k: _get(report, "historical", k, "hist_cpu_s")
        for k in ("loopml", "floor", "feast_duckdb", "feast_file")
    }
    peak = {k: _get(report, "historical", k, "peak_rss_mb") for k in ("loopml", "feast_duckdb")}
    mat = {
        (who, step): _get(report, "online", who, f"{step}_wall_s")
        for who in ("loopml", "feast")
        for step in ("materialize", "incremental")
    }
    equal = _get(report, "comparison", "historical", "feast_duckdb", "equal")
    online_equal = _get(report, "comparison", "online", "equal")
    return [
        _target("historical CPU: Feast DuckDB / loopml", ratio(cpu["feast_duckdb"], cpu["loopml"]), ">=", 2),
        _target("historical CPU: Feast file / loopml", ratio(cpu["feast_file"], cpu["loopml"]), ">=", 10),
        _target("historical CPU: loopml / DuckDB ASOF floor", ratio(cpu["loopml"], cpu["floor"]), "<=", 1.5),
        _target(
            "historical peak RSS: loopml / Feast DuckDB",
            ratio(peak["loopml"], peak["feast_duckdb"]),
            "<=",
            1,
        ),
        _target(
            "historical result == Feast DuckDB's", None if equal is None else float(equal), ">=", 1, "bool"
        ),
        _target(
            "materialize wall: Feast / loopml",
            ratio(mat["feast", "materialize"], mat["loopml", "materialize"]),
            ">=",
            5,
        ),
        _target(
            "incremental materialize wall: Feast / loopml",
            ratio(mat["feast", "incremental"], mat["loopml", "incremental"]),
            ">=",
            5,
        ),
        _target(
            "materialize CPU (first + incremental): Feast / loopml",
            ratio(_sum(report, "feast"), _sum(report, "loopml")),
            ">=",
            5,
        ),
        _target(
            "online values == Feast's (present ones)",
            None if online_equal is None else float(online_equal),
            ">=",
            1,
            "bool",
        ),
        _target(
            "online p99, 1 entity, in process",
            _get(report, "online", "loopml", "lookups", "1", "p99_ms"),
            "<=",
            1,
            "ms",
        ),
        _target(
            "online p99, 1 entity, over HTTP", _get(report, "http", "loopml", "1", "p99_ms"), "<=", 3, "ms"
        ),
    ]


def _sum(report: Report, who: str) -> float | None:
    parts = [_get(report, "online", who, f"{step}_cpu_s") for step in ("materialize", "incremental")]
    return None if None in parts else sum(parts)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _historical(report: Report) -> None:
    sizes, hist = report["sizes"], report["historical"]
    cmp_ = _get(report, "comparison", "historical") or {}
    print(
        f"\nHistorical retrieval: {sizes['entity_rows']:,} entity rows x {sizes['rows']:,} feature rows, "
        f"{sizes['ids']:,} ids (median of {report['repeat']}; Feast file: 1 run)"
    )
    print(f"{'':14} {'wall s':>8} {'cpu s':>8} {'peak MB':>9} {'rows':>10} {'matched':>10}  vs loopml")
    for name in ("floor", "loopml", "feast_duckdb", "feast_file"):
        r = hist.get(name)
        if not r:
            continue
        c = (
            cmp_.get(name, {})
            if name != "loopml"
            else {"rows": cmp_.get("loopml_rows"), "matched": cmp_.get("loopml_matched")}
        )
        note = "" if name == "loopml" else _vs(c)
        print(
            f"{name:14} {r['hist_wall_s']:8.2f} {r['hist_cpu_s']:8.2f} {r['peak_rss_mb']:9.0f} "
            f"{_fmt(c.get('rows'), ',')!s:>10} {_fmt(c.get('matched'), ',')!s:>10}  {note}"
        )
    ties = _get(report, "comparison", "feast_file_differences")
    if ties:
        print(
            f"Feast file: of the kept rows, {ties['differing']} differ from loopml; "
            f"{ties['tie_resolved_to_older_created']} of them are event-time ties it resolved to the "
            "row created EARLIER (loopml, Feast DuckDB and the floor take the latest created)"
        )


def _vs(c: Report) -> str:
    if c.get("equal"):
        return "identical"
    if "dropped" in c:
        return f"dropped {c['dropped']:,} rows; {c.get('rows_differing_among_kept', '?')} of the kept differ"
    return f"DIFFERENT ({c.get('rows_differing', '?')} rows differ)" if c else ""


def _online(report: Report) -> None:
    print("\nMaterialization into SQLite (first: 30 days; incremental: +1 day)")
    print(f"{'':8} {'first wall s':>13} {'cpu s':>7} {'incr. wall s':>13} {'cpu s':>7} {'peak MB':>8}")
    for name, r in report["online"].items():
        print(
            f"{name:8} {r['materialize_wall_s']:13.2f} {r['materialize_cpu_s']:7.2f} "
            f"{r['incremental_wall_s']:13.2f} {r['incremental_cpu_s']:7.2f} {r['peak_rss_mb']:8.0f}"
        )
    load, cores = report.get("load_1min", {}), report.get("provenance", {}).get("nproc")
    print(
        "\nOnline lookups, ms: p50 / p99 (CPU per lookup; over HTTP: the server's); 1-min load average "
        f"{_fmt(load.get('online'), '.1f')} before the in-process ones, {_fmt(load.get('http'), '.1f')} "
        f"before HTTP, {_fmt(load.get('end'), '.1f')} after, on {cores} cores"
    )
    print(f"{'':24} {'1 entity':>28} {'100 entities':>28}")
    rows = [(f"{k} in process", _get(v, "lookups")) for k, v in report["online"].items()]
    rows += [(f"{k} over HTTP", v) for k, v in report.get("http", {}).items()]
    for label, r in rows:
        if not r or "skipped" in r:
            print(f"{label:24} skipped: {(r or {}).get('skipped', 'not run').splitlines()[0]}")
            continue
        print(f"{label:24} {_lookup(r['1'])} {_lookup(r['100'])}")
    o = _get(report, "comparison", "online")
    if o:
        print(
            f"online values vs Feast on {o['entities']} ids: {o['present']} present "
            f"({o['present_differing']} differ), {o['missing']} missing, {o['outside_ttl']} outside the ttl "
            f"(Feast returned {o['outside_ttl_returned_by_feast']} of those anyway)"
        )


def _lookup(r: Report) -> str:
    return f"{r['p50_ms']:7.3f} / {r['p99_ms']:7.3f} ({_fmt(r.get('cpu_ms_per_op'), '.3f')})".rjust(28)


def show(report: Report) -> None:
    """Print the tables and the targets."""
    where = report.get("provenance", {})
    dirty = len(where.get("dirty_features_files", []))
    print(
        f"\nFeast {report.get('feast_version') or '(not run)'}; scale {report['scale']:g}; loopml at "
        f"{where.get('git_head', '?')} ({dirty} uncommitted file(s) in src/loopml/features); "
        f"load average at start {where.get('loadavg_at_start', ['?'])[0]}"
    )
    _historical(report)
    _online(report)
    print("\nTargets")
    for t in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        if t["unit"] == "bool":
            figure = {1.0: "yes", 0.0: "no", None: "-"}[t["value"]]
        else:
            figure = f"{_fmt(t['value'], '.3f' if t['unit'] == 'ms' else '.2f')} {t['unit']}"
            figure += f" (target {t['op']} {t['limit']:g} {t['unit']})"
        print(f"  [{verdict}] {t['target']}: {figure}")
