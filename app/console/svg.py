"""Charts and diagrams drawn on the server as inline SVG: no chart library, no script, no CDN.

Why server-side: the pages must work without a build step or outside network (issue 15 §1), and an
SVG string is a few KB that the browser renders at once. Every text is escaped here (``_e``); the
functions are pure (input data → markup), so they are unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def heatmap(rows: Sequence[str], cols: Sequence[str], counts: dict[tuple[str, str], int],
            link: Any = None) -> str:
    """A product × stage matrix: each cell's shade grows with its count; ``link(row, col)`` an href."""
    if not rows or not cols:
        return ""
    cw, ch, left, top = 84, 28, 150, 96
    peak = max(counts.values(), default=0) or 1
    width, height = left + cw * len(cols) + 10, top + ch * len(rows) + 10
    out = [f'<svg class="heatmap" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           'xmlns="http://www.w3.org/2000/svg">']
    for j, col in enumerate(cols):
        x = left + j * cw + cw / 2
        out.append(f'<text x="{x:.0f}" y="{top - 8}" transform="rotate(-35 {x:.0f} {top - 8})" '
                   f'font-size="11">{_e(col)}</text>')
    for i, row in enumerate(rows):
        y = top + i * ch
        out.append(f'<text x="{left - 6}" y="{y + ch / 2 + 4:.0f}" text-anchor="end" font-size="12">{_e(row)}</text>')
        for j, col in enumerate(cols):
            n = counts.get((row, col), 0)
            shade = 0.08 + 0.87 * (n / peak) if n else 0.0
            fill = f"rgba(200,60,40,{shade:.2f})" if n else "#f4f4f4"
            cell = (f'<rect x="{left + j * cw}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}"><title>'
                    f'{_e(row)} · {_e(col)}: {n}</title></rect>'
                    f'<text x="{left + j * cw + cw / 2 - 1:.0f}" y="{y + ch / 2 + 4:.0f}" text-anchor="middle" '
                    f'font-size="12" fill="{"#fff" if shade > 0.55 else "#333"}">{n or ""}</text>')
            href = link(row, col) if link and n else None
            out.append(f'<a href="{_e(href)}">{cell}</a>' if href else cell)
    out.append("</svg>")
    return "".join(out)


def line_chart(points: Sequence[tuple[str, float | None]], *, unit: str = "%", height: int = 160) -> str:
    """A line over labelled buckets (None = no calls in that bucket: a gap, not a zero)."""
    if not points:
        return ""
    left, right, top, bottom = 44, 10, 10, 28
    step = 28
    width = left + right + step * max(len(points) - 1, 1)
    values = [v for _, v in points if v is not None]
    peak = max([*values, 1.0])
    inner = height - top - bottom

    def y(v: float) -> float:
        return top + inner - inner * (v / peak)

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           'xmlns="http://www.w3.org/2000/svg">',
           f'<line x1="{left}" y1="{top + inner}" x2="{width - right}" y2="{top + inner}" stroke="#999"/>',
           f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" font-size="10">{peak:.1f}{_e(unit)}</text>',
           f'<text x="{left - 4}" y="{top + inner}" text-anchor="end" font-size="10">0</text>']
    segment: list[str] = []
    for i, (label, v) in enumerate(points):
        x = left + i * step
        if i % 3 == 0:
            out.append(f'<text x="{x}" y="{height - 8}" text-anchor="middle" font-size="10">{_e(label)}</text>')
        if v is None:
            if len(segment) > 1:
                out.append(f'<polyline fill="none" stroke="#c83c28" stroke-width="2" points="{" ".join(segment)}"/>')
            segment = []
            continue
        segment.append(f"{x},{y(v):.1f}")
        out.append(f'<circle cx="{x}" cy="{y(v):.1f}" r="2.5" fill="#c83c28"><title>{_e(label)}: {v:.2f}{_e(unit)}'
                   '</title></circle>')
    if len(segment) > 1:
        out.append(f'<polyline fill="none" stroke="#c83c28" stroke-width="2" points="{" ".join(segment)}"/>')
    out.append("</svg>")
    return "".join(out)


