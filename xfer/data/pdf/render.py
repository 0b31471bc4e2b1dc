"""Draw one density plot the way matplotlib draws it, at a fraction of the cost.

A plot is the density f(x) evaluated at sampled observations x and drawn as a line, inside
axes with a black frame, outward ticks and numeric tick labels, on white. The layout follows
matplotlib's defaults (subplot margins, 5% data margins, tick length and padding, line width,
colour C0, DejaVu Sans) scaled to the image size, and the tick positions come from
matplotlib's own ``MaxNLocator``, so the images look like the seed study's matplotlib figures.

Why not matplotlib itself: a figure per image costs ~25 ms in figure/axes set-up, text layout
and the PNG encoder, which is 10k images x 25 ms = 4 min per 10k-image dataset on one core.
Drawing directly with Pillow at 2x and box-downsampling (for antialiasing) costs ~2-3 ms.
``benchmarks/render_speed.py`` measures the two side by side.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 2  # draw at 2x and box-filter down: antialiased lines for ~4x the pixel work
LINE_COLOR = (31, 119, 180)  # matplotlib "C0"
REFERENCE_SIZE_PX = 256  # sizes below are matplotlib's at this image size, scaled linearly

# matplotlib defaults (rcParams), in points at a 256 px, 100 dpi figure
_PT_PER_PX = 72 / 100
_FONT_PT = 7.0  # 10 pt would crowd a 256 px figure; 7 pt keeps matplotlib's look at this size
_LINE_PT = 1.5
_SPINE_PT = 0.8
_TICK_LEN_PT = 3.5
_TICK_PAD_PT = 3.5
_MARGINS = 0.05  # axes.xmargin / axes.ymargin
_SUBPLOT = {"left": 0.125, "right": 0.9, "bottom": 0.11, "top": 0.88}
# The axes' share of the image, per side: what one pixel of each axis is, for the audit
AXES_WIDTH_FRACTION = _SUBPLOT["right"] - _SUBPLOT["left"]  # 0.775
AXES_HEIGHT_FRACTION = _SUBPLOT["top"] - _SUBPLOT["bottom"]  # 0.77
_MINUS = "\u2212"  # matplotlib's unicode minus


@functools.lru_cache(maxsize=8)
def _font(size_px: int) -> ImageFont.FreeTypeFont:
    import matplotlib  # only for the path of the DejaVu Sans font it ships

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), size_px)


@functools.lru_cache(maxsize=64)
def _locator(nbins: int):
    from matplotlib.ticker import MaxNLocator

    # matplotlib's AutoLocator: MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10]) with
    # "auto" resolved from the axis length, as Axis.get_tick_space does (below).
    return MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10])


def _tick_space(length_pt: float, font_pt: float, per_label: float) -> int:
    # XAxis.get_tick_space: length / (3 * font size); YAxis: length / (2 * font size); clipped
    # to [1, 9] by MaxNLocator's "auto" mode.
    return int(np.clip(math.floor(length_pt / (font_pt * per_label)), 1, 9))


def axis_limits(lo, hi):
    """Autoscaled axis limits of data spanning [lo, hi], with matplotlib's 5% margins; a
    constant gets +-5.5%, like matplotlib's nonsingular expansion followed by the margin.
    Elementwise on arrays (the audit computes thousands of plots' limits at once)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    flat = hi - lo <= 1e-12 * np.maximum(1.0, np.abs(hi))
    half = np.where(hi != 0, 0.05 * np.abs(hi), 0.05)
    lo, hi = np.where(flat, hi - half, lo), np.where(flat, hi + half, hi)
    span = hi - lo
    return lo - _MARGINS * span, hi + _MARGINS * span


def data_limits(values: np.ndarray) -> tuple[float, float]:
    """The autoscaled axis limits of ``values`` (:func:`axis_limits` of their range)."""
    lo, hi = axis_limits(values.min(), values.max())
    return float(lo), float(hi)


def format_ticks(ticks: np.ndarray) -> list[str]:
    """Tick labels with the fewest decimals that keep every tick exact, like ScalarFormatter."""
    for decimals in range(0, 7):
        if np.allclose(np.round(ticks, decimals), ticks, rtol=0, atol=1e-9 * max(1.0, np.abs(ticks).max())):
            break
    labels = [f"{t:.{decimals}f}" if abs(t) < 1e6 else f"{t:.3g}" for t in ticks]
    return [label.replace("-", _MINUS) if not set(label) <= set("-0.") else label.lstrip("-")
            for label in labels]


def render_plot(x: np.ndarray, y: np.ndarray, size_px: int = 256, tick_labels: bool = True) -> np.ndarray:
    """Rasterise the line through (x, y) in autoscaled axes; returns size×size×3 uint8 RGB.

    ``tick_labels`` False draws the frame and the curve only. The tick marks go with the
    labels: MaxNLocator puts them at round numbers, so their spacing in pixels shows the scale
    too. Without both, a change of location or scale is invisible (the axes autoscale), which
    is what the audit's "scale-only" pairs mean."""
    scale = size_px / REFERENCE_SIZE_PX * SUPERSAMPLE  # canvas px per reference px
    pt = scale / _PT_PER_PX  # canvas px per point
    canvas = size_px * SUPERSAMPLE
    image = Image.new("RGB", (canvas, canvas), "white")
    draw = ImageDraw.Draw(image)

    left, right = _SUBPLOT["left"] * canvas, _SUBPLOT["right"] * canvas
    top, bottom = (1 - _SUBPLOT["top"]) * canvas, (1 - _SUBPLOT["bottom"]) * canvas
    xlo, xhi = data_limits(x)
    ylo, yhi = data_limits(y)

    def to_px(xs, ys):
        px = left + (xs - xlo) / (xhi - xlo) * (right - left)
        py = bottom - (ys - ylo) / (yhi - ylo) * (bottom - top)
        return px, py

    px, py = to_px(x, y)
    draw.line(list(zip(px.tolist(), py.tolist())), fill=LINE_COLOR,
              width=max(SUPERSAMPLE, round(_LINE_PT * pt)), joint="curve")  # >= 1 output px

    spine = max(1, round(_SPINE_PT * pt))
    draw.rectangle([left, top, right, bottom], outline="black", width=spine)
    if not tick_labels:
        return np.asarray(image.reduce(SUPERSAMPLE))

    font_pt = _FONT_PT * size_px / REFERENCE_SIZE_PX
    font = _font(max(6, round(_FONT_PT * pt)))
    tick_len, pad = _TICK_LEN_PT * pt, _TICK_PAD_PT * pt
    width_pt = (right - left) / pt * size_px / REFERENCE_SIZE_PX
    height_pt = (bottom - top) / pt * size_px / REFERENCE_SIZE_PX

    xticks = _locator(_tick_space(width_pt, font_pt, 3)).tick_values(xlo, xhi)
    xticks = xticks[(xticks >= xlo - 1e-12) & (xticks <= xhi + 1e-12)]
    for tick, label in zip(xticks, format_ticks(xticks)):
        tx = to_px(np.float64(tick), np.float64(ylo))[0]
        draw.line([(tx, bottom), (tx, bottom + tick_len)], fill="black", width=spine)
        draw.text((tx, bottom + tick_len + pad), label, fill="black", font=font, anchor="mt")

    yticks = _locator(_tick_space(height_pt, font_pt, 2)).tick_values(ylo, yhi)
    yticks = yticks[(yticks >= ylo - 1e-12) & (yticks <= yhi + 1e-12)]
    for tick, label in zip(yticks, format_ticks(yticks)):
        ty = to_px(np.float64(xlo), np.float64(tick))[1]
        draw.line([(left - tick_len, ty), (left, ty)], fill="black", width=spine)
        draw.text((left - tick_len - pad, ty), label, fill="black", font=font, anchor="rm")

    return np.asarray(image.reduce(SUPERSAMPLE))
