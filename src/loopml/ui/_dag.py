"""A pipeline run's DAG as inline SVG, drawn on the server (no JavaScript).

Layered left to right: a step's layer is 1 + the largest layer of its upstream steps (0 when it
has none); steps in one layer are stacked in the order they started. Each node is coloured by
status and labelled with its name, the cache hit and its duration; each edge goes from an
upstream step to the step that consumed its output. The items of a mapped step (``name[0]``,
``name[1]``, ...) are separate nodes; a step downstream of the map gets an edge from each item.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from markupsafe import Markup, escape

from loopml.pipelines.records import StepRecord

MAX_NODES = 300
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 180, 46, 60, 16, 8
_LABEL_CHARS = 20  # about what fits in NODE_W at 13px bold; the full name is the tooltip
# status -> (fill, stroke)
_COLOURS = {
    "SUCCEEDED": ("#e7f5ee", "#1c7c4a"),
    "CACHED": ("#e8eefc", "#2f5bd3"),
    "FAILED": ("#fdecea", "#b42318"),
    "RUNNING": ("#fff4e5", "#a15c00"),
}
_DEFAULT_COLOUR = ("#f1f2f5", "#6b7385")
_ITEM = re.compile(r"^(?P<base>.+)\[\d+\]$")


def _duration(step: StepRecord) -> str:
    d = step.duration_s
    if d is None:
        return ""
    return f"{d:.2f}s" if d < 60 else f"{int(d // 60)}m{int(d % 60):02d}s"


def _short(name: str) -> str:
    return name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"


def edges(steps: Sequence[StepRecord]) -> list[tuple[str, str]]:
    """(upstream, downstream) step-record names; an upstream map resolves to all its items."""
    by_base: dict[str, list[str]] = {}
    for s in steps:
        m = _ITEM.match(s.step)
        by_base.setdefault(m.group("base") if m else s.step, []).append(s.step)
    out: list[tuple[str, str]] = []
    for s in steps:
        for up in s.upstream or []:
            out.extend((src, s.step) for src in by_base.get(up, []) if src != s.step)
    return out


def layers(steps: Sequence[StepRecord], links: list[tuple[str, str]]) -> dict[str, int]:
    """Each step's layer: 0 without upstreams, else 1 + the largest layer of its upstreams."""
    ups: dict[str, list[str]] = {s.step: [] for s in steps}
    for src, dst in links:
        ups[dst].append(src)
    layer: dict[str, int] = {}
    for name in ups:  # iterative DFS; a cycle (not possible from the engine) is cut where it closes
        stack, seen = [name], {name}
        while stack:
            cur = stack[-1]
            todo = [u for u in ups[cur] if u not in layer and u not in seen]
            if todo:
                seen.update(todo)
                stack.extend(todo)
                continue
            stack.pop()
            if cur not in layer:
                layer[cur] = 1 + max((layer[u] for u in ups[cur] if u in layer), default=-1)
    return layer


def dag_svg(steps: Sequence[StepRecord]) -> Markup | None:
    """The SVG of a run's steps and edges, or None when there are no steps or too many to draw."""
    if not steps or len(steps) > MAX_NODES:
        return None
    links = edges(steps)
    layer = layers(steps, links)
    pos: dict[str, tuple[int, int]] = {}
    rows: dict[int, int] = {}
    for s in steps:
        col = layer[s.step]
        row = rows.get(col, 0)
        rows[col] = row + 1
        pos[s.step] = (PAD + col * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(rows) + 1) * NODE_W + max(rows) * GAP_X
    height = PAD * 2 + max(rows.values()) * (NODE_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="pipeline DAG" '
        'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">',
        '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7385"/></marker></defs>',
    ]
    for src, dst in links:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        ax, ay, bx, by = x1 + NODE_W, y1 + NODE_H // 2, x2, y2 + NODE_H // 2
        mid = (ax + bx) // 2
        parts.append(
            f'<path class="dag-edge" data-from="{escape(src)}" data-to="{escape(dst)}" '
            f'd="M{ax},{ay} C{mid},{ay} {mid},{by} {bx},{by}" fill="none" stroke="#6b7385" '
            'stroke-width="1.3" marker-end="url(#dag-arrow)"/>'
        )
    for s in steps:
        x, y = pos[s.step]
        fill, stroke = _COLOURS.get(s.status, _DEFAULT_COLOUR)
        state = "cache hit" if s.cached else s.status.lower()
        detail = " · ".join(p for p in (state, _duration(s)) if p)
        parts.append(
            f'<g class="dag-node" data-step="{escape(s.step)}" data-status="{escape(s.status)}">'
            f"<title>{escape(s.step)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x + 8}" y="{y + 18}" font-size="13" font-weight="600" fill="#1d2330">'
            f"{escape(_short(s.step))}</text>"
            f'<text x="{x + 8}" y="{y + 36}" font-size="11" fill="{stroke}">{escape(detail)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