def timeline(stages: Sequence[dict[str, Any]], *, width: int = 720) -> str:
    """The stage timeline as bars from each stage's entry to its end (an open stage: to now)."""
    spans = [(s, float(s.get("start_s") or 0), float(s.get("duration_ms") or 0) / 1000) for s in stages]
    if not spans:
        return ""
    end = max(start + length for _, start, length in spans) or 1.0
    left, bar, gap = 160, 16, 6
    scale = (width - left - 70) / end
    height = len(spans) * (bar + gap) + 8
    out = [f'<svg class="timeline" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           'xmlns="http://www.w3.org/2000/svg">']
    for i, (s, start, length) in enumerate(spans):
        y = 4 + i * (bar + gap)
        colour = "#e0a030" if s.get("open") else ("#c83c28" if s.get("outcome") in ("failed", "error") else "#3a7d44")
        out.append(f'<text x="{left - 6}" y="{y + bar - 4}" text-anchor="end" font-size="12">'
                   f'{_e(s.get("title") or s.get("stage"))}</text>')
        out.append(f'<rect x="{left + start * scale:.1f}" y="{y}" width="{max(length * scale, 2):.1f}" '
                   f'height="{bar}" fill="{colour}"><title>{_e(s.get("stage"))}: {length:.1f} s</title></rect>')
        out.append(f'<text x="{left + (start + length) * scale + 4:.1f}" y="{y + bar - 4}" font-size="11">'
                   f'{_e(human_ms(s.get("duration_ms")))}</text>')
    out.append("</svg>")
    return "".join(out)


def human_ms(ms: Any) -> str:
    if ms is None:
        return "-"
    s = float(ms) / 1000
    if s < 1:
        return f"{float(ms):.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


# --- flow diagrams ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    name: str
    title: str
    kind: str
    rank: int
    slot: int


KIND_COLOURS = {"auto": "#e8eef7", "call": "#fdf1dc", "user": "#e3f4e1", "end": "#eeeeee", "wait": "#f3e5f5"}


def layout(start: str, edges: dict[str, list[str]], weak: frozenset[str] = frozenset(),
           ) -> tuple[dict[str, tuple[int, int]], set[tuple[str, str]]]:
    """Layered layout of a graph: rank = longest path from ``start`` over forward edges, slot = order
    within the rank. Back edges (loops: G9 audit, G10 reject) are found by a depth-first walk and
    returned apart, so the ranking terminates and they can be drawn differently. ``weak`` nodes (a
    blueprint's failed-call stage, which every call node may enter and whose retries lead back to
    any of them) are left out of the walk and placed one rank below their lowest predecessor; their
    own edges count as back edges.

    Why our own: a small Sugiyama-lite is enough for blueprints of a few dozen nodes, and keeps the
    diagram free of a JavaScript graph library."""
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}
    order: list[str] = []
    found: list[str] = []  # discovery order: a node's ``next`` is walked first, so the main path leads
    strong = {n: [c for c in cs if c not in weak] for n, cs in edges.items() if n not in weak}

    def visit(node: str) -> None:  # iterative DFS (a deep blueprint must not hit the recursion limit)
        stack: list[tuple[str, Iterator[str]]] = [(node, iter(strong.get(node, [])))]
        found.append(node)
        state[node] = 1
        while stack:
            current, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[current] = 2
                order.append(current)
                stack.pop()
                continue
            if state.get(child) == 1:
                back.add((current, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(strong.get(child, []))))
                found.append(child)

    if start in strong:
        visit(start)
    rank: dict[str, int] = {}
    for n in reversed(order):  # reverse post-order is a topological order of the forward edges
        rank.setdefault(n, 0)
        for child in strong.get(n, []):
            if (n, child) not in back:
                rank[child] = max(rank.get(child, 0), rank[n] + 1)
    placing = list(reversed(order))
    # then the weak nodes, and what only they (or nothing) lead to: below their lowest predecessor
    for w in [*sorted(n for n in edges if n in weak), *(n for n in edges if n not in weak and n not in state)]:
        rank[w] = max((rank[p] + 1 for p, cs in edges.items() if w in cs and p in rank), default=0)
        back.update((w, c) for c in edges.get(w, []) if c in rank and c != w)
        placing.append(w)
    slots: dict[int, int] = {}
    placed: dict[str, tuple[int, int]] = {}
    first = {n: i for i, n in enumerate(found)}
    for n in sorted(placing, key=lambda n: first.get(n, len(first))):  # in discovery order: main path left
        r = rank[n]
        placed[n] = (r, slots.get(r, 0))
        slots[r] = slots.get(r, 0) + 1
    return placed, back


