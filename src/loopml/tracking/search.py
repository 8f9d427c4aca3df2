"""MLflow's run-search language, parsed and compiled to one SQL query.

    metrics.rmse < 0.5 AND params.model = 'rf' AND tags.`team` ILIKE 'ml%'
    AND attributes.status IN ('FINISHED', 'RUNNING') AND datasets.context = 'training'

Metric clauses join ``latest_metrics`` on its (key, value) index, so a filter
over many runs is a range scan rather than a lookup per run.

>>> parse_filter("metrics.acc > 0.9 and params.model = 'rf'")[0]
Clause(kind='metrics', key='acc', op='>', value=0.9)
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from sqlalchemy import ColumnElement, Select, and_, exists, false, select

from loopml.errors import InvalidInput
from loopml.store.schema import datasets, latest_metrics, params, run_inputs, runs, tags

MAX_RESULTS_LIMIT = 50_000

_KINDS = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
    "dataset": "datasets",
    "datasets": "datasets",
}
_ATTRIBUTES = {
    "run_id": runs.c.run_uuid,
    "run_uuid": runs.c.run_uuid,
    "run_name": runs.c.name,
    "status": runs.c.status,
    "user_id": runs.c.user_id,
    "artifact_uri": runs.c.artifact_uri,
    "lifecycle_stage": runs.c.lifecycle_stage,
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
    "created": runs.c.start_time,
}
_NUMERIC_ATTRIBUTES = {"start_time", "end_time", "created"}
_DATASET_FIELDS = {"name": datasets.c.name, "digest": datasets.c.digest}

_STRING_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}
_NUMBER_OPS = {"=", "!=", "<", "<=", ">", ">="}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ident>[A-Za-z_]\w*(?:\.(?:`[^`]+`|"[^"]+"|[\w\-./:]+))?)
    | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<lparen>\() | (?P<rparen>\)) | (?P<comma>,)
    )""",
    re.VERBOSE,
)


class Clause(NamedTuple):
    kind: str
    key: str
    op: str
    value: Any


