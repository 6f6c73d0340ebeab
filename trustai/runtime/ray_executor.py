"""Audit jobs as Ray tasks, off the training path.

``RayExecutor.submit`` hands jobs to Ray and returns at once; a collector thread delivers each
job's Evidence as it arrives and calls the batch's ``on_done`` (e.g. sealing the card) when the last
one lands. A task whose worker dies is retried by Ray (``max_retries``), then delivered as ``error``
Evidence; a task that outlives its check's ``timeout_s`` is cancelled and delivered as ``error``
Evidence. The training thread never waits on an audit, except in ``drain`` at the end.

At most as many jobs as the cluster has CPUs are in flight; the rest wait in the executor's queue, so a
job's time limit counts from its launch, not from the moment a whole fleet of checkpoints was queued.

Workers read the checkpoint and dataset from the paths they are given (same node or a shared
filesystem) and return their artifacts' bytes, so the run folder needs no shared filesystem. A worker
loads a checkpoint's policy once and gives each audit its own copy (trustai.lerobot.policy_cache);
``policy_loads`` counts the loads per checkpoint. When the cluster has GPUs, each job that runs a
policy asks Ray for one and runs its audit with ``device: cuda``; without GPUs such jobs run on CPU,
and a check that asked for ``cuda`` falls back to ``cpu``. Either way the evidence's params record
the device the audit ran on.
"""

import dataclasses
import logging
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustai.core.audit import get_audit
from trustai.core.evidence import Evidence
from trustai.core.load_counts import load_counts, loads_since
from trustai.runtime import ray_session
from trustai.runtime.executor import AuditJob, Deliver, error_evidence
from trustai.runtime.measure import measure_with_limit

log = logging.getLogger("trustai")


def runs_policy(job: AuditJob) -> bool:
    """True when the job's audit runs a policy on a device (its params have ``device``) on a checkpoint."""
    return job.checkpoint_dir is not None and "device" in get_audit(job.check.audit).Params.model_fields


def on_device(job: AuditJob, gpu: bool) -> AuditJob:
    """``job`` with its audit's ``device`` param set to where it runs: ``cuda`` on a GPU the task was
    given; without one, ``cpu`` in place of a ``cuda`` the check asked for (the evidence's params then
    say ``cpu``)."""
    if not runs_policy(job):
        return job
    asked = str(job.check.params.get("device", "cpu"))
    device = "cuda" if gpu else ("cpu" if asked.startswith("cuda") else asked)
    if device == asked:
        return job
    if not gpu:
        log.warning("trustai: %s asked for %s; no GPU in the cluster, running on cpu", job.check.id, asked)
    check = job.check.model_copy(update={"params": {**job.check.params, "device": device}})
    return dataclasses.replace(job, check=check)


def run_on_worker(job: AuditJob, gpu: bool = False) -> dict[str, Any]:
    """Run one job where it is called (a Ray worker; ``gpu``: the task was given one); return the
    Evidence JSON, artifact bytes and the policy loads the job caused in this worker."""
    loads = load_counts()
    job = on_device(job, gpu)
    with tempfile.TemporaryDirectory(prefix="trustai-audit-") as tmp:
        root = Path(tmp)
        evidence = measure_with_limit(job.check, job.context(root), root)
        files = {a.path: (root / a.path).read_bytes() for a in evidence.artifacts}
    return {"evidence": evidence.canonical(), "files": files, "policy_loads": loads_since(loads)}


@dataclass
class _Batch:
    queued: deque[AuditJob]  # not launched yet
    pending: dict[Any, tuple[AuditJob, float]]  # launched: ObjectRef -> (job, deadline)
    deliver: Deliver
    on_done: Callable[[], None] | None