def _short(text: str, width: int = 10) -> str:
    """A box holds about ten CJK characters; the whole title is the box's tooltip."""
    return text if len(text) <= width else text[:width - 1] + "…"


def flow_diagram(name: str, start: str, nodes: dict[str, tuple[str, str, list[str]]], counts: dict[str, int],
                 link: Any = None, weak: frozenset[str] = frozenset()) -> str:
    """A blueprint as boxes and arrows: ``nodes`` is name → (title, kind, successors); ``counts`` the
    open orders sitting at each node, shown as a badge (a link to them when ``link(node)`` gives one)."""
    edges = {n: list(dict.fromkeys(s for s in succ if s in nodes)) for n, (_, _, succ) in nodes.items()}
    placed, back = layout(start, edges, weak)
    bw, bh, dx, dy, pad = 150, 46, 190, 70, 12
    ranks = max((r for r, _ in placed.values()), default=0) + 1
    widest = max((s for _, s in placed.values()), default=0) + 1
    width, height = pad * 2 + dx * (widest - 1) + bw + 40, pad * 2 + dy * (ranks - 1) + bh

    def centre(n: str) -> tuple[float, float]:
        r, s = placed[n]
        return pad + s * dx + bw / 2, pad + r * dy + bh / 2

    out = [f'<svg class="flow" data-flow="{_e(name)}" role="img" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg"><defs><marker id="arr-{_e(name)}" '
           'viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M 0 0 L 10 5 L 0 10 z" fill="#777"/></marker></defs>']
    for src, targets in edges.items():
        for dst in targets:
            (x1, y1), (x2, y2) = centre(src), centre(dst)
            if (src, dst) in back:  # a loop back up: a dashed curve out to the right
                bend = max(x1, x2) + bw / 2 + 30
                out.append(f'<path d="M {x1 + bw / 2:.0f} {y1:.0f} C {bend:.0f} {y1:.0f} {bend:.0f} {y2:.0f} '
                           f'{x2 + bw / 2:.0f} {y2:.0f}" fill="none" stroke="#999" stroke-dasharray="4 3" '
                           f'marker-end="url(#arr-{_e(name)})"/>')
            else:
                out.append(f'<line x1="{x1:.0f}" y1="{y1 + bh / 2:.0f}" x2="{x2:.0f}" y2="{y2 - bh / 2:.0f}" '
                           f'stroke="#777" marker-end="url(#arr-{_e(name)})"/>')
    for n, (title, kind, _) in nodes.items():
        cx, cy = centre(n)
        x, y = cx - bw / 2, cy - bh / 2
        count = counts.get(n, 0)
        out.append(f'<g class="node" data-node="{_e(n)}"><rect x="{x:.0f}" y="{y:.0f}" width="{bw}" height="{bh}" '
                   f'rx="6" fill="{KIND_COLOURS.get(kind, "#fff")}" stroke="{"#c83c28" if count else "#888"}"/>'
                   f'<title>{_e(title or n)}</title><text x="{cx:.0f}" y="{y + 19:.0f}" text-anchor="middle" '
                   f'font-size="13">{_e(_short(title or n))}</text>'
                   f'<text x="{cx:.0f}" y="{y + 36:.0f}" text-anchor="middle" font-size="10" fill="#555">'
                   f'{_e(n)} · {_e(kind)}</text>')
        if count:
            badge = (f'<circle cx="{x + bw:.0f}" cy="{y:.0f}" r="13" fill="#c83c28"/><text class="count" '
                     f'x="{x + bw:.0f}" y="{y + 4:.0f}" text-anchor="middle" font-size="11" fill="#fff">{count}</text>')
            href = link(n) if link else None
            out.append(f'<a href="{_e(href)}">{badge}</a>' if href else badge)
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
