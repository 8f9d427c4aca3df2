"""Gate thresholds: a small strict grammar and the check of an evaluation against them.

Grammar, one threshold per string::

    <metric> <op> <number>
    <metric> <op> champion.<metric> [(+|-) <number>]

with ``<op>`` one of ``>= > <= <`` and metric names of letters, digits, ``_`` and ``.``.

>>> t = parse_threshold("roc_auc >= champion.roc_auc - 0.005")
>>> (t.metric, t.op, t.champion_metric, t.offset)
('roc_auc', '>=', 'roc_auc', -0.005)
>>> check([t], {"roc_auc": 0.91}, {"roc_auc": 0.9}, has_champion=True).passed
True
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from loopml.errors import InvalidInput
from loopml.registry.records import GateResult, ThresholdResult

GRAMMAR = (
    "'<metric> <op> <number>' or '<metric> <op> champion.<metric> [+|- <number>]' "
    "with <op> one of >=, >, <=, <; e.g. 'accuracy >= 0.90', 'roc_auc >= champion.roc_auc - 0.005'"
)
MAX_THRESHOLDS = 50
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_METRIC = r"[A-Za-z_][A-Za-z0-9_.]*"
_PATTERN = re.compile(
    rf"^\s*(?P<metric>{_METRIC})\s*(?P<op>>=|<=|>|<)\s*"
    rf"(?:(?P<number>{_NUMBER})|champion\.(?P<champ>{_METRIC})"
    rf"(?:\s*(?P<sign>[+-])\s*(?P<offset>{_NUMBER.removeprefix('[+-]?')}))?)\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True, slots=True)
class Threshold:
    """A parsed threshold: ``metric op constant`` or ``metric op champion.X + offset``."""

    text: str
    metric: str
    op: str
    constant: float | None = None
    champion_metric: str | None = None
    offset: float = 0.0


def parse_threshold(text: str) -> Threshold:
    """Parse one threshold or raise ``InvalidInput`` naming it and the grammar."""
    m = _PATTERN.match(text) if isinstance(text, str) else None
    if m is None or m.group("metric").startswith("champion."):
        raise InvalidInput(
            f"threshold {text!r} is not valid; write {GRAMMAR}",
            details={"field": "thresholds", "threshold": str(text)},
        )
    metric, op = m.group("metric"), m.group("op")
    canonical = f"{metric} {op} "
    if m.group("number") is not None:
        constant = float(m.group("number"))
        if not math.isfinite(constant):
            raise InvalidInput(f"threshold {text!r} needs a finite limit", details={"field": "thresholds"})
        return Threshold(canonical + m.group("number"), metric, op, constant=constant)
    champ = m.group("champ")
    offset = float(m.group("offset") or 0.0) * (-1.0 if m.group("sign") == "-" else 1.0)
    suffix = f" {m.group('sign')} {m.group('offset')}" if m.group("offset") else ""
    text = canonical + f"champion.{champ}{suffix}"
    return Threshold(text, metric, op, champion_metric=champ, offset=offset)


def parse_thresholds(texts: Sequence[str]) -> list[Threshold]:
    """Parse all thresholds (refusing the whole list on the first bad one) in canonical spelling."""
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) > MAX_THRESHOLDS:
        raise InvalidInput(
            f"a gate has at most {MAX_THRESHOLDS} thresholds, got {len(texts)}",
            details={"field": "thresholds"},
        )
    return [parse_threshold(t) for t in texts]


def check(
    thresholds: Sequence[Threshold],
    metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float],
    *,
    has_champion: bool,
    evaluation_id: str | None = None,
) -> GateResult:
    """Check a candidate's ``metrics`` against every threshold.

    A ``champion.X`` threshold passes with the note "no champion" when there was no champion to
    beat (the first version to reach Production has nothing to be compared with); it fails when
    the champion exists but X was not measured for it. A metric missing on the candidate fails.
    """
    results = [_check_one(t, metrics, champion_metrics, has_champion) for t in thresholds]
    return GateResult(all(r.passed for r in results), results, evaluation_id)


def _check_one(
    t: Threshold, metrics: Mapping[str, float], champion: Mapping[str, float], has_champion: bool
) -> ThresholdResult:
    value = metrics.get(t.metric)
    if t.champion_metric is None:
        limit: float | None = t.constant
    elif not has_champion:
        return ThresholdResult(t.text, t.metric, value, None, True, "no champion to compare with")
    elif t.champion_metric not in champion:
        return ThresholdResult(
            t.text, t.metric, value, None, False, f"champion has no metric {t.champion_metric!r}"
        )
    else:
        limit = champion[t.champion_metric] + t.offset
    if value is None:
        return ThresholdResult(t.text, t.metric, None, limit, False, f"candidate has no metric {t.metric!r}")
    assert limit is not None
    passed = not math.isnan(value) and _OPS[t.op](value, limit)
    return ThresholdResult(t.text, t.metric, value, limit, passed)


def failure_message(name: str, version: int, result: GateResult) -> str:
    """The ``GateFailed`` message: one line per threshold, failures marked."""
    lines = [f"model {name!r} version {version} did not pass its gate:"]
    lines += [f"  {r.line()}" for r in result.results]
    if result.note:
        lines.append(f"  {result.note}")
    return "\n".join(lines)
