"""Model cards in Markdown, rendered from registry metadata alone (no model or data loaded).

>>> text = reg.card("churn", 3)   # doctest: +SKIP
>>> text.splitlines()[0]          # doctest: +SKIP
'# churn — version 3'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from loopml.registry.records import (
    Evaluation,
    Gate,
    GateResult,
    Lineage,
    PromotionRequest,
    RegisteredModel,
    Transition,
)


def render_card(
    model: RegisteredModel,
    lineage: Lineage,
    *,
    gate: Gate | None,
    evaluations: Sequence[Evaluation],
    transitions: Sequence[Transition],
    requests: Sequence[PromotionRequest],
) -> str:
    """The card of ``lineage.model``: one Markdown document, sections in a fixed order."""
    sections = [
        _overview(model, lineage),
        _provenance(lineage),
        _metrics(lineage, evaluations),
        _data(lineage),
        _signature(lineage),
        _gate(gate, evaluations, transitions),
        _history(transitions, requests),
    ]
    return "\n\n".join(s for s in sections if s).rstrip() + "\n"


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _overview(model: RegisteredModel, lineage: Lineage) -> str:
    mv = lineage.model
    lines = [f"# {model.name} — version {mv.version}", ""]
    description = mv.description or model.description
    lines.append(description or "_No description._")
    lines += [
        "",
        f"- **Stage:** {mv.current_stage.value}",
        f"- **Aliases:** {', '.join(mv.aliases) or '-'}",
        f"- **Registered:** {_when(mv.creation_timestamp)} by {mv.user_id}",
        f"- **Source:** `{mv.source}`",
        f"- **Artifact digest (sha256):** `{mv.digest}`",
    ]
    if lineage.flavor:
        lines.append(f"- **Flavor:** {lineage.flavor}")
    tags = {**model.tags, **mv.tags}
    if tags:
        lines.append("- **Tags:** " + ", ".join(f"`{k}={v}`" for k, v in sorted(tags.items())))
    return "\n".join(lines)


def _provenance(lineage: Lineage) -> str:
    run = lineage.run
    if run is None:
        return "## Provenance\n\n_No run recorded for this version._"
    dirty = {True: "yes (uncommitted changes)", False: "no", None: "unknown"}[run.dirty]
    return "\n".join(
        [
            "## Provenance",
            "",
            f"- **Run:** {run.run_name} (`{run.run_id}`)",
            f"- **Experiment:** {run.experiment_name or run.experiment_id}",
            f"- **Commit:** `{run.commit or 'unknown'}`" + (f" on {run.branch}" if run.branch else ""),
            f"- **Dirty working tree:** {dirty}",
            f"- **Trained by:** {run.user or '-'}",
        ]
    )


def _metrics(lineage: Lineage, evaluations: Sequence[Evaluation]) -> str:
    parts = ["## Metrics"]
    if lineage.run and lineage.run.metrics:
        parts += ["", "Training run:", "", _table(["metric", "value"], _fmt(lineage.run.metrics))]
    for ev in evaluations[:5]:
        champ = f"champion v{ev.champion_version}" if ev.champion_version else "no champion"
        keys = sorted(set(ev.metrics) | set(ev.champion_metrics))
        rows = [(k, _num(ev.metrics.get(k)), _num(ev.champion_metrics.get(k))) for k in keys]
        parts += [
            "",
            f"Evaluation on {ev.dataset_name}@{ev.dataset_version} ({_when(ev.created)}, {ev.user}):",
            "",
            _table(["metric", "candidate", champ], rows),
        ]
    if len(parts) == 1:
        parts += ["", "_No metrics recorded._"]
    return "\n".join(parts)


def _fmt(metrics: dict[str, float]) -> list[tuple[str, str]]:
    return [(k, _num(v)) for k, v in sorted(metrics.items())]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _data(lineage: Lineage) -> str:
    if not lineage.datasets:
        return "## Data\n\n_No dataset inputs recorded._"
    rows = [
        (
            d.ref,
            d.context or "-",
            "-" if d.num_rows is None else d.num_rows,
            f"`{d.digest[:16]}`",
            len(d.columns),
        )
        for d in lineage.datasets
    ]
    return "## Data\n\n" + _table(["dataset", "context", "rows", "digest", "columns"], rows)


def _signature(lineage: Lineage) -> str:
    sig = lineage.signature
    if not sig:
        return "## Signature\n\n_No signature recorded._"
    parts = ["## Signature"]
    for side in ("inputs", "outputs"):
        schema = sig.get(side)
        if isinstance(schema, dict):
            parts += ["", f"{side.capitalize()}: {_schema(schema)}"]
    return "\n".join(parts)


def _schema(schema: dict[str, Any]) -> str:
    """``columns`` schemas as a list of ``name: dtype``; tensors as ``dtype[shape]``."""
    if schema.get("kind") == "columns":
        cols = schema.get("columns") or []
        return ", ".join(f"`{c.get('name')}: {c.get('dtype')}`" for c in cols if isinstance(c, dict)) or "-"
    shape = ", ".join(str(s) for s in schema.get("shape") or [])
    return f"`{schema.get('dtype', '?')}[{shape}]`"


def _gate(gate: Gate | None, evaluations: Sequence[Evaluation], transitions: Sequence[Transition]) -> str:
    if gate is None:
        return "## Gate\n\n_The model declares no gate._"
    lines = ["## Gate", ""]
    lines += [f"- `{t}`" for t in gate.thresholds]
    lines.append(f"- Human approval required: {'yes' if gate.require_approval else 'no'}")
    gated = [t for t in transitions if t.gate is not None and t.gate.results]
    if gated:
        lines += ["", f"Results when it moved to {gated[-1].to_stage.value}:", "", _results(gated[-1].gate)]
    return "\n".join(lines)


def _results(result: GateResult | None) -> str:
    if result is None:
        return ""
    rows = [
        (r.threshold, _num(r.value), _num(r.limit), "pass" if r.passed else "FAIL", r.note)
        for r in result.results
    ]
    return _table(["threshold", "value", "limit", "result", "note"], rows)


def _history(transitions: Sequence[Transition], requests: Sequence[PromotionRequest]) -> str:
    parts = ["## Transitions and approvals"]
    if transitions:
        rows = [
            (
                _when(t.timestamp),
                f"{t.from_stage.value} → {t.to_stage.value}",
                t.user,
                t.approved_by or "-",
                t.reason,
            )
            for t in transitions
        ]
        parts += ["", _table(["when", "move", "by", "approved by", "reason"], rows)]
    if requests:
        decided = [
            (r.request_id[:8], r.to_stage.value, r.status.value, r.requested_by, r.decided_by or "-",
             r.decision_reason or "-")
            for r in requests
        ]  # fmt: skip
        parts += ["", _table(["request", "to", "status", "requested by", "decided by", "note"], decided)]
    if len(parts) == 1:
        parts += ["", "_No transitions yet._"]
    return "\n".join(parts)