class RayExecutor:
    """The Executor that runs jobs as Ray tasks and delivers their Evidence from a collector thread."""

    def __init__(
        self,
        root: Path,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        max_retries: int = 1,
        poll_s: float = 0.2,
    ):
        """Artifacts are written under ``root``. ``address`` (or ``RAY_ADDRESS``) joins an existing
        cluster; otherwise a local Ray with ``num_cpus`` CPUs is started on demand."""
        self.root = Path(root)
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.poll_s = poll_s
        self._batches: list[_Batch] = []
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._remote: Any = None
        self._remote_gpu: Any = None  # set when the cluster has GPUs
        self._slots = 1
        self._gpu_slots = 0
        self.policy_loads: Counter[str] = Counter()  # checkpoint folder -> policy loads on the workers
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
        self._owns_ray = ray_session.connect(self.address, self.num_cpus)
        resources = ray.cluster_resources()
        self._slots = max(1, int(resources.get("CPU", 1)))
        self._gpu_slots = int(resources.get("GPU", 0))
        task = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(run_on_worker)
        self._remote = task
        if self._gpu_slots:
            self._remote_gpu = task.options(num_gpus=1)
        self._thread = threading.Thread(target=self._collect, name="trustai-ray-collector", daemon=True)
        self._thread.start()

    def submit(
        self, jobs: Sequence[AuditJob], deliver: Deliver, on_done: Callable[[], None] | None = None
    ) -> None:
        """Queue ``jobs`` for Ray and return immediately; ``deliver(job, evidence)`` runs on the collector
        thread as each result lands, ``on_done()`` once all of them have."""
        self.start()
        # A loaded policy stays in this process: a worker loads the checkpoint itself.
        batch = _Batch(deque(dataclasses.replace(j, policy=None) for j in jobs), {}, deliver, on_done)
        with self._lock:
            self._batches.append(batch)
            self._launch()
            self._lock.notify_all()

    def _launch(self) -> None:
        """Start queued jobs while fewer than the cluster's CPUs (and, for jobs that run a policy on a
        GPU cluster, its GPUs) are in flight, in queue order (caller holds the lock)."""
        launched = [job for b in self._batches for job, _ in b.pending.values()]
        in_flight, on_gpus = len(launched), sum(self._wants_gpu(job) for job in launched)
        for batch in self._batches:
            while batch.queued and in_flight < self._slots:
                job = batch.queued[0]
                gpu = self._wants_gpu(job)
                if gpu and on_gpus >= self._gpu_slots:
                    break  # a GPU frees up before this checkpoint's next audit starts
                batch.queued.popleft()
                ref = (self._remote_gpu if gpu else self._remote).remote(job, gpu)
                batch.pending[ref] = (job, time.monotonic() + job.check.timeout_s)
                in_flight, on_gpus = in_flight + 1, on_gpus + gpu

    def _wants_gpu(self, job: AuditJob) -> bool:
        return self._gpu_slots > 0 and runs_policy(job)

    def _deliver(
        self, batch: _Batch, job: AuditJob, result: dict[str, Any] | None, error: str | None
    ) -> None:
        if result is not None:
            self.policy_loads.update(result.get("policy_loads", {}))
            for rel, data in result["files"].items():
                path = self.root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            evidence = Evidence.model_validate(result["evidence"])
        else:
            evidence = error_evidence(job, error or "no result")
        try:
            batch.deliver(job, evidence)
        except Exception:  # a failed recording must not kill the collector
            log.exception("trustai: delivering an audit's evidence failed")

    def _complete(self, batch: _Batch) -> None:
        with self._lock:
            if batch not in self._batches:
                return
            self._batches.remove(batch)
        if batch.on_done is not None:
            try:
                batch.on_done()
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
                            self._deliver(batch, job, ray.get(ref), None)
                        except Exception as exc:  # worker death after retries, cancellation
                            failure = (
                                f"audit worker failed after {self.max_retries} retries: {type(exc).__name__}"
                            )
                            self._deliver(batch, job, None, failure)
                    elif now > deadline:
                        ray.cancel(ref, force=True)
                        timed_out = f"timed out after {job.check.timeout_s:g} s (cancelled)"
                        self._deliver(batch, job, None, timed_out)
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
        then are cancelled and delivered as ``error`` Evidence. True if everything finished in time."""
        if self._wait_all(timeout_s):
            return True
        with self._lock:
            for batch in self._batches:
                for ref, (job, _) in batch.pending.items():
                    batch.pending[ref] = (job, 0.0)  # the collector cancels and delivers them
                while batch.queued:
                    self._deliver(batch, batch.queued.popleft(), None, "not started before the wait ran out")
        self._wait_all(30.0)
        return False

    def shutdown(self) -> None:
        """Stop the collector thread, and Ray when this executor started it (a Ray someone else
        started, e.g. Ray Train's or a test's, is left running)."""
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False
