"""How one evidence record appears in a report, whatever audit produced it: its finding, metrics
against thresholds, inputs and params, its tables, and pictures — a bar chart of its numeric metrics,
line charts of its curve tables (loss, robustness, privacy budget over steps, ...), panel bars of its
per-group tables (parity, per task), and the PNG artifacts it lists once their sha256 matches."""

import math
from typing import Any

from trustai.regulatory import describe

from trustai.reports import charts
from trustai.reports.document import Cite, Content, EvidenceView, Fact, Figure, Table, cell
from trustai.reports.integrity import artifact_intact
from trustai.reports.model import Item, RunEvidence

MAX_TABLE_ROWS = 20
MAX_PANEL_ROWS = 30
MAX_PANELS = 4
# Tables with these words in their name are series over an x axis (the first numeric column).
_CURVE_WORDS = ("curve", "over_")


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


def _curve(name: str, rows: list[dict[str, Any]], title: str) -> bytes | None:
    numeric = _numeric_columns(rows)
    if not any(word in name for word in _CURVE_WORDS) or len(rows) < 2 or len(numeric) < 2:
        return None
    x, ys = numeric[0], numeric[1:]
    series = {y: [(float(row[x]), float(row[y])) for row in rows] for y in ys}
    return charts.line_chart(title, x, series)


def _panels(rows: list[dict[str, Any]], title: str) -> bytes | None:
    """Per-group bars when the table has exactly one text column whose values are unique labels."""
    text = [c for c in _columns(rows) if all(isinstance(row.get(c), str) for row in rows)]
    numeric = _numeric_columns(rows)[:MAX_PANELS]
    if len(text) != 1 or not numeric or not 2 <= len(rows) <= MAX_PANEL_ROWS:
        return None
    labels = [row[text[0]] for row in rows]
    if len(set(labels)) != len(labels):
        return None
    return charts.panel_bars(title, labels, {c: [float(row[c]) for row in rows] for c in numeric})


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
    chart = charts.bar_chart(f"{item.label}: numeric metrics", bars) if bars else None
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
        if not rows or not all(isinstance(r, dict) for r in rows):
            continue
        title = f"{item.label}: {name}"
        curve = _curve(name, rows, title)
        if curve:
            caption = f"{name} ({len(rows)} points) from evidence record {cites[0].label}"
            content.figures.append(Figure(f"{item.record.seq:06d}-{name}", title, curve, caption, cites))
            continue
        columns = _columns(rows)
        shown = [[cell(row.get(c)) for c in columns] for row in rows[:MAX_TABLE_ROWS]]
        more = len(rows) - len(shown)
        note = f"{more} more rows in evidence record {cites[0].label}." if more > 0 else ""
        content.tables.append(Table(title, columns, shown, cites, note))
        panels = _panels(rows, title)
        if panels:
            caption = f"{name} per {columns[0]} from evidence record {cites[0].label}"
            content.figures.append(Figure(f"{item.record.seq:06d}-{name}", title, panels, caption, cites))
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
