"""MLflow's registry search filters, compiled to SQL conditions.

    name LIKE 'churn%' AND tags.team = 'ml'                    (registered models)
    name = 'churn' AND run_id IN ('a', 'b') AND version_number >= 3   (model versions)

>>> [c.key for c in parse_registry_filter("name = 'a' AND tags.`team` = 'ml'", models=True)]
['name', 'tags.team']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, exists, select

from loopml.errors import InvalidInput
from loopml.store.schema import model_version_tags, model_versions, registered_model_tags, registered_models

_CLAUSE = re.compile(
    r"""^\s*(?P<key>tags?\.(?:`[^`]+`|"[^"]+"|[\w.\-/: ]+?)|[a-z_]+(?:\.[a-z_]+)?)\s*
    (?P<op>!=|>=|<=|=|>|<|NOT\s+IN|IN|NOT\s+LIKE|LIKE|ILIKE)\s*(?P<value>.+?)\s*$""",
    re.I | re.X,
)
_SPLIT = re.compile(r"\s+AND\s+(?=(?:[^']*'[^']*')*[^']*$)", re.I)
_STRING = re.compile(r"^'((?:[^']|'')*)'$|^\"((?:[^\"]|\"\")*)\"$")
_MODEL_FIELDS = {"name"}
_VERSION_FIELDS = {"name", "run_id", "source_path", "version_number", "current_stage"}
_ORDER_MODELS = {"name", "creation_timestamp", "last_updated_timestamp", "timestamp"}
_ORDER_VERSIONS = {"name", "version_number", "creation_timestamp", "last_updated_timestamp", "timestamp"}


class Clause(NamedTuple):
    key: str
    op: str
    value: Any


def parse_registry_filter(text: str, *, models: bool) -> list[Clause]:
    """Clauses of a filter joined by AND; ``InvalidInput`` names an unsupported one."""
    if not text or not text.strip():
        return []
    allowed = _MODEL_FIELDS if models else _VERSION_FIELDS
    clauses = []
    for part in _SPLIT.split(text.strip()):
        m = _CLAUSE.match(part)
        key = m.group("key") if m else ""
        if key.lower().startswith(("tag.", "tags.")):
            key = "tags." + key.split(".", 1)[1].strip('`"')
        elif key.lower().removeprefix("attributes.") in allowed:
            key = key.lower().removeprefix("attributes.")
        else:
            m = None
        if m is None:
            raise InvalidInput(
                f"filter clause {part!r} is not supported; use "
                + ", ".join(f"{f} = '...'" for f in sorted(allowed))
                + " or tags.<key> = '...', joined by AND",
                details={"field": "filter"},
            )
        op = " ".join(m.group("op").upper().split())
        clauses.append(Clause(key, op, _value(key, op, m.group("value"), part)))
    return clauses


def _value(key: str, op: str, raw: str, part: str) -> Any:
    if op in ("IN", "NOT IN"):
        inner = raw.strip()
        if not (inner.startswith("(") and inner.endswith(")")):
            raise InvalidInput(
                f"filter clause {part!r}: IN takes a list like ('a', 'b')", details={"field": "filter"}
            )
        items = [s.strip() for s in re.split(r",(?=(?:[^']*'[^']*')*[^']*$)", inner[1:-1]) if s.strip()]
        return [_scalar(key, i, part) for i in items]
    return _scalar(key, raw, part)


def _scalar(key: str, raw: str, part: str) -> Any:
    if key == "version_number":
        try:
            return int(raw.strip().strip("'\""))
        except ValueError:
            raise InvalidInput(
                f"filter clause {part!r}: version_number takes an integer", details={"field": "filter"}
            ) from None
    m = _STRING.match(raw.strip())
    if m is None:
        raise InvalidInput(
            f"filter clause {part!r}: quote the value, e.g. 'churn'", details={"field": "filter"}
        )
    return m.group(1).replace("''", "'") if m.group(1) is not None else m.group(2).replace('""', '"')


def _compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    ops: dict[str, Any] = {
        "=": lambda: col == value,
        "!=": lambda: col != value,
        ">": lambda: col > value,
        ">=": lambda: col >= value,
        "<": lambda: col < value,
        "<=": lambda: col <= value,
        "LIKE": lambda: col.like(value),
        "NOT LIKE": lambda: col.not_like(value),
        "ILIKE": lambda: col.ilike(value),
        "IN": lambda: col.in_(value),
        "NOT IN": lambda: col.not_in(value),
    }
    result: ColumnElement[bool] = ops[op]()
    return result


def model_conditions(clauses: Sequence[Clause]) -> list[ColumnElement[bool]]:
    out = []
    for c in clauses:
        if c.key == "name":
            out.append(_compare(registered_models.c.name, c.op, c.value))
        else:
            t = registered_model_tags.c
            out.append(
                exists(
                    select(t.model_id).where(
                        t.model_id == registered_models.c.id,
                        t.key == c.key[5:],
                        _compare(t.value, c.op, c.value),
                    )
                )
            )
    return out


def version_conditions(clauses: Sequence[Clause]) -> list[ColumnElement[bool]]:
    v = model_versions.c
    columns = {
        "name": registered_models.c.name,
        "run_id": v.run_id,
        "source_path": v.source,
        "version_number": v.version,
        "current_stage": v.current_stage,
    }
    out = []
    for c in clauses:
        if c.key in columns:
            out.append(_compare(columns[c.key], c.op, c.value))
        else:
            t = model_version_tags.c
            out.append(
                exists(
                    select(t.model_id).where(
                        t.model_id == v.model_id,
                        t.version == v.version,
                        t.key == c.key[5:],
                        _compare(t.value, c.op, c.value),
                    )
                )
            )
    return out


def order_columns(order_by: Sequence[str], *, models: bool) -> list[Any]:
    """SQL ORDER BY terms for MLflow's ``order_by`` strings (``"name ASC"``)."""
    allowed = _ORDER_MODELS if models else _ORDER_VERSIONS
    table_cols: dict[str, Any] = {
        "name": registered_models.c.name,
        "creation_timestamp": (registered_models if models else model_versions).c.creation_timestamp,
        "last_updated_timestamp": (registered_models if models else model_versions).c.last_updated_timestamp,
        "version_number": model_versions.c.version,
    }
    table_cols["timestamp"] = table_cols["creation_timestamp"]
    terms = []
    for text in order_by:
        field, _, direction = text.strip().partition(" ")
        field = field.lower().removeprefix("attributes.").strip("`")
        direction = direction.strip().upper() or "ASC"
        if field not in allowed or direction not in ("ASC", "DESC"):
            raise InvalidInput(
                f"order_by {text!r} is not supported; use one of {', '.join(sorted(allowed))} "
                "followed by ASC or DESC",
                details={"field": "order_by"},
            )
        col = table_cols[field]
        terms.append(col.desc() if direction == "DESC" else col.asc())
    return terms
