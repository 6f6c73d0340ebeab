"""Compose a report Document: each framework item filled from the evidence that serves it (audit
evidence shown in full in one home section, listed wherever else it serves), built-in run evidence,
the provider's system.yaml statements, and the gaps; a first page with integrity verdicts; for the EU
AI Act a crosswalk of articles to evidence."""

from dataclasses import dataclass

from trustai.reports.blocks import BLOCKS, Ctx
from trustai.reports.document import PROVIDER, TO_SUPPLY, Cite, Content, Document, Fact, Section, Table
from trustai.reports.frameworks import MONITOR, Framework, Requirement
from trustai.reports.integrity import Integrity
from trustai.reports.model import Item, RunEvidence
from trustai.reports.system import SystemDescription, describe_field, field_value
from trustai.reports.views import evidence_view, served_by

from trustai import __version__
from trustai.core.evidence import Stage


def home_sections(framework: Framework, items: list[Item]) -> dict[int, str]:
    """Map each evidence record (seq) to the one item where it is shown in full: monitor-stage
    evidence goes to the first monitoring item serving it, other evidence to the first item serving
    it, and evidence no item claims to the framework's fallback."""
    homes = {}
    for item in items:
        serving = [r for r in framework.requirements if r.serves(item)]
        if item.stage == Stage.MONITOR.value:
            serving = [r for r in serving if r.monitor] or serving
        homes[item.record.seq] = serving[0].key if serving else framework.fallback
    return homes


def _provider(req: Requirement, system: SystemDescription | None) -> tuple[list[Fact], list[str]]:
    """The provider's statements for ``req``, and a gap for each field left empty."""
    facts, gaps = [], []
    for name in req.fields:
        value = field_value(system, name) if system else None
        label = describe_field(name)
        if value is None:
            gaps.append(f"{TO_SUPPLY}: {label} (system.yaml `{name}`)")
        else:
            facts.append(Fact(label[0].upper() + label[1:], value, source=PROVIDER))
    return facts, gaps


def _expected(req: Requirement, run: RunEvidence) -> list[str]:
    """A gap for each audit family (or monitor-stage evidence) the item expects but the run lacks."""
    gaps = []
    for family in req.expects:
        if family == MONITOR:
            if not any(i.stage == Stage.MONITOR.value for i in run.items):
                gaps.append(
                    "No monitor-stage evidence in the ledger: run `trustai monitor RUN --current DATA` "
                    "on data from operation (drift and data checks are appended to this ledger)."
                )
        elif not any(i.family == family for i in run.items):
            gaps.append(f"No {family} evidence in the ledger: add a {family}.* audit to the policy pack.")
    return gaps


def _blocks(req: Requirement, ctx: Ctx) -> list[tuple[str, Content]]:
    """The built-in evidence blocks of ``req``: (title, content), content empty when not recorded."""
    return [(BLOCKS[name][0], BLOCKS[name][1](ctx)) for name in req.blocks]


def _built_in(blocks: list[tuple[str, Content]]) -> tuple[Content, list[str]]:
    """Merge blocks into one Content, with a gap for each block the ledger does not record."""
    content, gaps = Content(), []
    for title, part in blocks:
        if part:
            content.extend(part)
        else:
            gaps.append(f"The ledger does not record the {title}.")
    return content, gaps


@dataclass
class _Assessment:
    """What serves one framework item besides audit evidence, and what is missing."""

    blocks: list[tuple[str, Content]]
    content: Content  # the blocks' content, then the provider's statements
    provider: list[Fact]
    gaps: list[str]


def _assess(req: Requirement, ctx: Ctx, system: SystemDescription | None, items: list[Item]) -> _Assessment:
    blocks = _blocks(req, ctx)
    content, gaps = _built_in(blocks)
    if (req.refs or req.families or req.monitor) and not items and not content:
        gaps.insert(0, "No evidence in the ledger serves this item: no check of the pack addresses it.")
    provider, field_gaps = _provider(req, system)
    content.facts += provider
    return _Assessment(blocks, content, provider, gaps + _expected(req, ctx.run) + field_gaps)


def build_section(
    req: Requirement, ctx: Ctx, system: SystemDescription | None, homes: dict[int, str]
) -> Section:
    """Return one framework item filled with its evidence, statements and gaps."""
    items = [i for i in ctx.run.items if req.serves(i) or homes[i.record.seq] == req.key]
    found = _assess(req, ctx, system, items)
    return Section(
        key=req.key,
        title=req.title,
        asks=req.asks,
        content=found.content,
        evidence=[evidence_view(i, ctx.run) for i in items if homes[i.record.seq] == req.key],
        served_by=served_by(items, homes),
        gaps=found.gaps,
    )


