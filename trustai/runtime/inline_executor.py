"""Audit jobs in this process, one after the other, each under its check's time limit."""

from collections.abc import Callable, Sequence
from pathlib import Path

from trustai.runtime.executor import AuditJob, Deliver
from trustai.runtime.measure import measure_with_limit


class InlineExecutor:
    """The Executor that runs each job where ``submit`` is called and returns when all are delivered.

    A hung audit is abandoned at its time limit, not killed (measure_with_limit); use the Ray executor
    for audits that may hang while holding resources.
    """

    def __init__(self, root: Path):
        """Artifacts go to ``root/artifacts/<job.artifact_name>``; evidence paths are relative to ``root``."""
        self.root = Path(root)

    def start(self) -> None:
        """Nothing to acquire."""

    def submit(
        self, jobs: Sequence[AuditJob], deliver: Deliver, on_done: Callable[[], None] | None = None
    ) -> None:
        """Run every job now, delivering each Evidence as it is measured, then call ``on_done``."""
        for job in jobs:
            deliver(job, measure_with_limit(job.check, job.context(self.root), self.root))
        if on_done is not None:
            on_done()

    def drain(self, timeout_s: float) -> bool:
        """Always True: ``submit`` already waited."""
        return True

    def shutdown(self) -> None:
        """Nothing to release."""
