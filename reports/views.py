"""How one evidence record appears in a report, whatever audit produced it: its finding, metrics
against thresholds, inputs and params, its tables, and pictures — a bar chart of its numeric metrics,
line charts of its curve tables (loss, robustness, privacy budget over steps, ...), panel bars of its
per-group tables (parity, per task), and the PNG artifacts it lists once their sha256 matches."""

import math
from itertools import pairwise
from typing import Any

from trustai.reports import charts
from trustai.reports.document import Cite, Content, EvidenceView, Fact, Figure, Table, cell
from trustai.reports.integrity import artifact_intact
from trustai.reports.model import Item, RunEvidence

from trustai.packs.regulatory import describe

MAX_TABLE_ROWS = 20
MAX_PANEL_ROWS = 30
MAX_PANELS = 4
# Tables with these words in their name are series over an x axis (see _x_column).
_CURVE_WORDS = ("curve", "over_", "by_step", "by_epoch", "sweep")
_ID_SUFFIXES = ("index", "_id", "id")  # numeric columns that name rows rather than measure them
_X_NAMES = ("step", "steps", "epoch", "iteration", "severity", "strength", "level", "x")


def _slug(name: str) -> str:
    """A file-name-safe form of a table name."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:60]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Column names: the first row's order, then keys only later rows have, sorted."""
    first = list(rows[0])
    return first + sorted({k for row in rows for k in row} - set(first))


def _numeric_columns(rows: list[dict[str, Any]]) -> list[str]:
    return [c for c in _columns(rows) if all(_number(row.get(c)) is not None for row in rows)]


def _x_column(rows: list[dict[str, Any]], numeric: list[str]) -> str:
    """The x axis of a curve: a conventional x name, else the first strictly increasing column (the
    ledger stores rows with sorted keys, so column order says nothing), else the first column."""
    named = [c for c in _X_NAMES if c in numeric]
    if named:
        return named[0]
    increasing = [c for c in numeric if all(a[c] < b[c] for a, b in pairwise(rows))]
    return (increasing or numeric)[0]


def _curve(name: str, rows: list[dict[str, Any]], title: str) -> bytes | None:
    numeric = _numeric_columns(rows)
    if not any(word in name for word in _CURVE_WORDS) or len(rows) < 2 or len(numeric) < 2:
        return None
    x = _x_column(rows, numeric)
    ys = [c for c in numeric if c != x]
    series = {y: [(float(row[x]), float(row[y])) for row in rows] for y in ys}
    return charts.line_chart(title, x, series)


def _panels(rows: list[dict[str, Any]], title: str) -> bytes | None:
    """Per-group bars (parity, per task, per corruption): rows labelled by their text columns (those
    that vary), one panel per numeric measure; a row lacking a measure gets no bar in its panel."""
    columns = _columns(rows)
    text = [c for c in columns if all(isinstance(row.get(c), str) for row in rows)]
    text = [c for c in text if len({row[c] for row in rows}) > 1]
    measures = [
        c
        for c in columns
        if not c.endswith(_ID_SUFFIXES)
        and any(_number(row.get(c)) is not None for row in rows)
        and all(row.get(c) is None or _number(row.get(c)) is not None for row in rows)
    ][:MAX_PANELS]
    if not text or not measures or not 2 <= len(rows) <= MAX_PANEL_ROWS:
        return None
    labels = [" · ".join(row[c] for c in text) for row in rows]
    if len(set(labels)) != len(labels):
        return None
    values = {c: [_number(row.get(c)) or math.nan for row in rows] for c in measures}
    return charts.panel_bars(title, labels, values)


def _metrics(item: Item, cites: list[Cite]) -> tuple[Table | None, bytes | None]:
    metrics = item.payload.get("metrics") or {}
    thresholds: dict[str, list[dict[str, Any]]] = {}
    for t in item.finding.payload.get("thresholds", []) if item.finding else []:
        thresholds.setdefault(t.get("metric"), []).append(t)
    names = sorted(set(metrics) | set(thresholds))
    if not names:
        return None, None
    rows = []
    for name in names:
        bounds = thresholds.get(name, [])
        limit = "; ".join(f"{'≥' if t.get('op') == 'min' else '≤'} {cell(t.get('limit'))}" for t in bounds)
        held = "—" if not bounds else ("held" if all(t.get("held") for t in bounds) else "VIOLATED")
        rows.append([name, cell(metrics.get(name)), limit or "—", held])
    table = Table(f"{item.check_id}: metrics", ["metric", "value", "threshold", "result"], rows, cites)
    bars = [(n, v) for n in sorted(metrics) if (v := _number(metrics[n])) is not None]
    chart = charts.bar_chart(f"{item.label}: numeric metrics", bars) if len(bars) > 1 else None
    return table, chart


