"""The rendering-neutral shape of a compliance report: sections of facts, tables, figures and evidence,
each carrying the ledger records it was drawn from. Frameworks fill it; renderers only lay it out."""

import json
from dataclasses import dataclass, field

from trustai.core.ledger import Record

# Where a fact came from, shown next to it so a reader knows what is measured and what is declared.
LEDGER = "ledger"
PROVIDER = "provider (system.yaml)"
TO_SUPPLY = "to be supplied by the provider"


@dataclass(frozen=True, order=True)
class Cite:
    """A reference to one ledger record: sequence number, chain hash and kind."""

    seq: int
    hash: str
    kind: str

    @classmethod
    def of(cls, record: Record) -> "Cite":
        """Return the citation of ``record``."""
        return cls(record.seq, record.hash, record.kind)

    @property
    def label(self) -> str:
        """Return the short form printed in reports: ``#seq hashprefix``."""
        return f"#{self.seq} {self.hash[:12]}"


@dataclass
class Fact:
    """One labelled statement with its source and the records it rests on."""

    label: str
    value: str
    source: str = LEDGER
    cites: list[Cite] = field(default_factory=list)


@dataclass
class Table:
    """A table of preformatted cells; ``cites`` are the records every row is drawn from."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    cites: list[Cite] = field(default_factory=list)
    note: str = ""


@dataclass
class Figure:
    """A PNG picture (bytes) with its caption and the records it was drawn from."""

    name: str  # stable file-name stem, unique within a document
    title: str
    png: bytes
    caption: str
    cites: list[Cite] = field(default_factory=list)


@dataclass
class Content:
    """Facts, tables and figures that some source of evidence contributes to a section."""

    facts: list[Fact] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def extend(self, other: "Content") -> None:
        """Append ``other``'s facts, tables and figures to this content."""
        self.facts += other.facts
        self.tables += other.tables
        self.figures += other.figures

    def __bool__(self) -> bool:
        return bool(self.facts or self.tables or self.figures)

    @property
    def cites(self) -> list[Cite]:
        """Every record cited anywhere in this content, sorted and without repeats."""
        found = {c for part in (*self.facts, *self.tables, *self.figures) for c in part.cites}
        return sorted(found)


@dataclass
class EvidenceView:
    """The rendering of one evidence record and its finding in the appendix, under the one item that is
    its home, at a level of ``detail`` (``full``, ``summary`` or ``brief``: trustai.reports.views)."""

    anchor: str
    title: str
    status: str  # finding status, or "not judged"
    summary: str
    cite: Cite
    content: Content
    detail: str = "full"


# An item's coverage, worst first: a check behind it failed or warned, broke, could not measure; else
# something it needs is missing (evidence, a provider statement); else every check behind it held.
COVERAGE = ("failing", "error", "inconclusive", "missing", "passing")
_NOT_HELD = {"fail": "failing", "warn": "failing", "error": "error", "inconclusive": "inconclusive"}


@dataclass
class Section:
    """One framework item (an Annex IV point, a MEASURE subcategory, an Annex A control)."""

    key: str
    title: str
    asks: str  # what the framework asks for, in a sentence
    content: Content = field(default_factory=Content)
    evidence: list[EvidenceView] = field(default_factory=list)  # appendix views whose home is here
    served_by: Table | None = None  # one row per check serving this item: its latest finding
    gaps: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # latest status of each check serving it
    records: int = 0  # evidence records serving it

    @property
    def anchor(self) -> str:
        """The HTML id of this section."""
        return "s-" + "".join(ch if ch.isalnum() else "-" for ch in self.key).strip("-").lower()

    @property
    def held(self) -> int:
        """How many checks serving this item passed (their latest finding)."""
        return self.outcomes.count("pass")

    @property
    def status(self) -> str:
        """The item's coverage (one of COVERAGE): ``passing`` only when every check behind it held
        and nothing it needs is missing."""
        found = {_NOT_HELD[s] for s in self.outcomes if s in _NOT_HELD}
        if self.gaps:
            found.add("missing")
        return next((state for state in COVERAGE if state in found), "passing")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one integrity check made while rendering: ok, failed or not checked."""

    name: str
    status: str
    problems: tuple[str, ...] = ()


@dataclass
class Glance:
    """Page one: the gate, integrity and coverage verdicts (each a state and a sentence), the findings
    that stop or qualify release, and what the provider must still fill in."""

    gate: str  # pass, warn or blocked
    gate_detail: str
    integrity: str  # verified, not fully checked or failed
    integrity_detail: str
    coverage: dict[str, int]  # items per COVERAGE state, in that order
    coverage_detail: str
    attention: Table | None  # latest findings that did not pass, blocking ones first
    provider: list[Fact] = field(default_factory=list)


@dataclass
class Document:
    """A whole report: page one, cover facts, integrity verdicts, sections, crosswalk, appendix and the
    records it cites."""

    framework: str
    title: str
    intro: str
    subtitle: str
    glance: Glance
    cover: list[Fact]
    verdicts: list[Verdict]
    sections: list[Section]
    crosswalk: Table | None
    records: list[Record]  # every record of the ledger, in sequence order
    other_evidence: Table | None = None  # evidence records not shown in full, one row each

    @property
    def tampered(self) -> bool:
        """True when any integrity check failed."""
        return any(v.status == "failed" for v in self.verdicts)

    @property
    def fully_verified(self) -> bool:
        """True when every integrity check was made and held."""
        return all(v.status == "ok" for v in self.verdicts)

    def figures(self) -> list[Figure]:
        """Every figure of the document in reading order."""
        found: list[Figure] = []
        for section in self.sections:
            found += section.content.figures
            for view in section.evidence:
                found += view.content.figures
        return found


def cell(value: object) -> str:
    """Format a recorded value for a report cell: the same value always gives the same text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
