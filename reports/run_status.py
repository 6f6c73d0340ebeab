"""A governed run at a glance, read from its ledger only: its pack and dataset, each checkpoint (step,
card, signature, gate) with the findings that decide its gate, the stages raised after training
(``trustai audit``, ``trustai monitor``), and the run's gate. ``trustai status`` prints it
(``trustai.cli.status``); ``trustai serve`` shows it (``trustai.dashboard``).

Which findings a checkpoint's gate reads: the run's data and monitor findings, the train and checkpoint
findings of its step, and, on the released checkpoint, the release findings of its step; the latest
finding of each check counts. The run's gate is the released checkpoint's (the model a CI job
promotes), else the newest checkpoint's, else that of the run's own findings. Reading never writes to
the run.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trustai import layout
from trustai.core.evidence import Stage
from trustai.core.gate import Gate, gate
from trustai.core.ledger import Record
from trustai.core.run_record import EvidenceItem, RunLedger
from trustai.errors import TrustaiUserError
from trustai.packs import Check

STATUS_SCHEMA = "trustai.status/v1"
RUN_STAGES = (Stage.DATA, Stage.MONITOR)  # findings about the run, on every checkpoint's gate


@dataclass(frozen=True)
class FindingRow:
    """One finding read back from the ledger, with the step its evidence belongs to."""

    check_id: str
    audit: str
    stage: str
    step: int | None
    status: str
    severity: str
    summary: str  # the key metric of a pass, else the finding's message
    record: int  # the finding's ledger seq

    @classmethod
    def of(cls, item: EvidenceItem, judged: Record) -> "FindingRow":
        """The row of an evidence item and the finding record that judged it."""
        finding = judged.payload
        return cls(
            check_id=item.check_id,
            audit=str(finding.get("audit", "?")),
            stage=item.stage,
            step=item.step,
            status=item.status,
            severity=str(finding.get("severity", "?")),
            summary=_summary(finding),
            record=judged.seq,
        )

    def as_json(self) -> dict[str, Any]:
        """The row as a JSON object (keys: check, audit, stage, step, status, severity, summary, record)."""
        return {
            "check": self.check_id,
            "audit": self.audit,
            "stage": self.stage,
            "step": self.step,
            "status": self.status,
            "severity": self.severity,
            "summary": self.summary,
            "record": self.record,
        }


@dataclass(frozen=True)
class CheckpointStatus:
    """One checkpoint of the run: its card as the ledger recorded it, its own findings and its gate."""

    folder: str  # the model folder, relative to the run folder when inside it
    step: int | None
    card: bool  # a card was sealed into it
    signed: bool  # its latest card was signed
    release: bool  # the run released it
    findings: list[FindingRow]  # train, checkpoint and (released) release findings of its step
    gate: Gate

    @property
    def name(self) -> str:
        """The checkpoint's folder name (``000004``)."""
        return layout.checkpoint_name(Path(self.folder))

    def as_json(self) -> dict[str, Any]:
        """The checkpoint as a JSON object."""
        return {
            "checkpoint": self.folder,
            "step": self.step,
            "card": self.card,
            "signed": self.signed,
            "release": self.release,
            "gate": self.gate.as_json(),
            "findings": [f.as_json() for f in self.findings],
        }


@dataclass(frozen=True)
class RunStatus:
    """Everything ``trustai status`` states about a run."""

    run_dir: Path
    pack: dict[str, Any]  # name, version, digest of the pack the latest start trains under
    dataset: dict[str, Any]  # id, fingerprint
    ended: bool
    steps: int | None
    checks: list[Check]  # the pack's checks, as recorded
    run_findings: list[FindingRow]  # data and monitor findings, on every checkpoint's gate
    checkpoints: list[CheckpointStatus]
    later_stages: list[dict[str, Any]]  # stage events after training: seq, stage, step, trigger, time
    gate: Gate
    deciding: CheckpointStatus | None  # the checkpoint whose gate is the run's; None: no checkpoint

    def as_json(self) -> dict[str, Any]:
        """The status as one JSON document (schema ``trustai.status/v1``)."""
        return {
            "schema": STATUS_SCHEMA,
            "run": str(self.run_dir),
            "pack": self.pack,
            "dataset": self.dataset,
            "training": {"ended": self.ended, "steps": self.steps},
            "run_findings": [f.as_json() for f in self.run_findings],
            "checkpoints": [c.as_json() for c in self.checkpoints],
            "stages_after_training": self.later_stages,
            "gate": self.gate.as_json() | {"checkpoint": self.deciding.folder if self.deciding else None},
        }


def _summary(finding: dict[str, Any]) -> str:
    """A pass's first threshold (``metric=value``), else the finding's message."""
    thresholds = finding.get("thresholds")
    if finding.get("status") == "pass" and isinstance(thresholds, list) and thresholds:
        first = thresholds[0] if isinstance(thresholds[0], dict) else {}
        more = f" (+{len(thresholds) - 1} more held)" if len(thresholds) > 1 else ""
        return f"{first.get('metric')}={first.get('value')}{more}"
    return str(finding.get("message", ""))


