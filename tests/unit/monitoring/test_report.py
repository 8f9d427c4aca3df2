"""The HTML report is self-contained (plotly inlined, no CDN) and carries the JSON content."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from loopml.data.profile import profile_table
from loopml.data.records import DatasetVersion, Field
from loopml.monitoring import check_quality, compute_drift, report_dict, write_report


def _inputs() -> tuple[DatasetVersion, pa.Table]:
    rng = np.random.default_rng(0)
    ref = pa.table({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000)})
    cur = pa.table({"x": rng.normal(1.0, size=2000), "c": rng.choice(["a", "b", "</script>"], 2000)})
    dv = DatasetVersion(
        "d", 1, "", 2000, [Field("x", "double"), Field("c", "string")], profile_table(ref), "", "", 0
    )
    return dv, cur


def test_html_report_is_self_contained_and_embeds_the_json(tmp_path: Path) -> None:
    dv, cur = _inputs()
    drift, quality = compute_drift(dv, cur), check_quality(dv, cur)
    perf = {"windows": [{"start": 0, "accuracy": 0.9}, {"start": 1, "accuracy": 0.8}]}
    html = write_report(tmp_path / "r.html", drift, quality=quality, performance=perf).read_text()
    assert not re.search(r"<script[^>]+src=", html)  # plotly.js inlined, nothing fetched
    assert html.count("Plotly.newPlot") == 3  # two features and performance over time
    embedded = re.search(r"<script type='application/json' id='loopml-report'>(.*?)</script>", html, re.S)
    assert embedded is not None
    assert json.loads(embedded.group(1)) == report_dict(drift, quality, perf)


def test_json_report_has_the_same_content(tmp_path: Path) -> None:
    dv, cur = _inputs()
    drift = compute_drift(dv, cur)
    out = json.loads(write_report(tmp_path / "r.json", drift).read_text())
    assert out == report_dict(drift)
    assert out["drift"]["drifted_columns"] == ["x", "c"] and out["quality"] is None