def _facts(item: Item, cites: list[Cite]) -> list[Fact]:
    p = item.payload
    facts = []
    if item.finding is not None:
        f = item.finding.payload
        text = f"{f.get('status')} ({f.get('severity')}): {f.get('message')}"
        facts.append(Fact("Finding", text, cites=[Cite.of(item.finding)]))
    if item.references:
        facts.append(Fact("Serves", "; ".join(describe(r) for r in item.references), cites=cites))
    facts.append(
        Fact("Measured", f"{cell(p.get('started_at'))} for {cell(p.get('duration_s'))} s", cites=cites)
    )
    inputs = {k: v for k, v in sorted((p.get("inputs") or {}).items()) if v is not None}
    if inputs:
        facts.append(Fact("Inputs", "; ".join(f"{k}: {cell(v)}" for k, v in inputs.items()), cites=cites))
    if p.get("params"):
        facts.append(Fact("Parameters", cell(p["params"]), cites=cites))
    if p.get("error"):
        facts.append(Fact("Audit error", cell(p["error"]), cites=cites))
    if p.get("inconclusive"):
        unmeasured = p.get("inconclusive_metrics")
        about = f" (about {', '.join(map(str, unmeasured))})" if unmeasured else ""
        facts.append(Fact("Not measured", cell(p["inconclusive"]) + about, cites=cites))
    for metric, bound in sorted((p.get("exceeds") or {}).items()):
        facts.append(Fact(str(metric), f"> {cell(bound)} (not measured further)", cites=cites))
    return facts


def _artifacts(item: Item, run: RunEvidence, cites: list[Cite]) -> Content:
    content = Content()
    trustai_dir = run.ledger_path.parent
    for index, artifact in enumerate(item.payload.get("artifacts") or []):
        path = str(artifact.get("path"))
        if artifact.get("media_type") != "image/png":
            content.facts.append(Fact("Artifact", f"{path} (sha256 {artifact.get('sha256')})", cites=cites))
        elif not artifact_intact(trustai_dir, artifact):
            text = f"{path} is missing or does not match its recorded sha256; not shown"
            content.facts.append(Fact("Artifact withheld", text, cites=cites))
        else:
            png = (trustai_dir / path).read_bytes()
            caption = f"Artifact {path}, sha256 {artifact.get('sha256')} (checked)"
            name = f"{item.record.seq:06d}-artifact-{index}"
            content.figures.append(Figure(name, f"{item.label}: {path}", png, caption, cites))
    return content


def evidence_view(item: Item, run: RunEvidence) -> EvidenceView:
    """Return the full rendering of one evidence record: every figure and table cites it."""
    p, cites = item.payload, [Cite.of(item.record)]
    content = Content(facts=_facts(item, cites))
    metric_table, metric_chart = _metrics(item, cites)
    if metric_table:
        content.tables.append(metric_table)
    for name, rows in sorted((p.get("tables") or {}).items()):
        if not rows:
            continue
        if not all(isinstance(r, dict) for r in rows):
            rows = [{name: r} for r in rows]
        title, figure_name = f"{item.label}: {name}", f"{item.record.seq:06d}-table-{_slug(name)}"
        curve = _curve(name, rows, title)
        if curve:
            caption = f"{name} ({len(rows)} points) from evidence record {cites[0].label}"
            content.figures.append(Figure(figure_name, title, curve, caption, cites))
            continue
        columns = _columns(rows)
        shown = [[cell(row.get(c)) for c in columns] for row in rows[:MAX_TABLE_ROWS]]
        more = len(rows) - len(shown)
        note = f"{more} more rows in evidence record {cites[0].label}." if more > 0 else ""
        content.tables.append(Table(title, columns, shown, cites, note))
        panels = _panels(rows, title)
        if panels:
            caption = f"{name}: a bar per row, a panel per measure, from evidence record {cites[0].label}"
            content.figures.append(Figure(figure_name, title, panels, caption, cites))
    if metric_chart:
        caption = f"Numeric metrics of evidence record {cites[0].label}"
        content.figures.append(
            Figure(f"{item.record.seq:06d}-metrics", f"{item.label}: metrics", metric_chart, caption, cites)
        )
    content.extend(_artifacts(item, run, cites))
    audit = f"{p.get('audit')} v{p.get('audit_version')}"
    summary = f"{audit}, stage {item.stage}" + (f", step {item.step}" if item.step is not None else "")
    summary += f"; recorded {item.record.ts}"
    return EvidenceView(f"ev-{item.record.seq}", item.label, item.status, summary, cites[0], content)


def served_by(items: list[Item], home: dict[int, str]) -> Table | None:
    """Return the compact table of evidence serving a framework item, each row naming its record and
    the section where it is shown in full."""
    if not items:
        return None
    rows = [
        [
            item.check_id,
            item.stage,
            cell(item.step),
            item.record.ts,
            item.status,
            home[item.record.seq],
            Cite.of(item.record).label,
        ]
        for item in items
    ]
    columns = ["check", "stage", "step", "recorded (UTC)", "status", "shown in", "record"]
    return Table("Evidence serving this item", columns, rows)
