"""Pictures for reports, drawn with matplotlib's Agg canvas into PNG bytes.

The same data always gives the same bytes: matplotlib's default style (never the user's rc files), a
fixed size and dpi, no PNG metadata (``Software`` would carry the matplotlib version), fixed hash salt.
"""

import io
import math
from collections.abc import Sequence

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
WIDTH_IN = 7.0
_STYLE = {"svg.hashsalt": "trustai", "font.size": 9, "axes.titlesize": 10, "axes.grid": True}
Point = tuple[float, float]


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def line_chart(title: str, x_label: str, series: dict[str, Sequence[Point]]) -> bytes:
    """Return a PNG line chart with one line per series (sorted by name), x ascending."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(WIDTH_IN, 3.0), dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        for name in sorted(series):
            points = sorted(series[name])
            ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.2)
        ax.set(title=title, xlabel=x_label)
        if len(series) > 1:
            ax.legend(loc="best")
        else:
            ax.set_ylabel(next(iter(series)))
        return _png(fig)


def bar_chart(title: str, bars: Sequence[tuple[str, float]]) -> bytes:
    """Return a PNG horizontal bar chart, one labelled bar per (name, value), values printed.

    A symmetric-log axis is used when values span more than three orders of magnitude, so small
    values stay visible next to large ones.
    """
    with matplotlib.style.context("default"), matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(WIDTH_IN, 0.9 + 0.28 * len(bars)), dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        names, values = [b[0] for b in bars], [b[1] for b in bars]
        positions = range(len(bars))
        ax.barh(positions, values, color="#4c72b0")
        ax.set_yticks(positions, names)
        ax.invert_yaxis()
        magnitudes = [abs(v) for v in values if v]
        if magnitudes and max(magnitudes) / min(magnitudes) > 1e3:
            ax.set_xscale("symlog", linthresh=min(magnitudes))
        for y, value in zip(positions, values, strict=True):
            ax.annotate(f"{value:.4g}", (value, y), xytext=(3, 0), textcoords="offset points", va="center")
        ax.set_title(title)
        return _png(fig)


def panel_bars(title: str, labels: Sequence[str], columns: dict[str, Sequence[float]]) -> bytes:
    """Return a PNG of side-by-side horizontal bar panels, one per column (each on its own scale),
    sharing the row labels: per-group or per-task comparisons such as parity bars. NaN draws no bar."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_STYLE):
        height = 0.9 + 0.28 * len(labels)
        fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
        axes = fig.subplots(1, len(columns), sharey=True, squeeze=False)[0]
        positions = range(len(labels))
        for ax, name in zip(axes, columns, strict=True):
            # A missing value (NaN) gets no bar rather than a misleading zero.
            values = [v if math.isfinite(v) else 0.0 for v in columns[name]]
            present = [math.isfinite(v) for v in columns[name]]
            ax.barh(positions, values, color=["#55a868" if p else "none" for p in present])
            ax.set_title(name)
        axes[0].set_yticks(positions, labels)
        axes[0].invert_yaxis()
        fig.suptitle(title)
        return _png(fig)
