"""How one evidence record appears in a report, whatever audit produced it: its finding as a sentence,
metrics (with their declared units) against thresholds, inputs and params, its tables, and pictures —
a bar chart per unit of its numeric metrics (never counts and ratios on one axis), line charts of its
curve tables (loss, robustness, privacy budget over steps, ...), panel bars of its per-group tables
(parity, per task), and the PNG artifacts it lists once their sha256 matches (downscaled, a few).

How much of a record is shown follows what was found: the latest record of each check in full when it
did not pass, its finding, judged metrics and curves when it passed; an earlier record that did not
pass, its finding and judged metrics; the rest one row each (``other_evidence``)."""

import io
import math
from itertools import pairwise
from typing import Any

from PIL import Image
from trustai.reports import charts
from trustai.reports.document import Cite, Content, EvidenceView, Fact, Figure, Table, cell
from trustai.reports.findings import clean_error, declared, sentence
from trustai.reports.integrity import artifact_intact
from trustai.reports.model import Item, RunEvidence

from trustai.packs.regulatory import describe

# How much of an evidence record the appendix shows (EvidenceView.detail).
FULL, SUMMARY, BRIEF = "full", "summary", "brief"
MAX_TABLE_ROWS = 20
MAX_TABLE_COLUMNS = 8  # more do not fit an A4 page's width legibly
MAX_ARTIFACT_FIGURES = 3  # PNG artifacts shown per evidence record in full; the rest are listed
MAX_IMAGE_PX = 700  # wider or taller PNG artifacts are downscaled to this (a chart's width)
MIN_CHART_BARS = 3  # metrics of one unit worth a bar chart
_TALLIES = ("count",)  # units never charted: tallies read best in the metrics table
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


def _metrics(item: Item, cites: list[Cite], every: bool) -> Table | None:
    """The metrics table: value, declared unit, threshold, result and meaning of each metric (``every``
    False: only those a threshold judged, when any did)."""
    metrics = item.payload.get("metrics") or {}
    audit = str(item.payload.get("audit"))
    thresholds: dict[str, list[dict[str, Any]]] = {}
    for t in item.finding.payload.get("thresholds", []) if item.finding else []:
        thresholds.setdefault(t.get("metric"), []).append(t)
    names = sorted(set(metrics) | set(thresholds))
    if not every and thresholds:
        names = sorted(thresholds)
    if not names:
        return None
    left_out = len(set(metrics) - set(names))
    note = f"{left_out} more metrics in evidence record {cites[0].label}." if left_out else ""
    rows = []
    for name in names:
        bounds = thresholds.get(name, [])
        limit = "; ".join(f"{'≥' if t.get('op') == 'min' else '≤'} {cell(t.get('limit'))}" for t in bounds)
        held = "—" if not bounds else ("held" if all(t.get("held") for t in bounds) else "VIOLATED")
        metric = declared(audit, name)
        unit, meaning = (metric.unit, metric.meaning) if metric else ("—", "")
        rows.append([name, cell(metrics.get(name)), unit, limit or "—", held, meaning])
    columns = ["metric", "value", "unit", "threshold", "result", "meaning"]
    return Table(f"{item.check_id}: metrics", columns, rows, cites, note)


def _metric_charts(item: Item, cites: list[Cite]) -> list[Figure]:
    """A bar chart per declared unit with MIN_CHART_BARS numeric metrics or more (never counts: tallies
    read best in the table), so no axis mixes units."""
    metrics, audit = item.payload.get("metrics") or {}, str(item.payload.get("audit"))
    by_unit: dict[str, list[tuple[str, float]]] = {}
    for name in sorted(metrics):
        metric, value = declared(audit, name), _number(metrics[name])
        if metric is not None and value is not None and metric.unit not in _TALLIES:
            by_unit.setdefault(metric.unit, []).append((name, value))
    return [
        Figure(
            f"{item.record.seq:06d}-metrics-{_slug(unit)}",
            f"{item.label}: metrics in {unit}",
            charts.bar_chart(f"{item.label}: metrics in {unit}", values),
            f"Numeric metrics in {unit} of evidence record {cites[0].label}",
            cites,
        )
        for unit, values in sorted(by_unit.items())
        if len(values) >= MIN_CHART_BARS
    ]


