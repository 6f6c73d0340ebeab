"""PNG figures for audit evidence, drawn with matplotlib's object API on the Agg canvas (no pyplot,
no global backend switch, safe in worker threads)."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor


@dataclass
class Panel:
    """One subplot of line series: ``series`` maps a label to its (x, y) points."""

    title: str
    xlabel: str
    ylabel: str
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    hline: float | None = None  # a threshold drawn as a dashed line
    hline_label: str = ""


def save_panels(path: Path, panels: list[Panel]) -> Path:
    """Draw ``panels`` side by side (legend outside when there are many series) and write a PNG."""
    figure = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        axes.set_prop_cycle(color=colormaps["tab20"].colors)
        for label, (xs, ys) in panel.series.items():
            axes.plot(xs, ys, marker="o", markersize=3, label=label)
        if panel.hline is not None:
            axes.axhline(
                panel.hline, color="black", linestyle="--", linewidth=1, label=panel.hline_label or None
            )
        axes.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        axes.grid(alpha=0.3)
        if panel.series:
            axes.legend(fontsize=7, ncols=2 if len(panel.series) > 8 else 1)
    figure.savefig(path, dpi=100)
    return path


def save_overlays(path: Path, rows: list[list[tuple[str, Tensor, Tensor | None]]]) -> Path:
    """A grid of images with optional heatmaps over them, and write a PNG.

    Each row is a list of ``(title, image C×H×W in [0, 1], heat H×W or None)``; a heat map is scaled
    to its own maximum and drawn semi-transparent over the image.
    """
    columns = max(len(row) for row in rows)
    figure = Figure(figsize=(2.2 * columns, 2.3 * len(rows)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(rows), columns, squeeze=False)
    for axes_row, row in zip(grid, rows, strict=True):
        for axes in axes_row:
            axes.axis("off")
        for axes, (title, image, heat) in zip(axes_row, row, strict=False):
            axes.imshow(np.clip(image.detach().float().permute(1, 2, 0).cpu().numpy(), 0, 1))
            if heat is not None:
                values = heat.detach().float().cpu().numpy()
                axes.imshow(
                    values / max(float(values.max()), 1e-12), cmap="inferno", alpha=0.6, vmin=0, vmax=1
                )
            axes.set_title(title, fontsize=7)
    figure.savefig(path, dpi=100)
    return path
