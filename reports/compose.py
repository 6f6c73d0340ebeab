"""Compose a report Document: page one (gate, integrity, coverage, what the provider must fill in),
each framework item filled from the evidence that serves it (a row per check, its latest finding as a
sentence), built-in run evidence, the provider's system.yaml statements and the gaps; for the EU AI Act
a crosswalk of articles to evidence; and an appendix with the evidence in detail, proportional to what
was found (``Detail``): the latest record of each check in full or in summary, earlier ones that did
not pass briefly (each under its one home item), and the rest one row each."""

from dataclasses import dataclass, replace

from trustai.reports.blocks import BLOCKS, Ctx
from trustai.reports.document import PROVIDER, TO_SUPPLY, Cite, Content, Document, Fact, Section, Table
from trustai.reports.frameworks import MONITOR, Framework, Requirement
from trustai.reports.glance import glance
from trustai.reports.integrity import Integrity
from trustai.reports.model import Item, RunEvidence
from trustai.reports.system import SystemDescription, describe_field, field_value
from trustai.reports.verdict import report_gate
from trustai.reports.views import (
    BRIEF,
    FULL,
    SUMMARY,
    evidence_view,
    latest_of_each_check,
    other_evidence,
    served_by,
)

from trustai import __version__
from trustai.core.evidence import Stage

MAX_BLOCK_ROWS = 40  # rows of a built-in table (timeline, sealed checkpoints); the ledger holds the rest
_PASSED = ("pass", "not judged")


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
    """The provider's statements for ``req``, and one gap naming every field left empty."""
    facts, empty = [], []
    for name in req.fields:
        value = field_value(system, name) if system else None
        label = describe_field(name)
        if value is None:
            empty.append(f"{label} (`{name}`)")
        else:
            facts.append(Fact(label[0].upper() + label[1:], value, source=PROVIDER))
    return facts, [f"{TO_SUPPLY} in system.yaml: {'; '.join(empty)}"] if empty else []


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


def _fit(table: Table) -> Table:
    """``table`` cut to MAX_BLOCK_ROWS rows, saying how many more the ledger holds."""
    if len(table.rows) <= MAX_BLOCK_ROWS:
        return table
    more = f"{len(table.rows) - MAX_BLOCK_ROWS} more rows in the ledger (Appendix D: ledger records)."
    return replace(table, rows=table.rows[:MAX_BLOCK_ROWS], note=" ".join(filter(None, [table.note, more])))


def _built_in(
    blocks: list[tuple[str, Content]], names: tuple[str, ...], shown: dict[str, str], key: str
) -> tuple[Content, list[str]]:
    """Merge blocks into one Content, with a gap for each block the ledger does not record. A block
    already shown under an earlier item (``shown``: block name -> item key, updated here) is referred
    to there rather than repeated."""
    content, gaps = Content(), []
    for name, (title, part) in zip(names, blocks, strict=True):
        if not part:
            gaps.append(f"The ledger does not record the {title}.")
        elif name in shown:
            content.facts.append(
                Fact(title[0].upper() + title[1:], f"shown under {shown[name]}", cites=part.cites[:1])
            )
        else:
            shown[name] = key
            content.extend(Content(part.facts, [_fit(t) for t in part.tables], part.figures))
    return content, gaps


@dataclass
class _Assessment:
    """What serves one framework item besides audit evidence, and what is missing."""

    blocks: list[tuple[str, Content]]
    content: Content  # the blocks' content, then the provider's statements
    provider: list[Fact]
    gaps: list[str]


def _assess(
    req: Requirement,
    ctx: Ctx,
    system: SystemDescription | None,
    items: list[Item],
    shown: dict[str, str] | None = None,
) -> _Assessment:
    """What serves ``req`` besides audit evidence (``shown``: blocks shown under earlier items, which
    this one refers to; None: a crosswalk row, which shows no content)."""
    blocks = _blocks(req, ctx)
    content, gaps = _built_in(blocks, req.blocks, {} if shown is None else shown, req.key)
    if (req.refs or req.families or req.monitor) and not items and not content:
        gaps.insert(0, "No evidence in the ledger serves this item: no check of the pack addresses it.")
    provider, field_gaps = _provider(req, system)
    content.facts += provider
    return _Assessment(blocks, content, provider, gaps + _expected(req, ctx.run) + field_gaps)


