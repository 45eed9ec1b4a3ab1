"""Inline SVG charts for the evidence report: horizontal bars for counts by category, and
columns per week (stacked by area, or one series). Every label is escaped; the markup is
returned as ``Markup`` so the template inserts it as is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

WIDTH = 760
PALETTE = (
    "#2f6db5",
    "#e0803a",
    "#3c9a5f",
    "#c0392b",
    "#8e5bb5",
    "#7f8c8d",
    "#c7a008",
    "#16a0a0",
    "#d35486",
    "#5d6d7e",
)
STATE_COLOURS = {
    "ok": "#3c9a5f",
    "due": "#c7a008",
    "overdue": "#e0803a",
    "rotate now": "#c0392b",
}


def _svg(height: int, title: str, body: list[str]) -> Markup:
    label = escape(title)
    # Every text interpolated here and in ``body`` went through ``escape``.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{label}" class="chart">'
        f"<title>{label}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, content: object, *, anchor: str = "start", size: int = 12) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">'
        f"{escape(str(content))}</text>"
    )


def bar_chart(
    title: str, counts: Mapping[str, int], colours: Mapping[str, str] | None = None
) -> Markup:
    """Horizontal bars, one per category, with its count."""
    rows = list(counts.items())
    bar, gap, left, right = 22, 8, 150, 60
    height = max(1, len(rows)) * (bar + gap) + 10
    top = max((value for _, value in rows), default=0) or 1
    body: list[str] = []
    for index, (name, value) in enumerate(rows):
        y = 5 + index * (bar + gap)
        width = (WIDTH - left - right) * value / top
        colour = (colours or {}).get(name, PALETTE[index % len(PALETTE)])
        body.append(_text(left - 8, y + bar * 0.7, name, anchor="end"))
        body.append(
            f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{bar}" fill="{colour}"/>'
        )
        body.append(_text(left + width + 6, y + bar * 0.7, value))
    return _svg(height, title, body)


def _axis(weeks: Sequence[str], left: int, step: float, base: float) -> list[str]:
    every = max(1, len(weeks) // 8)
    return [
        _text(left + index * step + step / 2, base + 16, week, anchor="middle", size=10)
        for index, week in enumerate(weeks)
        if index % every == 0
    ]


def top_series(series: Mapping[str, Sequence[int]], keep: int = 7) -> dict[str, list[int]]:
    """The ``keep`` series with the largest totals (largest first) and the sum of the others
    as ``other``, so that every series drawn has a colour of its own."""
    ranked = sorted(series.items(), key=lambda item: (-sum(item[1]), item[0]))
    kept = {name: list(values) for name, values in ranked[:keep]}
    rest = [values for _, values in ranked[keep:]]
    if rest:
        kept["other"] = [sum(column) for column in zip(*rest, strict=True)]
    return kept


def week_columns(title: str, weeks: Sequence[str], series: Mapping[str, Sequence[int]]) -> Markup:
    """Columns per week, stacked by series (an area of the audit log), with a legend."""
    names = list(series)
    left, right, top_margin, plot = 50, 10, 10, 180
    legend_rows = (len(names) + 4) // 5
    height = top_margin + plot + 26 + legend_rows * 18 + 6
    step = (WIDTH - left - right) / max(1, len(weeks))
    totals = [sum(series[name][i] for name in names) for i in range(len(weeks))]
    top = max(totals, default=0) or 1
    base = top_margin + plot
    body = [
        f'<line x1="{left}" y1="{base}" x2="{WIDTH - right}" y2="{base}" stroke="#999"/>',
        _text(left - 6, top_margin + 10, top, anchor="end", size=10),
        _text(left - 6, base, 0, anchor="end", size=10),
    ]
    for index in range(len(weeks)):
        y = float(base)
        for number, name in enumerate(names):
            value = series[name][index]
            if not value:
                continue
            h = plot * value / top
            y -= h
            body.append(
                f'<rect x="{left + index * step + 1:.1f}" y="{y:.1f}" '
                f'width="{max(1.0, step - 2):.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[number % len(PALETTE)]}"/>'
            )
    body += _axis(weeks, left, step, base)
    for number, name in enumerate(names):
        x = left + (number % 5) * 140
        y = base + 30 + (number // 5) * 18
        body.append(
            f'<rect x="{x}" y="{y - 10}" width="10" height="10" '
            f'fill="{PALETTE[number % len(PALETTE)]}"/>'
        )
        body.append(_text(x + 14, y, name, size=11))
    return _svg(height, title, body)
