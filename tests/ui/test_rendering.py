"""What the UI renders from data: chart series (long histories thinned) and model cards."""

from __future__ import annotations

import itertools

from loopml.tracking.records import Metric
from loopml.ui.registry import render_markdown
from loopml.ui.runs import MAX_CHART_POINTS, _thin


def test_a_long_history_is_thinned_evenly_keeping_both_ends() -> None:
    points = [Metric("loss", 1.0 / (s + 1), 1000 + s, s) for s in range(10_001)]
    thinned = _thin(points)
    assert len(thinned) <= MAX_CHART_POINTS + 1
    assert thinned[0] is points[0] and thinned[-1] is points[-1]
    steps = [m.step for m in thinned]
    gaps = {b - a for a, b in itertools.pairwise(steps[:-1])}  # the appended last point aside
    assert steps == sorted(steps) and len(gaps) == 1  # evenly spaced


def test_a_short_history_is_sent_whole() -> None:
    points = [Metric("acc", 0.5, 1000 + s, s) for s in range(MAX_CHART_POINTS)]
    assert _thin(points) == points


def test_a_model_card_renders_as_html_without_running_anything_in_it() -> None:
    card = "# churn v2\n\n| metric | value |\n|---|---|\n| accuracy | 0.74 |\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))"
    html = str(render_markdown(card))
    assert "<h1>churn v2</h1>" in html and "<td>accuracy</td>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html
