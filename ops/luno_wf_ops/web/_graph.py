"""A workflow's status graph drawn as SVG, with the runs at each status on it.

Laid out in columns by distance from the starting statuses (breadth first), each status a
box linking to its runs. Drawn with presentation attributes and the UI's stylesheet
classes only: no inline style and no script, so it renders under a strict CSP.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import urlencode

import attrs

from .._catalog import LoadedWorkflow

__all__ = ["NodeCounts", "status_graph_svg"]

_NODE_H = 46
_GAP_X = 70
_GAP_Y = 26
_CHAR_W = 7.4
_PAD = 16


@attrs.frozen
class NodeCounts:
    """Runs at one status: all of them, and those paused or stuck among them."""

    total: int = 0
    paused: int = 0


def _layers(loaded: LoadedWorkflow) -> dict[int, int]:
    """Each status's column: its distance from the nearest starting status."""
    statuses = [value for value, _ in loaded.statuses()]
    edges = loaded.edges()
    layer = {start: 0 for start in loaded.starting()}
    frontier = list(layer)
    while frontier:
        following = []
        for node in frontier:
            for source, target in edges:
                if source == node and target not in layer:
                    layer[target] = layer[node] + 1
                    following.append(target)
        frontier = following
    for value in statuses:
        layer.setdefault(value, 0)
    return layer


def _positions(loaded: LoadedWorkflow, width: float) -> dict[int, tuple[float, float]]:
    layer = _layers(loaded)
    rows: dict[int, int] = {}
    positions: dict[int, tuple[float, float]] = {}
    for value, _ in loaded.statuses():
        column = layer[value]
        row = rows.get(column, 0)
        rows[column] = row + 1
        positions[value] = (
            _PAD + column * (width + _GAP_X),
            _PAD + row * (_NODE_H + _GAP_Y),
        )
    return positions


def _edge(start: tuple[float, float], end: tuple[float, float], width: float) -> str:
    (x1, y1), (x2, y2) = start, end
    if x2 > x1:  # forward: right side to left side
        ax, ay, bx, by = x1 + width, y1 + _NODE_H / 2, x2, y2 + _NODE_H / 2
        bend = (bx - ax) / 2
        path = (
            f"M{ax:.0f},{ay:.0f} "
            f"C{ax + bend:.0f},{ay:.0f} {bx - bend:.0f},{by:.0f} {bx:.0f},{by:.0f}"
        )
    else:  # back or sideways: below the boxes
        ax, ay = x1 + width / 2, y1 + _NODE_H
        bx, by = x2 + width / 2, y2 + _NODE_H
        dip = max(ay, by) + _GAP_Y + 10
        path = f"M{ax:.0f},{ay:.0f} C{ax:.0f},{dip:.0f} {bx:.0f},{dip:.0f} {bx:.0f},{by:.0f}"
    return f'<path class="edge" d="{path}" marker-end="url(#arrow)"/>'


def _node(
    loaded: LoadedWorkflow,
    value: int,
    name: str,
    at: tuple[float, float],
    width: float,
    counts: NodeCounts,
    runs_url: str,
) -> str:
    x, y = at
    kinds = ["node"]
    if value in loaded.starting():
        kinds.append("start")
    if value in loaded.terminal():
        kinds.append("terminal")
    if counts.total:
        kinds.append("busy")
    if counts.paused:
        kinds.append("paused")
    href = f"{runs_url}?{urlencode({'workflow': loaded.name, 'status': name})}"
    line = f"{counts.total} run{'s' if counts.total != 1 else ''}"
    if counts.paused:
        line += f" · {counts.paused} paused"
    cx = x + width / 2
    return (
        f'<a href="{escape(href)}" class="{" ".join(kinds)}">'
        f"<title>{escape(name)}: {escape(line)}</title>"
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{width:.0f}" height="{_NODE_H}" rx="6"/>'
        f'<text class="label" x="{cx:.0f}" y="{y + 19:.0f}">{escape(name)}</text>'
        f'<text class="count" x="{cx:.0f}" y="{y + 36:.0f}">{escape(line)}</text></a>'
    )


def status_graph_svg(
    loaded: LoadedWorkflow, counts: Mapping[int, NodeCounts], runs_url: str
) -> str:
    """The status graph of ``loaded`` as an SVG element, each status linking to its runs."""
    statuses = loaded.statuses()
    if not statuses:
        return ""
    width = max(120.0, max(len(name) for _, name in statuses) * _CHAR_W + 2 * _PAD)
    positions = _positions(loaded, width)
    right = max(x for x, _ in positions.values()) + width + _PAD
    bottom = max(y for _, y in positions.values()) + _NODE_H + _GAP_Y + 24
    parts = [
        f'<svg class="graph" viewBox="0 0 {right:.0f} {bottom:.0f}" width="{right:.0f}" '
        f'height="{bottom:.0f}" role="img" aria-label="status graph of {escape(loaded.name)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path class="arrow" '
        'd="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    parts += [_edge(positions[a], positions[b], width) for a, b in loaded.edges()]
    parts += [
        _node(
            loaded, value, name, positions[value], width, counts.get(value, NodeCounts()), runs_url
        )
        for value, name in statuses
    ]
    parts.append("</svg>")
    return "".join(parts)
