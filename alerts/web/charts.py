"""Small server-rendered SVG charts for the admin: no JavaScript, nothing from a CDN."""

from __future__ import annotations

from datetime import date
from html import escape

COLOURS = {
    "articles": "#8a1538",
    "sent": "#2e7d32",
    "failed": "#ef6c00",
    "bounced": "#b00020",
}


def bars(
    days: list[date],
    series: dict[str, list[int]],
    title: str,
    width: int = 720,
    height: int = 200,
) -> str:
    """Stacked bars, one per day, with an axis, a legend and a <title> per bar for the numbers."""
    left, bottom, top = 44, 24, 12
    plot_width, plot_height = width - left - 8, height - bottom - top
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    peak = max([*totals, 1])
    step = plot_width / max(len(days), 1)
    bar = max(step - 3, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 22}" '
        f'role="img" aria-labelledby="chart-{id(series)}" class="chart">',
        f'<title id="chart-{id(series)}">{escape(title)}</title>',
        f'<line x1="{left}" y1="{top + plot_height}" x2="{width - 8}" y2="{top + plot_height}" '
        'stroke="#999"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_height}" text-anchor="end" font-size="11">0</text>',
    ]
    for index, day in enumerate(days):
        x = left + index * step
        y = float(top + plot_height)
        for name, values in series.items():
            value = values[index]
            if not value:
                continue
            h = plot_height * value / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS.get(name, "#555")}"><title>{day:%d %b}: {value} {escape(name)}'
                "</title></rect>"
            )
        if index % 5 == 0 or index == len(days) - 1:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle" '
                f'font-size="11">{day:%d %b}</text>'
            )
    x = left
    for name in series:
        colour = COLOURS.get(name, "#555")
        label = f"{escape(name)} ({sum(series[name])})"
        parts.append(
            f'<rect x="{x}" y="{height + 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{height + 17}" font-size="12">{label}</text>'
        )
        x += 24 + 8 * len(name) + 40
    parts.append("</svg>")
    return "".join(parts)
