"""What the UI renders from data: chart series (long histories thinned), model cards and pipeline DAGs."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

from loopml.pipelines.records import StepRecord
from loopml.tracking.records import Metric
from loopml.ui._dag import dag_svg
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


def _step(name: str, upstream: list[str], status: str = "SUCCEEDED", cached: bool = False) -> StepRecord:
    return StepRecord("r1", name, status, cached=cached, started_at=1000, finished_at=3500, upstream=upstream)


def test_a_pipeline_dag_is_drawn_as_layered_svg_with_status_cache_and_duration() -> None:
    steps = [
        _step("load", [], cached=True, status="CACHED"),
        _step("clean", ["load"]),
        _step("score[0]", ["load"]),
        _step("score[1]", ["load"]),
        _step("train<&>", ["clean", "score"], status="FAILED"),
    ]
    svg = dag_svg(steps)
    assert svg is not None
    root = ET.fromstring(str(svg))  # well-formed XML: names are escaped
    ns = "{http://www.w3.org/2000/svg}"
    nodes = {g.get("data-step"): g for g in root.iter(f"{ns}g") if g.get("class") == "dag-node"}
    assert set(nodes) == {s.step for s in steps}
    edges = {
        (p.get("data-from"), p.get("data-to")) for p in root.iter(f"{ns}path") if p.get("class") == "dag-edge"
    }
    assert edges == {
        ("load", "clean"),
        ("load", "score[0]"),
        ("load", "score[1]"),
        ("clean", "train<&>"),
        ("score[0]", "train<&>"),
        ("score[1]", "train<&>"),
    }
    x = {name: float(g.find(f"{ns}rect").get("x")) for name, g in nodes.items()}  # type: ignore[union-attr]
    assert x["load"] < x["clean"] == x["score[0]"] == x["score[1]"] < x["train<&>"]
    texts = {name: " ".join(t.text or "" for t in g.iter(f"{ns}text")) for name, g in nodes.items()}
    assert texts["load"] == "load cache hit · 2.50s"
    assert texts["train<&>"] == "train<&> failed · 2.50s"
    fills = {name: g.find(f"{ns}rect").get("fill") for name, g in nodes.items()}  # type: ignore[union-attr]
    assert fills["train<&>"] != fills["clean"] != fills["load"]


def test_a_run_without_steps_draws_no_dag() -> None:
    assert dag_svg([]) is None


def test_a_logged_table_json_is_previewed_as_a_table_and_anything_else_as_text() -> None:
    from loopml.ui.artifacts import _logged_table

    table = _logged_table(b'{"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}', False)
    assert table == {"header": ["a", "b"], "rows": [[1, "x"], [2, "y"]], "truncated": False}
    assert _logged_table(b'{"columns": ["a"], "data": [[1, 2]]}', False) is None  # ragged row
    assert _logged_table(b'{"columns": ["a"], "data": [[1]], "other": 1}', False) is None
    assert _logged_table(b'{"columns": ["a"], "data": [[1]]}', True) is None  # cut at the preview size
    assert _logged_table(b"[1, 2]", False) is None and _logged_table(b"{not json", False) is None
