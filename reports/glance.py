"""Page one of a report, before anything else: the gate (which checks block it, which could not
measure), the integrity verdict (the checks of ``trustai verify``, made at rendering), coverage (the
framework's items that pass, fail, broke, could not measure or miss something), the findings that
stop or qualify release as sentences, and what the provider must still fill in by hand."""

import json
from collections import Counter

from trustai.reports.blocks import Ctx
from trustai.reports.document import COVERAGE, Cite, Fact, Glance, Section, Table
from trustai.reports.findings import sentence
from trustai.reports.frameworks import Framework
from trustai.reports.integrity import FAILED, NOT_CHECKED, artifact_intact
from trustai.reports.system import SystemDescription, field_value
from trustai.reports.verdict import ReportGate

MAX_ATTENTION_ROWS = 10
DATASHEET_AUDIT = "data.datasheet"
DATASHEET_FILE = "datasheet.json"


def _gate(ctx: Ctx) -> tuple[str, str]:
    found, verdict = ctx.verdict.gate, ctx.verdict
    parts = []
    if found.blocking:
        parts.append(f"blocked by {', '.join(found.blocking)}")
    if found.warnings:
        parts.append(f"warnings from {', '.join(found.warnings)}")
    if verdict.inconclusive:
        parts.append(f"could not measure: {', '.join(verdict.inconclusive)}")
    if not parts:
        parts.append(f"every gating check passed ({len(verdict.items)} findings read)")
    detail = "; ".join(parts) + f". Decided on the {verdict.scope}, as trustai status states it."
    return found.verdict.value, detail


def _integrity(ctx: Ctx) -> tuple[str, str]:
    integrity = ctx.integrity
    failed = [v for v in integrity.verdicts if v.status == FAILED]
    if failed:
        names = "; ".join(v.name for v in failed)
        return (
            "failed",
            f"{len(failed)} of {len(integrity.verdicts)} checks failed: {names}. Do not rely on this report.",
        )
    unchecked = [v for v in integrity.verdicts if v.status == NOT_CHECKED]
    checkpoints = len(integrity.signatures)
    made = (
        "ledger hash chain, signed anchors, the one ledger, evidence and artifact files, and the signature, "
        f"card, evidence copies and identity of {checkpoints} sealed checkpoint(s): the checks of "
        "trustai verify"
    )
    if unchecked:
        why = sorted({p for v in unchecked for p in v.problems})
        return (
            "not fully checked",
            f"no check failed, {len(unchecked)} could not be made ({'; '.join(why)}). Checked: {made}.",
        )
    return "verified", f"{made}, with public key sha256:{integrity.key}."


def _coverage(sections: list[Section]) -> tuple[dict[str, int], str]:
    counts = Counter(s.status for s in sections)
    ordered = {state: counts[state] for state in COVERAGE}
    named = [
        f"{state}: {', '.join(s.key for s in sections if s.status == state)}"
        for state in ("failing", "error", "inconclusive")
        if counts[state]
    ]
    rest = f"{counts['missing']} miss evidence or a provider statement" if counts["missing"] else ""
    held = f"{counts['passing']} passing (every check behind them held, nothing missing)"
    return ordered, "; ".join(filter(None, [*named, rest, held])) + "."


def _attention(verdict: ReportGate) -> Table | None:
    """The latest findings the gate read that did not pass: those that block first."""
    flagged = [i for i in verdict.items if i.finding is not None and i.status != "pass"]
    if not flagged:
        return None
    flagged.sort(key=lambda i: (i.check_id not in verdict.gate.blocking, i.record.seq))
    rows = [
        [i.check_id, i.status, sentence(i, lead=False), f"#{i.record.seq}"]
        for i in flagged[:MAX_ATTENTION_ROWS]
    ]
    more = len(flagged) - len(rows)
    note = f"{more} more in “Findings that did not pass” and the appendix." if more > 0 else ""
    cites = [Cite.of(i.finding) for i in flagged if i.finding is not None]
    return Table(
        "Findings that stop or qualify release", ["check", "status", "finding", "evidence"], rows, cites, note
    )


def _system_fields(framework: Framework, system: SystemDescription | None) -> list[str]:
    """The system.yaml fields the framework's items ask for that the provider left empty."""
    wanted = dict.fromkeys(
        name for req in (*framework.requirements, *framework.crosswalk) for name in req.fields
    )
    return [name for name in wanted if system is None or field_value(system, name) is None]


def _datasheet(ctx: Ctx) -> Fact | None:
    """The datasheet questions the provider has not answered, from the latest datasheet evidence."""
    sheets = [
        i for i in ctx.run.items if i.payload.get("audit") == DATASHEET_AUDIT and not i.payload.get("error")
    ]
    if not sheets:
        return None
    latest, cites = sheets[-1], [Cite.of(sheets[-1].record)]
    todo = (latest.payload.get("metrics") or {}).get("to_complete")
    artifact = next(
        (a for a in latest.payload.get("artifacts") or [] if str(a.get("path", "")).endswith(DATASHEET_FILE)),
        None,
    )
    trustai_dir = ctx.run.ledger_path.parent
    ids = []
    if artifact is not None and artifact_intact(trustai_dir, artifact):
        try:
            sheet = json.loads((trustai_dir / str(artifact["path"])).read_text(encoding="utf-8"))
            ids = [str(e.get("id")) for e in sheet.get("entries", []) if e.get("source") == "todo"]
        except (ValueError, AttributeError, TypeError):
            ids = []
    if not todo and not ids:
        return None
    listed = f": {', '.join(ids)}" if ids else ""
    text = (
        f"{todo if todo is not None else len(ids)} questions unanswered{listed}. Answer them in a YAML file "
        f"named by the {latest.check_id} check's params.provider_answers."
    )
    return Fact("Datasheet answers", text, cites=cites)


def _provider(framework: Framework, ctx: Ctx, system: SystemDescription | None) -> list[Fact]:
    facts = []
    fields = _system_fields(framework, system)
    if fields:
        how = "" if system else " (none given: write one with trustai report --init-system system.yaml)"
        text = f"{len(fields)} fields empty{how}: {', '.join(fields)}. Pass it with --system."
        facts.append(Fact("system.yaml", text, source="trustai"))
    sheet = _datasheet(ctx)
    if sheet is not None:
        facts.append(sheet)
    return facts


def glance(
    framework: Framework, ctx: Ctx, sections: list[Section], system: SystemDescription | None
) -> Glance:
    """Return page one of the report on ``ctx``'s run for ``framework``."""
    gate, gate_detail = _gate(ctx)
    integrity, integrity_detail = _integrity(ctx)
    coverage, coverage_detail = _coverage(sections)
    return Glance(
        gate=gate,
        gate_detail=gate_detail,
        integrity=integrity,
        integrity_detail=integrity_detail,
        coverage=coverage,
        coverage_detail=coverage_detail,
        attention=_attention(ctx.verdict),
        provider=_provider(framework, ctx, system),
    )
