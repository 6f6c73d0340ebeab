"""What a report is built from: a run's ledger (read by ``trustai.core.run_record``), the evidence in the
report's scope (each evidence record with the finding judged from it), and the checkpoint the report is
about. Everything here comes from the ledger, except the subject's LeRobot config.json, which lives in
the signed checkpoint folder. A resumed run is reported under its latest ``run.start``.

One ledger per report: a run folder's own ``trustai/ledger.sqlite``, or for a checkpoint the ledger its
card cites, never one found on the way up that the card does not cite (``RunEvidence.refused`` names
it, and the report's integrity check fails). The subject of a run's report is the checkpoint of the
latest release card an anchor covers (trustai.core.run_record.RunLedger.release_card).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from trustai import layout
from trustai.core.evidence import Stage
from trustai.core.ledger import Record
from trustai.core.run_record import EvidenceItem as Item
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError

# Stages whose evidence belongs to one training step; the rest belong to the whole run.
_STEP_STAGES = (Stage.TRAIN.value, Stage.CHECKPOINT.value)


@dataclass(frozen=True)
class RunEvidence:
    """A run's ledger, read for one report."""

    ledger: RunLedger
    items: list[Item]  # evidence in the report's scope, in ledger order
    subject: Path | None  # the pretrained_model folder reported on, when the run has one
    subject_card: Record | None  # the ledger's card record of the subject
    refused: list[str] = field(default_factory=list)  # ledgers passed over: integrity failures

    @property
    def run_dir(self) -> Path:
        """The run folder."""
        return self.ledger.run_dir

    @property
    def ledger_path(self) -> Path:
        """The run's ledger file."""
        return self.ledger.ledger_path

    @property
    def records(self) -> list[Record]:
        """Every ledger record, in order."""
        return self.ledger.records

    @property
    def start(self) -> Record | None:
        """The latest run.start record (manifest and policy pack)."""
        return self.ledger.start

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's provenance manifest (empty when run.start is missing)."""
        return self.ledger.manifest

    @property
    def head(self) -> Record | None:
        """The last ledger record."""
        return self.ledger.head

    @property
    def subject_step(self) -> int | None:
        """The training step of the subject checkpoint."""
        return self.subject_card.payload.get("step") if self.subject_card else None

    @property
    def subject_label(self) -> str:
        """The subject as reports name it: ``checkpoints/000040/pretrained_model (step 40, release)``."""
        if self.subject is None or self.subject_card is None:
            return "no sealed checkpoint"
        card = self.subject_card.payload
        return f"{self.display(self.subject)} (step {card.get('step')}" + (
            ", release)" if card.get("release") else ")"
        )

    def checkpoint_folder(self, card: Record) -> Path:
        """Return the folder a card record names, resolved against the run folder."""
        return self.ledger.checkpoint_folder(card)

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


def _in_scope(item: Item, step: int | None, released: bool) -> bool:
    """Whether evidence belongs in the report on the checkpoint at ``step`` (None: the whole run)."""
    if step is None:
        return True
    if item.stage in _STEP_STAGES:
        return item.step is not None and item.step <= step
    if item.stage == Stage.RELEASE.value:
        return released
    return True


def _cited_ledger(model: Path) -> Path | None:
    """The ledger the card in ``model`` cites (resolved), or None when it has no readable card naming
    a ledger.sqlite (verification names what is wrong with it)."""
    try:
        card = json.loads(layout.card_path(model).read_text(encoding="utf-8"))
        named = card["ledger"]["path"]
        if isinstance(named, str) and PurePath(named).name == layout.LEDGER_NAME:
            return (layout.card_dir(model) / named).resolve()
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, RecursionError):
        pass
    return None


def _checkpoint_of(target: Path) -> Path | None:
    """The model folder when ``target`` is a checkpoint (a folder holding pretrained_model/, or a model
    folder with a card), else None."""
    if (target / layout.MODEL_DIR).is_dir():
        return target / layout.MODEL_DIR
    return target if layout.card_path(target).is_file() else None


def _ledger_of(target: Path, fix: str) -> tuple[Path, list[str]]:
    """The one ledger a report on ``target`` reads, and the ledgers refused on the way: a run folder's
    own; for a checkpoint, the ledger its card cites (a different one found above the checkpoint is
    refused, not read)."""
    model = _checkpoint_of(target)
    found = layout.find_ledger(target)
    cited = _cited_ledger(model) if model is not None else None
    if cited is None or not cited.is_file():
        return layout.require_ledger(target, fix=fix), []
    refused = []
    if found is not None and found.resolve() != cited:
        refused.append(
            f"{found}: a ledger between the checkpoint and the one its card cites ({cited}) "
            "(refused, not read)"
        )
    return cited, refused


def load_run(target: Path) -> RunEvidence:
    """Read the run governing ``target`` (a run folder or one of its checkpoints).

    A run folder is reported whole, about its latest anchored release checkpoint (else its last sealed
    one); a checkpoint is reported with the evidence up to its step. Raises TrustaiUserError when
    ``target`` does not exist or no ledger governs it.
    """
    target = Path(target)
    if not target.exists():
        raise TrustaiUserError(
            "no such run folder or checkpoint", where=str(target), fix="pass a governed run folder"
        )
    fix = f"pass a run folder written by `trustai train` (with {layout.RUN_LEDGER}) or a checkpoint"
    ledger_path, refused = _ledger_of(target, fix)
    run = RunLedger.load(ledger_path)
    run_dir, resolved = run.run_dir.resolve(), target.resolve()
    if resolved == run_dir or resolved.is_relative_to(layout.trustai_dir(run_dir)):
        cards = run.anchored_cards
        card = run.release_card or (cards[-1] if cards else None)
        subject = run.checkpoint_folder(card) if card else None
        step, release = None, True
    else:
        subject = layout.model_folder(target).resolve()
        own = run.cards_of(subject, anchored=True)
        if not own:
            raise TrustaiUserError(
                "this folder is not a checkpoint sealed in the run's ledger",
                where=str(target),
                fix="pass the run folder or one of its checkpoints/<step> folders",
            )
        card = own[-1]
        step, release = card.payload.get("step"), any(c.payload.get("release") for c in own)
    items = [i for i in run.evidence if _in_scope(i, step, release)]
    return RunEvidence(run, items, subject, card, refused)
