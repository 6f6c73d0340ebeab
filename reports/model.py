"""What a report is built from: a run's ledger read into evidence items (each evidence record with the
finding judged from it), the run's manifest and policy pack, its sealed checkpoints, and the checkpoint
the report is about. Everything here comes from the ledger, except the subject's LeRobot config.json,
which lives in the signed checkpoint folder."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustai.errors import TrustaiUserError
from trustai.evidence import Stage
from trustai.ledger import Ledger, Record, require_ledger
from trustai.verify import model_folder

# Stages whose evidence belongs to one training step; the rest belong to the whole run.
_STEP_STAGES = (Stage.TRAIN.value, Stage.CHECKPOINT.value)


@dataclass(frozen=True)
class Item:
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
        return (self.payload.get("inputs") or {}).get("step")

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
class RunEvidence:
    """A run's ledger, read for one report."""

    run_dir: Path
    ledger_path: Path
    records: list[Record]
    items: list[Item]  # evidence in the report's scope, in ledger order
    subject: Path | None  # the pretrained_model folder reported on, when the run has one
    subject_card: Record | None  # the ledger's card record of the subject

    def first(self, kind: str) -> Record | None:
        """Return the first record of ``kind``, or None."""
        return next((r for r in self.records if r.kind == kind), None)

    def all(self, kind: str) -> list[Record]:
        """Return every record of ``kind`` in ledger order."""
        return [r for r in self.records if r.kind == kind]

    @property
    def start(self) -> Record | None:
        """The run.start record (manifest and policy pack)."""
        return self.first("run.start")

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's provenance manifest (empty when run.start is missing)."""
        return self.start.payload.get("manifest", {}) if self.start else {}

    @property
    def head(self) -> Record | None:
        """The last ledger record."""
        return self.records[-1] if self.records else None

    @property
    def subject_step(self) -> int | None:
        """The training step of the subject checkpoint."""
        return self.subject_card.payload.get("step") if self.subject_card else None

    def checkpoint_folder(self, card: Record) -> Path:
        """Return the folder a card record names, resolved against the run folder."""
        return _card_folder(self.run_dir, card)

    def display(self, path: Path) -> str:
        """Return ``path`` relative to the run folder when inside it: reports show no local paths."""
        return path.relative_to(self.run_dir).as_posix() if path.is_relative_to(self.run_dir) else path.name

    def subject_config(self) -> dict[str, Any] | None:
        """Return the subject's LeRobot config.json, or None when it is absent or unreadable."""
        path = self.subject / "config.json" if self.subject else None
        if path is None or not path.is_file():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None


def _card_folder(run_dir: Path, card: Record) -> Path:
    return (run_dir / str(card.payload.get("checkpoint", ""))).resolve()


def _items(records: list[Record]) -> list[Item]:
    findings = {
        r.payload["evidence_record"]["seq"]: r
        for r in records
        if r.kind == "finding" and isinstance(r.payload.get("evidence_record"), dict)
    }
    return [Item(r, findings.get(r.seq)) for r in records if r.kind == "evidence"]


def _in_scope(item: Item, step: int | None, released: bool) -> bool:
    """Whether evidence belongs in the report on the checkpoint at ``step`` (None: the whole run)."""
    if step is None:
        return True
    if item.stage in _STEP_STAGES:
        return item.step is not None and item.step <= step
    if item.stage == Stage.RELEASE.value:
        return released
    return True


def load_run(target: Path) -> RunEvidence:
    """Read the run governing ``target`` (a run folder or one of its checkpoints).

    A run folder is reported whole, about its release checkpoint (else its last sealed one); a
    checkpoint is reported with the evidence up to its step. Raises TrustaiUserError when ``target``
    does not exist or no ledger governs it.
    """
    target = Path(target)
    if not target.exists():
        raise TrustaiUserError(
            "no such run folder or checkpoint", where=str(target), fix="pass a governed run folder"
        )
    fix = "pass a run folder written by `trustai train` (with trustai/ledger.sqlite) or a checkpoint"
    ledger_path = require_ledger(target, fix=fix)
    run_dir = ledger_path.parent.parent.resolve()
    with Ledger(ledger_path, create=False) as ledger:
        records = ledger.records()
    cards = [r for r in records if r.kind == "card"]
    resolved = target.resolve()
    is_run = resolved == run_dir or resolved.is_relative_to(run_dir / "trustai")
    if is_run:
        released = [c for c in cards if c.payload.get("release")]
        card = (released or cards or [None])[-1]
        subject = _card_folder(run_dir, card) if card else None
        step, release = None, True
    else:
        subject = model_folder(target).resolve()
        own = [c for c in cards if _card_folder(run_dir, c) == subject]
        if not own:
            raise TrustaiUserError(
                "this folder is not a checkpoint sealed in the run's ledger",
                where=str(target),
                fix="pass the run folder or one of its checkpoints/<step> folders",
            )
        card = own[-1]
        step, release = card.payload.get("step"), any(c.payload.get("release") for c in own)
    items = [i for i in _items(records) if _in_scope(i, step, release)]
    return RunEvidence(run_dir, ledger_path, records, items, subject, card)
