"""Checkpoint audits as Ray tasks, off the training path.

``RayAuditor.submit`` hands a stage's checks to Ray and returns at once; a collector thread appends
each result to the ledger as it arrives and calls the batch's ``on_done`` (e.g. sealing the card) when
the last one lands. A task whose worker dies is retried by Ray (``max_retries``), then recorded as an
``error`` finding; a task that outlives its check's ``timeout_s`` is cancelled and recorded as an
``error`` finding. The training thread never waits on an audit, except in ``drain`` at the end.

Workers read the checkpoint and dataset from the paths they are given (same node or a shared
filesystem) and return their artifacts' bytes, so the run folder needs no shared filesystem.
"""

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustai.audit import AuditContext
from trustai.evidence import Evidence, Finding, Inputs, Stage
from trustai.policy import Check

log = logging.getLogger("trustai")


@dataclass(frozen=True)
class AuditJob:
    """A picklable description of one check to run on a worker."""

    check: Check
    stage: Stage
    step: int | None
    inputs: Inputs
    seed: int = 0
    checkpoint_dir: str | None = None
    dataset_root: str | None = None
    manifest: dict[str, Any] | None = None
    training: dict[str, Any] | None = None


def run_job(job: AuditJob) -> dict[str, Any]:
    """Run one job where it is called (a Ray worker); return the Evidence JSON and artifact bytes."""
    from trustai.runtime import measure_with_limit

    os.environ["TRUSTAI_AUDIT_WORKER"] = "1"
    with tempfile.TemporaryDirectory(prefix="trustai-audit-") as tmp:
        root = Path(tmp)
        ctx = AuditContext(
            stage=job.stage,
            seed=job.seed,
            inputs=job.inputs,
            artifact_dir=root / "artifacts" / f"{job.stage.value}-{job.step or 0}-{job.check.id}",
            checkpoint_dir=Path(job.checkpoint_dir) if job.checkpoint_dir else None,
            dataset=Path(job.dataset_root) if job.dataset_root else None,
            manifest=job.manifest,
            training=job.training,
        )
        evidence = measure_with_limit(job.check, ctx, root)
        files = {a.path: (root / a.path).read_bytes() for a in evidence.artifacts}
    return {"evidence": evidence.canonical(), "files": files}


@dataclass
class _Batch:
    pending: dict[Any, tuple[AuditJob, float]]  # ObjectRef -> (job, deadline)
    on_done: Callable[[list[Finding]], None] | None
    findings: list[Finding] = field(default_factory=list)


class RayAuditor:
    """Submits audit jobs to Ray and records their results in a Governance's ledger."""

    def __init__(
        self,
        governance: Any,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        max_retries: int = 1,
        poll_s: float = 0.2,
    ):
        self.governance = governance
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.poll_s = poll_s
        self._batches: list[_Batch] = []
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._remote: Any = None
        self._stop = False

    def _ensure_started(self) -> None:
        import ray

        if self._remote is not None:
            return
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:  # a bounded local share, so audits never take every core from the trainer
                cpus = self.num_cpus or max(1, (os.cpu_count() or 2) // 4)
                ray.init(num_cpus=cpus, num_gpus=0, include_dashboard=False, log_to_driver=False)
        self._remote = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(run_job)
        self._thread = threading.Thread(target=self._collect, name="trustai-ray-collector", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[AuditJob], on_done: Callable[[list[Finding]], None] | None = None) -> None:
        """Start ``jobs`` on Ray and return immediately; ``on_done(findings)`` runs when all have landed."""
        self._ensure_started()
        now = time.monotonic()
        pending = {self._remote.remote(job): (job, now + job.check.timeout_s) for job in jobs}
        with self._lock:
            self._batches.append(_Batch(pending, on_done))
            self._lock.notify_all()
        if not jobs and on_done is not None:
            self._finish_empty()

    def _finish_empty(self) -> None:
        with self._lock:
            empties = [b for b in self._batches if not b.pending]
        for batch in empties:
            self._complete(batch)

    def _record(self, batch: _Batch, job: AuditJob, result: dict[str, Any] | None, error: str | None) -> None:
        gov = self.governance
        if result is not None:
            for rel, data in result["files"].items():
                path = gov.trustai_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            evidence = Evidence.model_validate(result["evidence"])
        else:
            evidence = Evidence(
                audit=job.check.audit,
                audit_version="unknown",
                stage=job.stage,
                check_id=job.check.id,
                params=job.check.params,
                inputs=job.inputs,
                error=error,
            )
        batch.findings.append(gov.record(job.check, evidence))

    def _complete(self, batch: _Batch) -> None:
        with self._lock:
            if batch not in self._batches:
                return
            self._batches.remove(batch)
        if batch.on_done is not None:
            try:
                batch.on_done(batch.findings)
            except Exception:  # a failed card must not kill the collector
                log.exception("trustai: completing an audit batch failed")
        with self._lock:
            self._lock.notify_all()

    def _collect(self) -> None:
        import ray

        while not self._stop:
            with self._lock:
                refs = [ref for b in self._batches for ref in b.pending]
                if not refs:
                    self._lock.wait(self.poll_s)
                    continue
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=self.poll_s)
            now = time.monotonic()
            for batch in list(self._batches):
                for ref, (job, deadline) in list(batch.pending.items()):
                    if ref in done:
                        try:
                            self._record(batch, job, ray.get(ref), None)
                        except Exception as exc:  # worker death after retries, cancellation
                            self._record(
                                batch,
                                job,
                                None,
                                f"audit worker failed after {self.max_retries} retries: {type(exc).__name__}",
                            )
                    elif now > deadline:
                        ray.cancel(ref, force=True)
                        self._record(
                            batch, job, None, f"timed out after {job.check.timeout_s:g} s (cancelled)"
                        )
                    else:
                        continue
                    del batch.pending[ref]
                if not batch.pending:
                    self._complete(batch)

    def _wait_all(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._batches and time.monotonic() < deadline:
                self._lock.wait(min(self.poll_s, max(0.0, deadline - time.monotonic())))
            return not self._batches

    def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted batch has completed, at most ``timeout_s``. Jobs still running
        then are cancelled and recorded as ``error`` findings. True if everything finished in time."""
        if self._wait_all(timeout_s):
            return True
        with self._lock:
            for batch in self._batches:
                for ref, (job, _) in batch.pending.items():
                    batch.pending[ref] = (job, 0.0)  # the collector cancels and records them
        self._wait_all(30.0)
        return False

    def shutdown(self) -> None:
        """Stop the collector thread (Ray itself is left to its owner)."""
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=5)
