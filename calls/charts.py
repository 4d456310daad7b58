"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, readable by screen readers (each chart has a
title and each bar its value as text)."""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

BAR = "#417690"  # the admin's own blue
MUTED = "#79aec8"
TEXT = "currentColor"


def funnel_svg(steps: list[tuple[str, int]], *, title: str, width: int = 640) -> SafeString:
    """Horizontal bars, one per step, scaled to the first (largest) step, each labelled with its count and its
    share of the step before."""
    row, label_width = 26, 200
    scale = max((value for _, value in steps), default=0) or 1
    height = row * len(steps) + 8
    parts = [_open(width, height, title)]
    previous = None
    for index, (label, value) in enumerate(steps):
        y = 4 + index * row
        bar = round((width - label_width - 110) * value / scale)
        share = f" ({value / previous:.0%})" if previous else ""
        parts.append(
            f'<g class="step" data-label="{escape(label)}" data-value="{value}">'
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" fill="{TEXT}" font-size="12">'
            f"{escape(label)}</text>"
            f'<rect x="{label_width}" y="{y + 2}" width="{bar}" height="{row - 8}" '
            f'fill="{BAR if index < 4 else MUTED}"><title>{escape(label)}: {value}{share}</title></rect>'
            f'<text x="{label_width + bar + 6}" y="{y + 16}" fill="{TEXT}" font-size="12">{value}{share}</text></g>'
        )
        if index < 4:
            previous = value
    parts.append("</svg>")
    return mark_safe("".join(parts))


def columns_svg(points: list[tuple[str, int]], *, title: str, width: int = 640, height: int = 160) -> SafeString:
    """Vertical columns (calls per hour), the tallest reaching the top, labelled every few columns."""
    if not points:
        return mark_safe(f'<p class="help">{escape(title)}: no calls yet.</p>')
    top, bottom, left = 14, 22, 30
    scale = max(value for _, value in points) or 1
    step = (width - left) / len(points)
    parts = [_open(width, height, title)]
    parts.append(f'<text x="2" y="{top + 4}" fill="{TEXT}" font-size="10">{scale}</text>')
    every = max(1, len(points) // 8)
    for index, (label, value) in enumerate(points):
        x = left + index * step
        bar = round((height - top - bottom) * value / scale)
        parts.append(
            f'<g class="column" data-label="{escape(label)}" data-value="{value}">'
            f'<rect x="{x + 1:.1f}" y="{height - bottom - bar}" width="{max(step - 2, 1):.1f}" height="{bar}" '
            f'fill="{BAR}"><title>{escape(label)}: {value}</title></rect>'
        )
        if index % every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 6}" fill="{TEXT}" font-size="10">{escape(label)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _open(width: int, height: int, title: str) -> str:
    """Drawn at `width` but scaled down to its box: the dashboard's column is narrower than the campaign page."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" width="100%" '
        f'style="max-width: {width}px" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
    )
