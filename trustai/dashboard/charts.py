"""Plotly figures (as plain JSON-ready dicts, drawn in the browser by the plotly.js that ships inside
the ``plotly`` package) of a run's checks over training steps: a line per metric, each point coloured
by the finding's status at that step, the pack's thresholds as dashed lines, and the first checkpoint
whose gate is blocked marked on every chart."""

from typing import Any

from trustai.dashboard.data import CheckSeries

STATUS_COLOURS = {
    "pass": "#1a7f37",
    "warn": "#bf8700",
    "inconclusive": "#8250df",
    "fail": "#cf222e",
    "error": "#82071e",
}
_OTHER = "#57606a"


def check_figure(series: CheckSeries, first_blocked: int | None) -> dict[str, Any]:
    """One check's figure: ``{"data": [...], "layout": {...}}`` for ``Plotly.newPlot``."""
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": line.metric,
            "x": line.steps,
            "y": line.values,
            "text": line.statuses,
            "hovertemplate": f"{line.metric}<br>step %{{x}}: %{{y}}<br>%{{text}}<extra></extra>",
            "marker": {"size": 9, "color": [STATUS_COLOURS.get(s, _OTHER) for s in line.statuses]},
        }
        for line in series.lines
    ]
    shapes, notes = [], []
    bounds: dict[tuple[str, float], list[str]] = {}  # one dashed line per limit, naming its metrics
    for metric, limits in series.thresholds.items():
        for op, limit in limits.items():
            bounds.setdefault((op, limit), []).append(metric)
    for (op, limit), metrics in bounds.items():
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": limit,
                "y1": limit,
                "line": {"color": "#cf222e", "dash": "dash", "width": 1.5},
            }
        )
        notes.append(
            {
                "xref": "paper",
                "x": 0,
                "y": limit,
                "xanchor": "left",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 11, "color": "#cf222e"},
                "text": f"{', '.join(metrics)} {op} {limit:g}",
            }
        )
    if first_blocked is not None:
        shapes.append(
            {
                "type": "line",
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "x0": first_blocked,
                "x1": first_blocked,
                "line": {"color": "#82071e", "width": 2},
            }
        )
        notes.append(
            {
                "yref": "paper",
                "x": first_blocked,
                "y": 1,
                "xanchor": "right",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 11, "color": "#82071e"},
                "text": f"first blocked checkpoint (step {first_blocked})",
            }
        )
    layout = {
        "title": {"text": f"{series.check_id} ({series.severity})", "font": {"size": 14}},
        "height": 320,
        "margin": {"l": 50, "r": 20, "t": 50, "b": 80},
        "xaxis": {"title": {"text": "training step"}},
        "shapes": shapes,
        "annotations": notes,
        "legend": {"orientation": "h", "y": -0.4},
    }
    return {"data": data, "layout": layout}