@dataclass(frozen=True)
class Detail:
    """How much of each evidence record the appendix shows (record seq -> FULL, SUMMARY or BRIEF): the
    latest of each check in full when it did not pass, in summary when it passed; an earlier one that
    did not pass briefly. Records it does not name are one row each in ``other_evidence``."""

    levels: dict[int, str]

    @classmethod
    def of(cls, items: list[Item]) -> "Detail":
        """The levels for ``items``, the evidence in the report's scope."""
        latest = {i.record.seq for i in latest_of_each_check(items)}
        levels = {}
        for item in items:
            passed = item.status in _PASSED
            if item.record.seq in latest:
                levels[item.record.seq] = SUMMARY if passed else FULL
            elif not passed:
                levels[item.record.seq] = BRIEF
        return cls(levels)

    def shown(self, item: Item) -> bool:
        """True when the appendix shows ``item``."""
        return item.record.seq in self.levels


def build_section(
    req: Requirement,
    ctx: Ctx,
    system: SystemDescription | None,
    homes: dict[int, str],
    detail: Detail,
    shown: dict[str, str],
) -> Section:
    """Return one framework item filled with its checks, statements and gaps, and the appendix views of
    the evidence whose home it is and that ``detail`` shows; built-in blocks already ``shown`` under an
    earlier item are referred to."""
    items = [i for i in ctx.run.items if req.serves(i) or homes[i.record.seq] == req.key]
    found = _assess(req, ctx, system, items, shown)
    home = [i for i in items if homes[i.record.seq] == req.key and detail.shown(i)]
    return Section(
        key=req.key,
        title=req.title,
        asks=req.asks,
        content=found.content,
        evidence=[evidence_view(i, ctx.run, detail.levels[i.record.seq]) for i in home],
        served_by=served_by(items, homes),
        gaps=found.gaps,
        outcomes=[i.status for i in latest_of_each_check(items) if i.finding is not None],
        records=len(items),
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
        checks = [
            f"{i.check_id}: {i.status} (latest of {sum(j.check_id == i.check_id for j in items)}, "
            f"{Cite.of(i.record).label})"
            for i in latest_of_each_check(items)
        ]
        rows.append(
            [
                f"{req.key}\n{req.title}",
                "\n".join(checks) or "—",
                "\n".join(blocks) or "—",
                "\n".join(f.label for f in found.provider) or "—",
                "\n".join(found.gaps) or "none",
            ]
        )
    columns = ["article", "checks (latest finding)", "built-in evidence", "provider statements", "gaps"]
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
    run = ctx.run
    head = [Cite.of(run.head)] if run.head else []
    version = f" version {system.version}" if system and system.version else ""
    source = PROVIDER if system and system.name else "ledger"
    facts = [Fact("AI system", f"{_system_name(run, system)}{version}", source=source)]
    provider = field_value(system, "provider") if system else None
    facts.append(Fact("Provider", provider or TO_SUPPLY, source=PROVIDER))
    facts += BLOCKS["identity"][1](ctx).facts
    if run.head:
        facts.append(Fact("Evidence as of", f"ledger record {run.head.seq}, {run.head.ts}", cites=head))
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
    ctx = Ctx(run, integrity, report_gate(run))
    homes = home_sections(framework, run.items)
    detail = Detail.of(run.items)
    shown: dict[str, str] = {}
    sections = [build_section(req, ctx, system, homes, detail, shown) for req in framework.requirements]
    return Document(
        framework=framework.id,
        title=framework.title,
        intro=framework.intro,
        subtitle=f"{_system_name(run, system)}: {run.subject_label}",
        glance=glance(framework, ctx, sections, system),
        cover=_cover(ctx, framework, system, system_sha),
        verdicts=integrity.verdicts,
        sections=sections,
        crosswalk=crosswalk(framework, ctx, system),
        records=run.records,
        other_evidence=other_evidence([i for i in run.items if not detail.shown(i)]),
    )
