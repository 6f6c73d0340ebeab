"""The gate a report states: its subject checkpoint's promotion gate exactly as ``trustai status``
states it (``trustai.reports.run_status``: the run's data and monitor findings plus the checkpoint's
own, the latest finding of each check), with the evidence behind each finding it reads."""

from dataclasses import dataclass
from pathlib import Path

from trustai.reports.model import Item, RunEvidence
from trustai.reports.run_status import run_status

from trustai.core.gate import Gate


@dataclass(frozen=True)
class ReportGate:
    """The gate, what it was decided on, and the evidence of the findings it read (ledger order)."""

    gate: Gate
    scope: str
    items: list[Item]

    @property
    def inconclusive(self) -> list[str]:
        """Checks whose latest finding could not measure, whether or not they block."""
        return [i.check_id for i in self.items if i.status == "inconclusive"]


def report_gate(run: RunEvidence) -> ReportGate:
    """The gate of ``run``'s subject checkpoint (the run's own findings when it has none)."""
    status = run_status(run.run_dir)
    subject = run.subject.resolve() if run.subject else None
    checkpoint = next(
        (c for c in status.checkpoints if (Path(status.run_dir) / c.folder).resolve() == subject), None
    )
    if checkpoint is None:
        gate, rows = status.gate, status.run_findings
        scope = "the run's own findings (no sealed checkpoint)"
    else:
        gate, rows = checkpoint.gate, [*status.run_findings, *checkpoint.findings]
        kind = "released checkpoint" if checkpoint.release else "checkpoint"
        scope = f"{kind} {run.display(run.subject)} (step {checkpoint.step})" if run.subject else kind
    judged = {i.finding.seq: i for i in run.items if i.finding is not None}
    items = sorted((judged[r.record] for r in rows if r.record in judged), key=lambda i: i.record.seq)
    return ReportGate(gate, scope, items)