def _facts(item: Item, cites: list[Cite]) -> list[Fact]:
    p = item.payload
    facts = []
    if item.finding is not None:
        facts.append(Fact("Finding", sentence(item), cites=[Cite.of(item.finding)]))
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
        facts.append(Fact("Audit error", clean_error(p["error"]), cites=cites))
    if p.get("inconclusive"):
        unmeasured = p.get("inconclusive_metrics")
        about = f" (about {', '.join(map(str, unmeasured))})" if unmeasured else ""
        facts.append(Fact("Not measured", cell(p["inconclusive"]) + about, cites=cites))
    for metric, bound in sorted((p.get("exceeds") or {}).items()):
        facts.append(Fact(str(metric), f"> {cell(bound)} (not measured further)", cites=cites))
    return facts


def _downscaled(png: bytes, limit: int = MAX_IMAGE_PX) -> bytes:
    """``png`` as it is when neither side exceeds ``limit`` pixels (or PIL cannot read it), else
    re-encoded at most that large; the same bytes give the same result."""
    try:
        with Image.open(io.BytesIO(png)) as image:
            if max(image.size) <= limit:
                return png
            image.thumbnail((limit, limit), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):
        return png


def _artifacts(item: Item, run: RunEvidence, cites: list[Cite], figures: int) -> Content:
    """The evidence's artifacts: the first ``figures`` intact PNGs as pictures, the rest listed."""
    content = Content()
    trustai_dir = run.ledger_path.parent
    for index, artifact in enumerate(item.payload.get("artifacts") or []):
        path = str(artifact.get("path"))
        shown = len(content.figures) < figures
        if artifact.get("media_type") != "image/png" or not shown:
            content.facts.append(Fact("Artifact", f"{path} (sha256 {artifact.get('sha256')})", cites=cites))
        elif not artifact_intact(trustai_dir, artifact):
            text = f"{path} is missing or does not match its recorded sha256; not shown"
            content.facts.append(Fact("Artifact withheld", text, cites=cites))
        else:
            png = _downscaled((trustai_dir / path).read_bytes())
            caption = f"Artifact {path}, sha256 {artifact.get('sha256')} (checked)"
            name = f"{item.record.seq:06d}-artifact-{index}"
            content.figures.append(Figure(name, f"{item.label}: {path}", png, caption, cites))
    return content


def _table(name: str, rows: list[dict[str, Any]], title: str, cites: list[Cite]) -> Table:
    """An evidence table cut to MAX_TABLE_ROWS rows and MAX_TABLE_COLUMNS columns, saying what was left
    out."""
    columns = _columns(rows)
    shown_columns = columns[:MAX_TABLE_COLUMNS]
    shown = [[cell(row.get(c)) for c in shown_columns] for row in rows[:MAX_TABLE_ROWS]]
    left_out = []
    if len(rows) > len(shown):
        left_out.append(f"{len(rows) - len(shown)} more rows")
    if len(columns) > len(shown_columns):
        left_out.append(
            f"{len(columns) - len(shown_columns)} more columns ({', '.join(columns[MAX_TABLE_COLUMNS:])})"
        )
    note = f"{' and '.join(left_out)} in evidence record {cites[0].label}." if left_out else ""
    return Table(title, shown_columns, shown, cites, note)


