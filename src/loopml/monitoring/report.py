"""Self-contained HTML report (plotly bundled from its package, no CDN) and its JSON twin.

The HTML page holds: the dataset verdict, the drift table, per-feature reference vs current
histograms, the data-quality issues and performance over time; the JSON (``report_dict``)
carries the same content, and is also embedded in the page (``<script id="loopml-report">``).
Charts are built only here, so computing drift never pays for them.

>>> write_report("drift.html", compute_drift(ref, cur))   # doctest: +SKIP
PosixPath('drift.html')
"""

from __future__ import annotations

import html
import itertools
import json
import math
from pathlib import Path
from typing import Any

from loopml.monitoring.records import DriftResult, FeatureDrift, QualityReport

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.drift{color:#b00;font-weight:600}.ok{color:#070}.muted{color:#777}
"""


def _as_dict(obj: Any) -> Any:
    if obj is None or isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot put a {type(obj).__name__} in a report; pass a record with to_dict() or a dict")


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def report_dict(
    drift: DriftResult, quality: QualityReport | None = None, performance: Any = None
) -> dict[str, Any]:
    """The report's content as JSON-able data (what the HTML shows).

    >>> report_dict(result)["drift"]["dataset_drift"]   # doctest: +SKIP
    True
    """
    content: dict[str, Any] = _clean(
        {
            "kind": "loopml.monitoring.report",
            "version": 1,
            "drift": drift.to_dict(),
            "quality": _as_dict(quality),
            "performance": _as_dict(performance),
        }
    )
    return content


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _drift_table(drift: DriftResult) -> str:
    rows = []
    feats = drift.features + ([drift.prediction] if drift.prediction else [])
    for f in feats:
        cls = "drift" if f.drifted else ("ok" if f.status == "ok" else "muted")
        verdict = "drift" if f.drifted else ("no drift" if f.status in ("ok", "constant") else f.status)
        rows.append(
            f"<tr><td>{html.escape(f.column)}</td><td>{f.kind}</td><td>{f.method}</td><td>{_fmt(f.statistic)}</td>"
            f"<td>{_fmt(f.p_value)}</td><td>{_fmt(f.threshold)}</td><td class='{cls}'>{verdict}</td>"
            f"<td class='muted'>{html.escape(f.note)}</td></tr>"
        )
    names = ("column", "kind", "method", "statistic", "p-value", "threshold", "verdict", "note")
    head = "<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _feature_figure(f: FeatureDrift) -> Any:
    import plotly.graph_objects as go  # plotly only when a report is written

    labels = [str(c) for c in f.categories] if f.categories else _bin_labels(f.edges)
    fig = go.Figure()
    for name, counts in (("reference", f.reference_hist), ("current", f.current_hist)):
        total = sum(counts) or 1
        fig.add_bar(x=labels, y=[c / total for c in counts], name=name)
    title = f"{f.column}: {f.method} = {_fmt(f.statistic)}" + (" (drift)" if f.drifted else "")
    fig.update_layout(
        title=title, barmode="group", height=320, margin={"t": 40, "b": 40}, yaxis_title="share"
    )
    return fig


def _bin_labels(edges: list[float]) -> list[str]:
    bounds = ["-inf", *[f"{e:.4g}" for e in edges], "inf"]
    return [f"[{a}, {b})" for a, b in itertools.pairwise(bounds)]


def _performance_html(perf: dict[str, Any] | None, figures: list[Any]) -> str:
    import plotly.graph_objects as go

    if not perf:
        return "<p class='muted'>No performance data (labels not yet arrived or not requested).</p>"
    windows = perf.get("windows") if isinstance(perf, dict) else None
    if isinstance(windows, list) and windows:
        x = [w.get("start", i) for i, w in enumerate(windows)]
        fig = go.Figure()
        metrics = sorted(
            {
                m
                for w in windows
                for m, v in w.items()
                if isinstance(v, int | float) and m not in ("start", "end")
            }
        )
        for m in metrics:
            fig.add_scatter(x=x, y=[w.get(m) for w in windows], name=m, mode="lines+markers")
        fig.update_layout(title="performance over time", height=360)
        figures.append(fig)
    body = html.escape(json.dumps(_clean(perf), indent=1, default=str))
    return f"<details><summary>performance data</summary><pre>{body}</pre></details>"


def _quality_html(q: QualityReport | None) -> str:
    if q is None:
        return "<p class='muted'>No data-quality check in this report.</p>"
    if not q.issues:
        return f"<p class='ok'>{q.num_rows} rows, {q.columns_checked} columns checked: no issue.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(i.column)}</td><td>{i.kind}</td><td>{i.severity}</td><td>{html.escape(i.message)}</td></tr>"
        for i in q.issues
    )
    return f"<table><tr><th>column</th><th>kind</th><th>severity</th><th>message</th></tr>{rows}</table>"


def render_html(drift: DriftResult, quality: QualityReport | None = None, performance: Any = None) -> str:
    """The report page as one string: plotly.js inlined once, then every chart."""
    import plotly.io as pio

    content = report_dict(drift, quality, performance)
    figures: list[Any] = []
    perf_html = _performance_html(content["performance"], figures)
    figures = [_feature_figure(f) for f in drift.features if f.reference_hist] + figures
    if drift.prediction is not None and drift.prediction.reference_hist:
        figures.append(_feature_figure(drift.prediction))
    charts = [pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    verdict = "dataset drift" if drift.dataset_drift else "no dataset drift"
    data = json.dumps(content).replace("</", "<\\/")  # a string value cannot close the script tag
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>loopml monitoring report</title>"
        f"<style>{_STYLE}</style></head><body><h1>Monitoring report</h1>"
        f"<p><b>{verdict}</b>: {drift.drift_share:.0%} of tested features drifted (threshold "
        f"{drift.share_threshold:.0%}); reference {drift.reference_rows} rows, "
        f"current {drift.current_rows} rows. "
        f"{html.escape(drift.note)}</p><h2>Drift</h2>{_drift_table(drift)}"
        f"<h2>Data quality</h2>{_quality_html(quality)}<h2>Performance</h2>{perf_html}"
        f"<h2>Distributions</h2>{''.join(charts)}"
        f"<script type='application/json' id='loopml-report'>{data}</script></body></html>"
    )


def write_report(
    path: str | Path, drift: DriftResult, quality: QualityReport | None = None, performance: Any = None
) -> Path:
    """Write the report to ``path``: JSON when it ends in ``.json``, else self-contained HTML.

    ``performance`` is a record with ``to_dict()`` or a dict; a ``"windows"`` list of dicts
    (``start`` plus metric values) is drawn as performance over time.

    >>> write_report("out/drift.html", result, quality=quality_report)  # doctest: +SKIP
    PosixPath('out/drift.html')
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".json":
        text = json.dumps(report_dict(drift, quality, performance), indent=2)
    else:
        text = render_html(drift, quality, performance)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)  # never a half-written report
    return p
