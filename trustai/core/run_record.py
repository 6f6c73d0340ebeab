"""The one reader of a run's ledger: its records grouped the way cards, verification, audits,
monitoring and reports read them.

A resumed run holds one ``run.start`` per start; the latest one governs (its policy pack and manifest
are the ones the run now trains under), and every reader takes that one. Reading never raises on a
damaged payload: an edited ledger is for ``Ledger.verify`` to name, and readers fall back to empty
values.

Records after the last ``anchor`` are covered by no signature (an unanchored tail: a stage still
running, a crash, or an edit); what decides which checkpoint a run released reads only the anchored
records (``anchored_cards``, ``release_card``). A ledger without any anchor (written without a
signing key, or before anchors) is read whole.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from trustai.core.evidence import Stage
from trustai.core.ledger import Ledger, Record
from trustai.core.records import RecordKind
from trustai.layout import run_dir_of


@dataclass(frozen=True)
class EvidenceItem:
    """One evidence record and the finding the policy pack drew from it (None when not judged)."""

    record: Record
    finding: Record | None

    @property
    def payload(self) -> dict[str, Any]:
        """The evidence as recorded."""
        return self.record.payload

    @property
    def family(self) -> str:
        """The audit family: ``robustness`` for ``robustness.corruptions``."""
        return str(self.payload.get("audit", "")).split(".", 1)[0]

    @property
    def check_id(self) -> str:
        """The policy pack check that produced this evidence."""
        return str(self.payload.get("check_id", "?"))

    @property
    def stage(self) -> str:
        """The lifecycle stage the evidence was measured at."""
        return str(self.payload.get("stage", self.record.stage))

    @property
    def step(self) -> int | None:
        """The training step the evidence belongs to, when recorded."""
        inputs = self.payload.get("inputs")
        return inputs.get("step") if isinstance(inputs, dict) else None

    @property
    def status(self) -> str:
        """The finding's status (pass, warn, fail, error), or ``not judged``."""
        return str(self.finding.payload.get("status", "?")) if self.finding else "not judged"

    @property
    def references(self) -> list[str]:
        """The regulatory references of the check, as recorded in the finding."""
        return list(self.finding.payload.get("references", [])) if self.finding else []

    @property
    def label(self) -> str:
        """A short human name: ``check-id (stage, step N)``."""
        step = f", step {self.step}" if self.step is not None else ""
        return f"{self.check_id} ({self.stage}{step})"


@dataclass(frozen=True)
class RunLedger:
    """Every record of one run's ledger, in ledger order, with the views its readers need."""

    run_dir: Path
    ledger_path: Path
    records: list[Record]

    @classmethod
    def read(cls, ledger: Ledger) -> "RunLedger":
        """Read every record of an open ledger."""
        return cls(run_dir_of(ledger.path), ledger.path, ledger.records())

    @classmethod
    def load(cls, ledger_path: Path) -> "RunLedger":
        """Open the ledger at ``ledger_path`` read-only and read it (TrustaiUserError when it is missing
        or unreadable)."""
        with Ledger(ledger_path, create=False) as ledger:
            return cls.read(ledger)

    @cached_property
    def _by_kind(self) -> dict[str, list[Record]]:
        grouped: dict[str, list[Record]] = {}
        for record in self.records:
            grouped.setdefault(record.kind, []).append(record)
        return grouped

    def of_kind(self, kind: RecordKind) -> list[Record]:
        """Every record of ``kind``, in ledger order."""
        return self._by_kind.get(RecordKind(kind).value, [])

    @property
    def starts(self) -> list[Record]:
        """Every ``run.start``: one per start of a resumed run."""
        return self.of_kind(RecordKind.RUN_START)

    @property
    def start(self) -> Record | None:
        """The latest ``run.start``: the pack and manifest the run is governed by now."""
        return self.starts[-1] if self.starts else None

    @property
    def run_id(self) -> str | None:
        """The run's id: the first ``run_id`` a start recorded (resumed starts repeat it); None for a
        ledger written before run ids."""
        ids = (s.payload.get("run_id") for s in self.starts)
        return next((i for i in ids if isinstance(i, str) and i), None)

    @property
    def anchors(self) -> list[Record]:
        """Every ``anchor`` record, in ledger order."""
        return self.of_kind(RecordKind.ANCHOR)

    @cached_property
    def anchored(self) -> list[Record]:
        """The records up to and including the last anchor; every record when there is no anchor."""
        last = self.anchors[-1].seq if self.anchors else None
        return [r for r in self.records if last is None or r.seq <= last]

    @property
    def unanchored_tail(self) -> list[Record]:
        """The records after the last anchor ([] when there is no anchor at all, or none after it)."""
        return self.records[len(self.anchored) :] if self.anchors else []

    @property
    def manifest(self) -> dict[str, Any]:
        """The latest start's provenance manifest ({} when there is none)."""
        value = self.start.payload.get("manifest") if self.start else None
        return value if isinstance(value, dict) else {}

    @property
    def policy_pack(self) -> dict[str, Any]:
        """The latest start's policy pack record ({} when there is none)."""
        value = self.start.payload.get("policy_pack") if self.start else None
        return value if isinstance(value, dict) else {}

    def stages(self, stage: Stage | None = None) -> list[Record]:
        """The stage events, or those of ``stage``, in ledger order."""
        events = self.of_kind(RecordKind.STAGE)
        return [r for r in events if r.payload.get("stage") == stage] if stage is not None else events

    @cached_property
    def evidence(self) -> list[EvidenceItem]:
        """Every evidence record with the finding that cites it, in ledger order."""
        findings = {
            ref.get("seq"): r
            for r in self.of_kind(RecordKind.FINDING)
            if isinstance(ref := r.payload.get("evidence_record"), dict)
        }
        return [EvidenceItem(r, findings.get(r.seq)) for r in self.of_kind(RecordKind.EVIDENCE)]

    @property
    def cards(self) -> list[Record]:
        """Every card record, in ledger order (a checkpoint sealed again has several)."""
        return self.of_kind(RecordKind.CARD)

    @property
    def anchored_cards(self) -> list[Record]:
        """The card records an anchor covers (every card record when the ledger has no anchor)."""
        return [r for r in self.anchored if r.kind == RecordKind.CARD.value]

    def checkpoint_folder(self, card: Record) -> Path:
        """The model folder a card record names, resolved against the run folder."""
        return (self.run_dir / str(card.payload.get("checkpoint", ""))).resolve()

    def cards_of(self, folder: Path, *, anchored: bool = False) -> list[Record]:
        """The card records of the model folder ``folder`` (only those an anchor covers when
        ``anchored``), in ledger order: the last is its card now."""
        folder = Path(folder).resolve()
        cards = self.anchored_cards if anchored else self.cards
        return [c for c in cards if self.checkpoint_folder(c) == folder]

    @property
    def release_card(self) -> Record | None:
        """The latest anchored release card: the checkpoint the run released; None when none was."""
        released = [c for c in self.anchored_cards if c.payload.get("release")]
        return released[-1] if released else None

    @property
    def end(self) -> Record | None:
        """The latest ``run.end``, or None when training has not ended."""
        ends = self.of_kind(RecordKind.RUN_END)
        return ends[-1] if ends else None

    @property
    def head(self) -> Record | None:
        """The last record."""
        return self.records[-1] if self.records else None