class OrderKey(NamedTuple):
    kind: str
    key: str
    ascending: bool


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InvalidInput(
                f"filter: cannot parse {text[pos : pos + 30]!r} (at character {pos}); "
                "write clauses like metrics.acc > 0.9 AND params.model = 'rf'",
                details={"field": "filter"},
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _split_ident(raw: str, context: str) -> tuple[str, str]:
    prefix, dot, key = raw.partition(".")
    if not dot:
        if prefix in _ATTRIBUTES:
            return "attributes", prefix
        raise InvalidInput(
            f"{context}: {raw!r} needs a prefix: metrics., params., tags., attributes. or datasets.",
            details={"field": context},
        )
    kind = _KINDS.get(prefix.lower())
    if kind is None:
        raise InvalidInput(
            f"{context}: unknown entity {prefix!r}; use metrics, params, tags, attributes, datasets",
            details={"field": context},
        )
    if key[:1] in '`"' and key[-1:] == key[:1]:
        key = key[1:-1]
    return kind, key


def _unquote(raw: str) -> str:
    quote = raw[0]
    body = raw[1:-1].replace(quote * 2, quote)
    return re.sub(r"\\(.)", r"\1", body)


def parse_filter(text: str | None) -> list[Clause]:
    """Parse ``clause AND clause ...``; raise ``InvalidInput`` naming the bad part."""
    if not text or not text.strip():
        return []
    toks = _tokens(text)
    clauses: list[Clause] = []
    i = 0
    while i < len(toks):
        clause, i = _parse_clause(toks, i)
        clauses.append(clause)
        if i < len(toks):
            if toks[i] != ("ident", toks[i][1]) or toks[i][1].upper() != "AND":
                raise InvalidInput(
                    f"filter: expected AND after a clause, got {toks[i][1]!r} (OR is not supported)",
                    details={"field": "filter"},
                )
            i += 1
    return clauses


def _parse_clause(toks: list[tuple[str, str]], i: int) -> tuple[Clause, int]:
    def need(j: int) -> tuple[str, str]:
        if j >= len(toks):
            raise InvalidInput("filter: a clause ends early", details={"field": "filter"})
        return toks[j]

    kind_tok, ident = need(i)
    if kind_tok != "ident":
        raise InvalidInput(f"filter: expected a key, got {ident!r}", details={"field": "filter"})
    kind, key = _split_ident(ident, "filter")
    op_kind, op = need(i + 1)
    i += 2
    if op_kind == "ident" and op.upper() == "NOT" and need(i)[1].upper() == "IN":
        op, i = "NOT IN", i + 1
    elif op_kind == "ident" and op.upper() in ("LIKE", "ILIKE", "IN"):
        op = op.upper()
    elif op_kind == "op":
        op = {"==": "=", "<>": "!="}.get(op, op)
    else:
        raise InvalidInput(f"filter: {op!r} is not a comparator", details={"field": "filter"})
    value: Any
    if op in ("IN", "NOT IN"):
        value, i = _parse_list(toks, i)
    else:
        vkind, raw = need(i)
        if vkind not in ("string", "number"):
            raise InvalidInput(
                f"filter: the value for {ident} must be a number or a quoted string, got {raw!r}",
                details={"field": "filter"},
            )
        value = _unquote(raw) if vkind == "string" else float(raw)
        i += 1
    return _typed(Clause(kind, key, op, value)), i


def _parse_list(toks: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    if i >= len(toks) or toks[i][0] != "lparen":
        raise InvalidInput("filter: IN needs a list like ('a', 'b')", details={"field": "filter"})
    values, i = [], i + 1
    while i < len(toks) and toks[i][0] != "rparen":
        if toks[i][0] == "string":
            values.append(_unquote(toks[i][1]))
        elif toks[i][0] != "comma":
            raise InvalidInput(
                f"filter: IN lists hold quoted strings, got {toks[i][1]!r}",
                details={"field": "filter"},
            )
        i += 1
    if i >= len(toks):
        raise InvalidInput("filter: IN list is not closed with ')'", details={"field": "filter"})
    return values, i + 1


def _typed(c: Clause) -> Clause:
    numeric = c.kind == "metrics" or (c.kind == "attributes" and c.key in _NUMERIC_ATTRIBUTES)
    if c.kind == "attributes" and c.key not in _ATTRIBUTES:
        raise InvalidInput(
            f"filter: unknown attribute {c.key!r}; known: {', '.join(sorted(_ATTRIBUTES))}",
            details={"field": "filter"},
        )
    if c.kind == "datasets" and c.key not in (*_DATASET_FIELDS, "context"):
        raise InvalidInput(
            f"filter: datasets.{c.key} is unknown; use datasets.name, .digest or .context",
            details={"field": "filter"},
        )
    allowed = _NUMBER_OPS if numeric else _STRING_OPS
    if c.op not in allowed:
        raise InvalidInput(
            f"filter: {c.kind}.{c.key} does not support {c.op}; use one of {sorted(allowed)}",
            details={"field": "filter"},
        )
    if numeric and not isinstance(c.value, float):
        raise InvalidInput(
            f"filter: {c.kind}.{c.key} compares with a number, got {c.value!r}",
            details={"field": "filter"},
        )
    if not numeric and isinstance(c.value, float):
        raise InvalidInput(
            f"filter: {c.kind}.{c.key} compares with a quoted string, e.g. '{c.value:g}'",
            details={"field": "filter"},
        )
    if numeric and c.kind == "attributes":
        return c._replace(value=int(c.value))
    return c


def parse_order_by(items: Sequence[str]) -> list[OrderKey]:
    keys = []
    for item in items:
        words = item.strip().rsplit(None, 1)
        ascending = True
        if len(words) == 2 and words[1].upper() in ("ASC", "DESC"):
            ascending = words[1].upper() == "ASC"
            item = words[0]
        kind, key = _split_ident(item.strip(), "order_by")
        if kind == "datasets" or (kind == "attributes" and key not in _ATTRIBUTES):
            raise InvalidInput(f"order_by: cannot sort on {item!r}", details={"field": "order_by"})
        keys.append(OrderKey(kind, key, ascending))
    return keys


def _compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "LIKE":
        return col.like(value)  # type: ignore[no-any-return]
    if op == "ILIKE":
        return col.ilike(value)  # type: ignore[no-any-return]
    if op == "IN":
        return col.in_(value)  # type: ignore[no-any-return]
    if op == "NOT IN":
        return col.not_in(value)  # type: ignore[no-any-return]
    result: ColumnElement[bool] = {
        "=": col == value,
        "!=": col != value,
        "<": col < value,
        "<=": col <= value,
        ">": col > value,
        ">=": col >= value,
    }[op]
    return result


def _key_table(kind: str) -> Any:
    return {"metrics": latest_metrics, "params": params, "tags": tags}[kind]


def _run_match(table: Any, kind: str) -> ColumnElement[bool]:
    # metric tables are keyed by the integer run id; params and tags by the uuid
    if kind == "metrics":
        return table.c.run_id == runs.c.id  # type: ignore[no-any-return]
    return table.c.run_uuid == runs.c.run_uuid  # type: ignore[no-any-return]


def _base(experiment_ids: Sequence[int], stages: Sequence[str]) -> Select[Any]:
    return select(runs.c.run_uuid).where(
        runs.c.experiment_id.in_(list(experiment_ids)), runs.c.lifecycle_stage.in_(list(stages))
    )


def _filtered(query: Select[Any], clauses: Sequence[Clause], *, correlated: bool = False) -> Select[Any]:
    """Add the filter clauses: joins (the planner may drive the query from a filter's index),
    or with ``correlated`` per-run EXISTS checks (so a ranked query stays driven by its sort)."""
    for n, c in enumerate(clauses):
        if c.kind == "attributes":
            query = query.where(_compare(_ATTRIBUTES[c.key], c.op, c.value))
        elif c.kind == "datasets":
            query = query.where(_dataset_clause(c))
        else:
            t = _key_table(c.kind).alias(f"f{n}")
            conds = [t.c.key == c.key, _compare(t.c.value, c.op, c.value)]
            if c.kind == "metrics":
                conds.append(t.c.is_nan == false())
            if correlated:
                query = query.where(exists(select(t.c.key).where(_run_match(t, c.kind), *conds)))
            else:
                query = query.join(t, and_(_run_match(t, c.kind), conds[0])).where(*conds[1:])
    return query


def _sort_keys(
    query: Select[Any], order: Sequence[OrderKey], first: int = 0
) -> tuple[Select[Any], list[Any]]:
    sort: list[Any] = []
    for n, o in enumerate(order):
        if o.kind == "attributes":
            col: Any = _ATTRIBUTES[o.key]
        else:
            t = _key_table(o.kind).alias(f"o{n + first}")
            query = query.outerjoin(t, and_(_run_match(t, o.kind), t.c.key == o.key))
            col = t.c.value
        sort += [col.is_(None), col.asc() if o.ascending else col.desc()]
    return query, [*sort, runs.c.start_time.desc(), runs.c.run_uuid]


def build_query(
    experiment_ids: Sequence[int],
    stages: Sequence[str],
    clauses: Sequence[Clause],
    order: Sequence[OrderKey],
) -> Select[Any]:
    """``SELECT run_uuid`` for the matching runs, ordered (nulls last, then newest first)."""
    query, sort = _sort_keys(_filtered(_base(experiment_ids, stages), clauses), order)
    return query.order_by(*sort)


def ranked_queries(
    experiment_ids: Sequence[int],
    stages: Sequence[str],
    clauses: Sequence[Clause],
    order: Sequence[OrderKey],
) -> tuple[Select[Any], Select[Any]]:
    """For a search sorted first by a metric: (runs that have it, in order; runs that don't).

    The first query walks the metric's (key, is_nan, value) index in sort order and stops
    at the page's end instead of sorting every match; the second lists the rest, which
    sort after them (nulls last).
    """
    first, rest = order[0], order[1:]
    lm = latest_metrics.alias("o0")
    ranked = (
        select(runs.c.run_uuid)
        .select_from(lm)
        .join(runs, lm.c.run_id == runs.c.id)
        .where(
            lm.c.key == first.key,
            lm.c.is_nan == false(),
            runs.c.experiment_id.in_(list(experiment_ids)),
            runs.c.lifecycle_stage.in_(list(stages)),
        )
    )
    ranked, sort = _sort_keys(_filtered(ranked, clauses, correlated=True), rest, first=1)
    ranked = ranked.order_by(lm.c.value.asc() if first.ascending else lm.c.value.desc(), *sort)
    has_metric = exists(
        select(latest_metrics.c.run_id).where(
            latest_metrics.c.run_id == runs.c.id,
            latest_metrics.c.key == first.key,
            latest_metrics.c.is_nan == false(),
        )
    )
    missing, sort = _sort_keys(_filtered(_base(experiment_ids, stages), clauses).where(~has_metric), rest, 1)
    return ranked, missing.order_by(*sort)


def _dataset_clause(c: Clause) -> ColumnElement[bool]:
    col = run_inputs.c.context if c.key == "context" else _DATASET_FIELDS[c.key]
    sub = (
        select(run_inputs.c.run_uuid)
        .join(datasets, datasets.c.dataset_uuid == run_inputs.c.dataset_uuid)
        .where(run_inputs.c.run_uuid == runs.c.run_uuid, _compare(col, c.op, c.value))
    )
    return exists(sub)


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode()


def decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = orjson.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidInput(
        "page_token is invalid: pass the next_page_token of the previous page unchanged",
        details={"field": "page_token"},
    )


def check_max_results(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RESULTS_LIMIT:
        raise InvalidInput(
            f"max_results must be between 1 and {MAX_RESULTS_LIMIT}, got {n!r}",
            details={"field": "max_results"},
        )
    return n