def _span(cites: list[Cite]) -> str:
    """Name a run of records briefly: all of up to three, else the first and last and a count."""
    if len(cites) <= 3:
        return ", ".join(c.label for c in cites)
    return f"{cites[0].label} … {cites[-1].label}, {len(cites)} records"


def crosswalk(framework: Framework, ctx: Ctx, system: SystemDescription | None) -> Table | None:
    """Return the table of the framework's articles against the evidence serving each, with gaps."""
    if not framework.crosswalk:
        return None
    rows = []
    for req in framework.crosswalk:
        items = [i for i in ctx.run.items if req.serves(i)]
        found = _assess(req, ctx, system, items)
        blocks = (f"{title} ({_span(part.cites) or 'not recorded'})" for title, part in found.blocks)
        rows.append(
            [
                f"{req.key}\n{req.title}",
                "\n".join(f"{i.label}: {i.status} ({Cite.of(i.record).label})" for i in items) or "—",
                "\n".join(blocks) or "—",
                "\n".join(f.label for f in found.provider) or "—",
                "\n".join(found.gaps) or "none",
            ]
        )
    columns = ["article", "evidence records", "built-in evidence", "provider statements", "gaps"]
    note = (
        "Evidence serves an article when its check's policy references cite it, or by its audit family "
        "(data and fairness: Art. 10; robustness and privacy: Art. 15; explainability: Art. 13 and 14; "
        "drift and monitor-stage evidence: Art. 72; provenance: Art. 12)."
    )
    return Table("Articles of Regulation (EU) 2024/1689 against the evidence", columns, rows, note=note)


def _system_name(run: RunEvidence, system: SystemDescription | None) -> str:
    """The system's name as the provider states it, else the run folder's name."""
    return (system.name if system else None) or run.run_dir.name


def _cover(
    ctx: Ctx, framework: Framework, system: SystemDescription | None, system_sha: str | None
) -> list[Fact]:
    run, integrity = ctx.run, ctx.integrity
    head = [Cite.of(run.head)] if run.head else []
    version = f" version {system.version}" if system and system.version else ""
    source = PROVIDER if system and system.name else "ledger"
    facts = [Fact("AI system", f"{_system_name(run, system)}{version}", source=source)]
    provider = field_value(system, "provider") if system else None
    facts.append(Fact("Provider", provider or TO_SUPPLY, source=PROVIDER))
    facts += BLOCKS["identity"][1](ctx).facts
    if run.head:
        facts.append(Fact("Evidence as of", f"ledger record {run.head.seq}, {run.head.ts}", cites=head))
    ledger = integrity.ledger
    text = ledger.status if ledger.status != "failed" else f"FAILED ({len(ledger.problems)} problems)"
    facts.append(Fact("Ledger verification at rendering", f"{text} ({ledger.name})", "trustai", head))
    sig = integrity.signature
    if sig.status == "ok":
        sig_text = f"verified with public key sha256:{integrity.key}"
    elif sig.status == "failed":
        sig_text = f"FAILED with public key sha256:{integrity.key}: " + "; ".join(sig.problems)
    else:
        sig_text = "not checked (" + "; ".join(sig.problems) + ")"
    facts.append(Fact("Signature verification at rendering", sig_text, "trustai", ctx.card))
    facts.append(
        Fact(
            "Provider statements",
            f"system.yaml sha256:{system_sha}" if system_sha else "none given: provider items are gaps",
            source=PROVIDER,
        )
    )
    facts.append(Fact("Framework", framework.title, source="trustai"))
    facts.append(Fact("Generated by", f"trustai {__version__} from the ledger", source="trustai"))
    return facts


def compose(
    framework: Framework,
    run: RunEvidence,
    integrity: Integrity,
    system: SystemDescription | None,
    system_sha: str | None,
) -> Document:
    """Return the whole report Document for ``framework``; the same inputs give the same Document."""
    ctx = Ctx(run, integrity)
    homes = home_sections(framework, run.items)
    sections = [build_section(req, ctx, system, homes) for req in framework.requirements]
    subject = run.display(run.subject) if run.subject else "no sealed checkpoint"
    return Document(
        framework=framework.id,
        title=framework.title,
        intro=framework.intro,
        subtitle=f"{_system_name(run, system)}: {subject}",
        cover=_cover(ctx, framework, system, system_sha),
        verdicts=integrity.verdicts,
        sections=sections,
        crosswalk=crosswalk(framework, ctx, system),
        records=run.records,
    )
