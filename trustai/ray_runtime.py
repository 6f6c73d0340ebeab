"""Checkpoint audits as Ray tasks, off the training path.

``RayAuditor.submit`` hands a stage's checks to Ray and returns at once; a collector thread appends
each result to the ledger as it arrives and calls the batch's ``on_done`` (e.g. sealing the card) when
the last one lands. A task whose worker dies is retried by Ray (``max_retries``), then recorded as an
``error`` finding; a task that outlives its check's ``timeout_s`` is cancelled and recorded as an
``error`` finding. The training thread never waits on an audit, except in ``drain`` at the end.

At most as many jobs as the cluster has CPUs are in flight; the rest wait in the auditor's queue, so a
job's time limit counts from its launch, not from the moment a whole fleet of checkpoints was queued.

Workers read the checkpoint and dataset from the paths they are given (same node or a shared
filesystem) and return their artifacts' bytes, so the run folder needs no shared filesystem.
"""

import logging
import os
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustai.audit import AuditContext
from trustai.errors import TrustaiUserError
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
    artifact_name: str  # the folder under ``trustai/artifacts`` that receives the job's files
    seed: int = 0
    checkpoint_dir: str | None = None
    dataset_root: str | None = None
    reference_root: str | None = None
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
            artifact_dir=root / "artifacts" / job.artifact_name,
            checkpoint_dir=Path(job.checkpoint_dir) if job.checkpoint_dir else None,
            dataset=Path(job.dataset_root) if job.dataset_root else None,
            reference=Path(job.reference_root) if job.reference_root else None,
            manifest=job.manifest,
            training=job.training,
        )
        evidence = measure_with_limit(job.check, ctx, root)
        files = {a.path: (root / a.path).read_bytes() for a in evidence.artifacts}
    return {"evidence": evidence.canonical(), "files": files}


@dataclass
class _Batch:
    queued: deque[AuditJob]  # not launched yet
    pending: dict[Any, tuple[AuditJob, float]]  # launched: ObjectRef -> (job, deadline)
    on_done: Callable[[list[Finding]], None] | None
    on_finding: Callable[[Finding], None] | None
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
        """``num_cpus`` bounds a local Ray started on demand (default: a quarter of the cores, the
        rest stay with the trainer); ``address`` (or ``RAY_ADDRESS``) joins an existing cluster."""
        self.governance = governance
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.poll_s = poll_s
        self._batches: list[_Batch] = []
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._remote: Any = None
        self._slots = 1
        self._owns_ray = False
        self._stop = False

    def start(self) -> None:
        """Connect to Ray (or start a local one) and the collector thread; idempotent.

        Raises TrustaiUserError when the cluster at ``address`` cannot be reached (checked within
        seconds: Ray itself retries for minutes).
        """
        import ray

        if self._remote is not None:
            return
        if not ray.is_initialized():
            if self.address:
                _require_reachable(self.address)
                try:
                    ray.init(address=self.address, log_to_driver=False)
                except ConnectionError as exc:
                    raise TrustaiUserError(
                        f"cannot join the Ray cluster: {exc}", where=self.address, fix=_ADDRESS_FIX
                    ) from None
            else:  # a bounded local share, so audits never take every core from the trainer
                cpus = self.num_cpus or max(1, (os.cpu_count() or 2) // 4)
                ray.init(num_cpus=cpus, num_gpus=0, include_dashboard=False, log_to_driver=False)
            self._owns_ray = True
        self._slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(run_job)
        self._thread = threading.Thread(target=self._collect, name="trustai-ray-collector", daemon=True)
        self._thread.start()

    def submit(
        self,
        jobs: list[AuditJob],
        on_done: Callable[[list[Finding]], None] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
    ) -> None:
        """Queue ``jobs`` for Ray and return immediately; ``on_finding(finding)`` runs as each result is
        recorded and ``on_done(findings)`` when all of them have been."""
        self.start()
        batch = _Batch(deque(jobs), {}, on_done, on_finding)
        with self._lock:
            self._batches.append(batch)
            self._launch()
            self._lock.notify_all()

    def _launch(self) -> None:
        """Start queued jobs while fewer than the cluster's CPUs are in flight (caller holds the lock)."""
        in_flight = sum(len(b.pending) for b in self._batches)
        for batch in self._batches:
            while batch.queued and in_flight < self._slots:
                job = batch.queued.popleft()
                batch.pending[self._remote.remote(job)] = (job, time.monotonic() + job.check.timeout_s)
                in_flight += 1

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
        finding = gov.record(job.check, evidence)
        batch.findings.append(finding)
        if batch.on_finding is not None:
            try:
                batch.on_finding(finding)
            except Exception:  # a failed progress callback must not kill the collector
                log.exception("trustai: reporting an audit finding failed")

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
            self._launch()
            self._lock.notify_all()

    def _collect(self) -> None:
        import ray

        while not self._stop:
            with self._lock:
                finished = [b for b in self._batches if not b.pending and not b.queued]
            for batch in finished:
                self._complete(batch)
            with self._lock:
                refs = [ref for b in self._batches for ref in b.pending]
                if not refs:
                    self._lock.wait(self.poll_s)
                    continue
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=self.poll_s)
            now = time.monotonic()
            with self._lock:
                launched = [(batch, list(batch.pending.items())) for batch in self._batches]
            for batch, pending in launched:
                for ref, (job, deadline) in pending:
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
                    with self._lock:
                        del batch.pending[ref]
                        self._launch()

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
                while batch.queued:
                    self._record(batch, batch.queued.popleft(), None, "not started before the wait ran out")
        self._wait_all(30.0)
        return False

    def shutdown(self) -> None:
        """Stop the collector thread, and Ray when this auditor started it (a Ray someone else
        started, e.g. Ray Train's or a test's, is left running)."""
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False


_ADDRESS_FIX = (
    "pass --ray-address HOST:PORT of a running cluster's head (see `ray status`), or drop it for a local Ray"
)


def _require_reachable(address: str) -> None:
    """Fail fast when a ``host:port`` or ``ray://host:port`` address has nothing listening."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TrustaiUserError("not a Ray cluster address (HOST:PORT)", where=address, fix=_ADDRESS_FIX)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise TrustaiUserError(
            f"no Ray cluster answers there ({exc.strerror or exc})", where=address, fix=_ADDRESS_FIX
        ) from None