def _tables(item: Item, cites: list[Cite], curves_only: bool) -> Content:
    """The evidence's tables: curves as line charts; the rest as tables (cut to fit) with panel bars of
    per-group rows, unless ``curves_only``."""
    content = Content()
    for name, rows in sorted((item.payload.get("tables") or {}).items()):
        if not rows:
            continue
        if not all(isinstance(r, dict) for r in rows):
            rows = [{name: r} for r in rows]
        title, figure_name = f"{item.label}: {name}", f"{item.record.seq:06d}-table-{_slug(name)}"
        curve = _curve(name, rows, title)
        if curve:
            caption = f"{name} ({len(rows)} points) from evidence record {cites[0].label}"
            content.figures.append(Figure(figure_name, title, curve, caption, cites))
        elif not curves_only:
            content.tables.append(_table(name, rows, title, cites))
            panels = _panels(rows, title)
            if panels:
                caption = f"{name}: a bar per row, a panel per measure, from evidence record {cites[0].label}"
                content.figures.append(Figure(figure_name, title, panels, caption, cites))
    return content


def evidence_view(item: Item, run: RunEvidence, detail: str = FULL) -> EvidenceView:
    """Return one evidence record as the appendix shows it; every figure and table cites it.

    ``detail``: FULL (finding, facts, every metric, tables, charts, a few artifacts), SUMMARY (finding,
    facts, the metrics thresholds judged, curves and one artifact) or BRIEF (finding, facts and the
    metrics thresholds judged).
    """
    p, cites = item.payload, [Cite.of(item.record)]
    content = Content(facts=_facts(item, cites))
    metric_table = _metrics(item, cites, every=detail == FULL)
    if metric_table:
        content.tables.append(metric_table)
    if detail != BRIEF:
        content.extend(_tables(item, cites, curves_only=detail == SUMMARY))
    if detail == FULL:
        content.figures += _metric_charts(item, cites)
    if detail != BRIEF:
        content.extend(_artifacts(item, run, cites, MAX_ARTIFACT_FIGURES if detail == FULL else 1))
    audit = f"{p.get('audit')} v{p.get('audit_version')}"
    summary = f"{audit}, stage {item.stage}" + (f", step {item.step}" if item.step is not None else "")
    summary += f"; recorded {item.record.ts}"
    return EvidenceView(f"ev-{item.record.seq}", item.label, item.status, summary, cites[0], content, detail)


def latest_of_each_check(items: list[Item]) -> list[Item]:
    """The latest evidence of each check among ``items`` (the highest step, then the last recorded), in
    ledger order."""
    latest: dict[str, Item] = {}
    for item in items:
        known = latest.get(item.check_id)
        step = item.step if item.step is not None else -1
        if known is None or (step, item.record.seq) >= (
            known.step if known.step is not None else -1,
            known.record.seq,
        ):
            latest[item.check_id] = item
    return sorted(latest.values(), key=lambda i: i.record.seq)


def _where(item: Item) -> str:
    return item.stage + (f", step {item.step}" if item.step is not None else "")


def served_by(items: list[Item], home: dict[int, str]) -> Table | None:
    """Return the table of checks serving a framework item: a row per check with its latest finding as a
    sentence, how many of its records did not pass, and where the latest is shown in full."""
    if not items:
        return None
    rows = []
    for item in latest_of_each_check(items):
        own = [i for i in items if i.check_id == item.check_id]
        others = [i for i in own if i is not item and i.status not in ("pass", "not judged")]
        earlier = f", {len(others)} earlier not passing" if others else ""
        rows.append(
            [
                item.check_id,
                _where(item),
                item.status,
                sentence(item, lead=False),
                f"{len(own)}{earlier}; latest #{item.record.seq}, appendix: {home[item.record.seq]}",
            ]
        )
    columns = ["check", "latest", "status", "finding", "records"]
    cites = [Cite.of(i.record) for i in items]
    return Table("Checks serving this item (the latest finding of each)", columns, rows, cites)


def other_evidence(items: list[Item]) -> Table | None:
    """One row per evidence record the appendix does not show: check, stage and step, status, its key
    metric or finding, record."""
    if not items:
        return None
    rows = [
        [item.check_id, _where(item), item.status, sentence(item, lead=False), Cite.of(item.record).label]
        for item in items
    ]
    columns = ["check", "stage", "status", "finding", "record"]
    note = (
        "Earlier records of checks that passed; each is in full in the ledger and the run's evidence files."
    )
    return Table("Other evidence records", columns, rows, [Cite.of(i.record) for i in items], note)