def _recorded_checks(policy_pack: dict[str, Any]) -> list[Check]:
    """The checks the latest run.start recorded (an unreadable one is left out: the ledger's verify
    names a damaged record)."""
    checks = []
    for raw in policy_pack.get("checks") or []:
        try:
            checks.append(Check.model_validate(raw))
        except ValidationError:
            continue
    return checks


def _latest(rows: list[FindingRow]) -> list[FindingRow]:
    """The latest row of each (stage, check), in ledger order of those rows."""
    latest = {(r.stage, r.check_id): r for r in rows}
    return sorted(latest.values(), key=lambda r: r.record)


def _folder_label(run_dir: Path, folder: Path) -> str:
    return str(folder.relative_to(run_dir)) if folder.is_relative_to(run_dir) else str(folder)


def _later_stages(run: RunLedger) -> list[dict[str, Any]]:
    """Stage events after the latest run.end, and any stage raised outside training (a trigger)."""
    end_seq = run.end.seq if run.end else None
    return [
        {
            "seq": r.seq,
            "stage": r.payload.get("stage"),
            "step": r.payload.get("step"),
            "trigger": r.payload.get("trigger"),
            "time": r.ts,
        }
        for r in run.stages()
        if (end_seq is not None and r.seq > end_seq) or r.payload.get("trigger")
    ]


def _checkpoints(
    run: RunLedger, rows: list[FindingRow], run_rows: list[FindingRow], checks: list[Check]
) -> list[CheckpointStatus]:
    """Every checkpoint on disk or with a card, in step order, with its own findings and its gate."""
    released = run.checkpoint_folder(run.release_card) if run.release_card else None
    if released is None and run.end and run.end.payload.get("release_checkpoint"):
        released = (run.run_dir / str(run.end.payload["release_checkpoint"])).resolve()
    folders = {p.resolve(): layout.checkpoint_step(p) for p in layout.checkpoint_models(run.run_dir)}
    for card in run.cards:
        folders[run.checkpoint_folder(card)] = card.payload.get("step")
    checkpoints = []
    for folder, step in sorted(folders.items(), key=lambda fs: (fs[1] is None, fs[1] or 0, str(fs[0]))):
        cards = run.cards_of(folder)
        release = folder == released
        own = _latest(
            [
                r
                for r in rows
                if r.step == step
                and (r.stage in (Stage.TRAIN, Stage.CHECKPOINT) or (release and r.stage == Stage.RELEASE))
            ]
        )
        checkpoints.append(
            CheckpointStatus(
                folder=_folder_label(run.run_dir, folder),
                step=step,
                card=bool(cards),
                signed=bool(cards and cards[-1].payload.get("signed")),
                release=release,
                findings=own,
                gate=gate(sorted([*run_rows, *own], key=lambda r: r.record), checks),
            )
        )
    return checkpoints


def run_status(run_dir: Path) -> RunStatus:
    """Read the run in ``run_dir`` (never writing to it). Raises TrustaiUserError (exit 2) when the
    folder holds no trustai ledger."""
    run_dir = Path(run_dir).resolve()
    ledger = layout.ledger_path(run_dir)
    if not ledger.is_file():
        above = layout.find_ledger(run_dir)
        fix = (
            f"pass the run folder {layout.run_dir_of(above)}"
            if above
            else "pass the output folder of a governed run (it holds trustai/ledger.sqlite)"
        )
        raise TrustaiUserError("not a governed run: no trustai ledger here", where=str(run_dir), fix=fix)
    return status_of(RunLedger.load(ledger))


def status_of(run: RunLedger) -> RunStatus:
    """The status of a run already read from its ledger (``run_status`` reads it first)."""
    rows = [FindingRow.of(item, item.finding) for item in run.evidence if item.finding is not None]
    run_rows = _latest([r for r in rows if r.stage in RUN_STAGES])
    checks = _recorded_checks(run.policy_pack)

    checkpoints = _checkpoints(run, rows, run_rows, checks)
    deciding = next((c for c in checkpoints if c.release), checkpoints[-1] if checkpoints else None)
    pack = {k: run.policy_pack.get(k) for k in ("name", "version", "digest")}
    dataset = run.manifest.get("dataset")
    return RunStatus(
        run_dir=run.run_dir.resolve(),
        pack=pack,
        dataset={k: dataset.get(k) for k in ("id", "fingerprint")} if isinstance(dataset, dict) else {},
        ended=run.end is not None,
        steps=run.end.payload.get("steps") if run.end else None,
        checks=checks,
        run_findings=run_rows,
        checkpoints=checkpoints,
        later_stages=_later_stages(run),
        gate=deciding.gate if deciding else gate(run_rows, checks),
        deciding=deciding,
    )
