"""Names, types and sizes of everything a run logs, checked before anything is written.

The limits are at least MLflow's, so code that works there works here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from loopml.errors import InvalidInput
from loopml.tracking.records import MetricTuple, Param, RunTag

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_RUN_NAME_LENGTH = 250
_KEY = re.compile(r"^[\w\-. /:]+$")
_INT64 = 2**63


# Keys already accepted: batches repeat the same keys, so validate each one once.
_valid_keys: dict[tuple[str, str], None] = {}
_VALID_KEYS_CAP = 100_000


def check_key(key: object, kind: str) -> str:
    if (key, kind) in _valid_keys:  # type: ignore[comparison-overlap]
        return key  # type: ignore[return-value]
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"{kind} key must be a non-empty string, got {key!r}", details=_f(kind))
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{kind} key {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}",
            details=_f(kind),
        )
    if not _KEY.match(key) or ".." in key.split("/") or key.startswith("/"):
        raise InvalidInput(
            f"{kind} key {key!r} is invalid: use letters, digits, '_', '-', '.', ' ', ':' and '/' "
            "(no leading '/', no '..' segment)",
            details=_f(kind),
        )
    if len(_valid_keys) >= _VALID_KEYS_CAP:
        _valid_keys.clear()
    _valid_keys[(key, kind)] = None
    return key


def check_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        else:
            raise InvalidInput(f"{field} must be an integer, got {value!r}", details=_f(field))
    if not -_INT64 <= value < _INT64:
        raise InvalidInput(f"{field} {value} does not fit in 64 bits", details=_f(field))
    return value


def metric_value(key: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # protobuf JSON sends NaN and Infinity as strings
        except ValueError:
            pass
    raise InvalidInput(f"metric {key!r} value must be a number, got {value!r}", details=_f("metrics.value"))


def check_param(p: Param) -> Param:
    check_key(p.key, "param")
    value = p.value if isinstance(p.value, str) else str(p.value)
    if len(value) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidInput(
            f"param {p.key!r} value is {len(value)} characters; the limit is "
            f"{MAX_PARAM_VALUE_LENGTH}: log long values as an artifact instead",
            details=_f("params.value"),
        )
    return Param(p.key, value)


def check_tag(t: RunTag) -> RunTag:
    check_key(t.key, "tag")
    value = t.value if isinstance(t.value, str) else str(t.value)
    if len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidInput(
            f"tag {t.key!r} value is {len(value)} characters; the limit is {MAX_TAG_VALUE_LENGTH}",
            details=_f("tags.value"),
        )
    return RunTag(t.key, value)


def check_batch(
    metrics: Sequence[MetricTuple], params: Sequence[Param], tags: Sequence[RunTag]
) -> tuple[list[MetricTuple], list[Param], list[RunTag]]:
    """Validate a batch's sizes, params and tags; raise on the first bad entry.

    Metrics are checked by :func:`loopml.tracking.metric_chunks.build`, which packs them at the same time.
    """
    for name, items, limit in (
        ("metrics", metrics, MAX_METRICS_PER_BATCH),
        ("params", params, MAX_PARAMS_PER_BATCH),
        ("tags", tags, MAX_TAGS_PER_BATCH),
    ):
        if len(items) > limit:
            raise InvalidInput(
                f"a batch may hold at most {limit} {name}, got {len(items)}: split it",
                details=_f(name),
            )
    total = len(metrics) + len(params) + len(tags)
    if total > MAX_ENTITIES_PER_BATCH:
        raise InvalidInput(
            f"a batch may hold at most {MAX_ENTITIES_PER_BATCH} entries in all, got {total}",
            details=_f("batch"),
        )
    clean_params = [check_param(p) for p in params]
    seen: dict[str, str] = {}
    for p in clean_params:
        if seen.setdefault(p.key, p.value) != p.value:
            raise InvalidInput(
                f"param {p.key!r} appears twice in the batch with different values",
                details=_f("params"),
            )
    return list(metrics), clean_params, [check_tag(t) for t in tags]


def check_name(name: object, kind: str, limit: int) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{kind} name must be a non-empty string", details=_f("name"))
    if len(name) > limit:
        raise InvalidInput(f"{kind} name is {len(name)} characters; the limit is {limit}", details=_f("name"))
    return name


def _f(field: str) -> dict[str, str]:
    return {"field": field}
