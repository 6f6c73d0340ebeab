"""The one way audits run: a stage's checks become ``AuditJob``s, an ``Executor`` turns each job into
``Evidence`` and delivers it. Inline (``InlineExecutor``) and on Ray (``RayExecutor``) implement the
same protocol, and every path (training hooks, ``trustai audit``, ``trustai monitor``, ``trustai drift``)
goes through one of them, so every audit gets the same context, time limit and error capture.

A job carries only plain data (paths, dicts), so it runs the same in this process and on a Ray worker:
the dataset is its folder, training statistics are their summary dict. ``policy`` is the one exception,
an already loaded policy that only the inline executor uses (``trustai audit`` loads a checkpoint once
for all of its checks).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trustai import layout
from trustai.core.audit import AuditContext
from trustai.core.evidence import Evidence, InputProvenance, Stage
from trustai.packs import Check

Deliver = Callable[["AuditJob", Evidence], None]
"""Called once per job with its Evidence (artifact files already under the executor's root)."""


@dataclass(frozen=True)
class AuditJob:
    """One check to run for one stage event: what to measure and everything the audit may look at."""

    check: Check
    stage: Stage
    step: int | None
    inputs: InputProvenance
    artifact_name: str  # the folder under the executor's ``artifacts/`` that receives the job's files
    seed: int = 0
    checkpoint_dir: str | None = None
    dataset_root: str | None = None
    reference_root: str | None = None
    manifest: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    policy: Any = None  # an already loaded PolicyAdapter (inline only; never sent to a worker)

    def context(self, root: Path) -> AuditContext:
        """The AuditContext of this job, its artifacts going to ``root/artifacts/<artifact_name>``."""
        return AuditContext(
            stage=self.stage,
            seed=self.seed,
            inputs=self.inputs,
            artifact_dir=layout.artifact_dir(root, self.artifact_name),
            checkpoint_dir=Path(self.checkpoint_dir) if self.checkpoint_dir else None,
            dataset=Path(self.dataset_root) if self.dataset_root else None,
            reference=Path(self.reference_root) if self.reference_root else None,
            manifest=self.manifest,
            training=self.training,
            policy=self.policy,
        )


class Executor(Protocol):
    """Runs audit jobs and delivers their Evidence; never raises for an audit's failure (that is
    Evidence with ``error`` set)."""

    def start(self) -> None:
        """Acquire what the executor needs (a Ray connection); idempotent. Raises TrustaiUserError
        when that is impossible (an unreachable cluster)."""

    def submit(
        self, jobs: Sequence[AuditJob], deliver: Deliver, on_done: Callable[[], None] | None = None
    ) -> None:
        """Run ``jobs``: ``deliver(job, evidence)`` for each as it finishes, then ``on_done()`` once.
        May return before they run (asynchronous executors)."""

    def drain(self, timeout_s: float) -> bool:
        """Wait for submitted jobs, at most ``timeout_s``; jobs still running then are delivered as
        ``error`` Evidence. True if everything finished in time."""

    def shutdown(self) -> None:
        """Release what ``start`` acquired."""


def error_evidence(job: AuditJob, error: str) -> Evidence:
    """Evidence for a job that produced none of its own (its worker died, it was cancelled)."""
    return Evidence(
        audit=job.check.audit,
        audit_version="unknown",
        stage=job.stage,
        check_id=job.check.id,
        params=job.check.params,
        inputs=job.inputs,
        error=error,
    )
