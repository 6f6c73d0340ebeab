"""Audit jobs in a small pool of worker processes on this machine, off the training path: the
default runtime of ``trustai train``.

``ProcessExecutor.start`` launches the workers (``spawn``: fresh interpreters, nothing inherited from
the trainer's threads) and returns without waiting for them to import anything. ``submit`` queues jobs
and returns at once; a dispatcher thread hands each job to an idle worker and delivers its Evidence as
it lands, then calls the batch's ``on_done`` (e.g. sealing the card). Workers run at a lower CPU
priority (``nice``) with few threads each, so audits use the cycles training leaves idle.

Failures become ``error`` Evidence, never exceptions: an audit that raises or outlives its check's
``timeout_s`` is caught by ``measure_with_limit`` in the worker (a worker whose audit timed out exits,
taking the abandoned audit thread with it); a worker that dies (killed, out of memory) or stops
answering ``GRACE_S`` past the limit is replaced, and its job is an ``error``. Jobs are not retried.

Workers write artifacts straight into the run folder (same machine) and find the same audits as this
process: the ``TRUSTAI_AUDIT_PLUGINS`` modules, and the module that registered each job's audit,
imported in the worker before the job runs.
"""

import contextlib
import dataclasses
import importlib
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from trustai.core.audit import get_audit
from trustai.core.evidence import Evidence
from trustai.errors import TrustaiUserError
from trustai.runtime.executor import AuditJob, Deliver, error_evidence
from trustai.runtime.measure import measure_with_limit

log = logging.getLogger("trustai")

GRACE_S = 10.0  # past a job's own time limit before its worker is killed (the worker's limit fires first)
START_ATTEMPTS = 3  # workers in a row that die before they are ready: then queued jobs fail instead
READY = "ready"
_CONTEXT = multiprocessing.get_context("spawn")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """A quarter of this process's cores, at least one and at most four: the trainer keeps the rest."""
    return max(1, min(4, _cores() // 4))


def serve(conn: Connection, root: str, nice: int, threads: int) -> None:
    """A worker's life: say ``READY`` once imports are done, then take ``(job, module)`` messages from
    ``conn``, run each job under its time limit with artifacts under ``root`` and send back
    ``(evidence JSON, retiring)``; stop on ``None``, a closed pipe, or after a job that timed out."""
    with contextlib.suppress(OSError):  # not permitted: run at the trainer's priority
        os.nice(nice)
    import torch

    torch.set_num_threads(threads)
    evidence_root = Path(root)
    conn.send(READY)  # a job's time limit counts from here, not from the interpreter's start
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        job, module = message
        if module and module != "__main__":  # the parent's script is not run here: _main_script_hidden
            try:
                importlib.import_module(module)
            except Exception:  # the audit is then unknown here: measure_with_limit says so
                log.exception("trustai: could not import audit module %s in a worker", module)
        evidence = measure_with_limit(job.check, job.context(evidence_root), evidence_root)
        # A timed-out audit's thread may still be running: the process ends, and says so with the result.
        retiring = evidence.error is not None and evidence.error.startswith("timed out")
        conn.send((evidence.canonical(), retiring))
        if retiring:
            return


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While a worker is spawned, hide the parent's main script from multiprocessing, which would
    otherwise run it again in the worker (as ``__mp_main__``): a training script without an
    ``if __name__ == "__main__"`` guard would start training inside the audit worker. Workers find
    audits through their registered modules, never through the parent's script."""
    main = vars(sys.modules["__main__"])
    saved = {name: main[name] for name in ("__file__", "__spec__") if name in main}
    main.pop("__file__", None)
    main["__spec__"] = None
    try:
        yield
    finally:
        main.update(saved)


def _audit_module(name: str) -> str | None:
    try:
        return get_audit(name).__module__
    except TrustaiUserError:
        return None


@dataclass
class _Batch:
    queued: deque[AuditJob]
    deliver: Deliver
    on_done: Callable[[], None] | None
    running: int = 0


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    job: tuple[_Batch, AuditJob, float] | None = None  # running: batch, job, deadline
    ready: bool = False  # imports done, waiting for jobs
    retiring: bool = False  # exits after its last job: gets no more


class ProcessExecutor:
    """The Executor that runs jobs in a pool of local worker processes and delivers their Evidence from
    a dispatcher thread."""

    def __init__(self, root: Path, *, workers: int | None = None, nice: int = 10, threads: int | None = None):
        """Artifacts go to ``root/artifacts/<job.artifact_name>``. ``workers`` processes (default:
        ``default_workers()``) at ``nice`` priority, each with ``threads`` torch threads (default: its
        share of the cores the pool may use)."""
        self.root = Path(root)
        self.workers = workers or default_workers()
        self.nice = nice
        self.threads = threads or max(1, _cores() // (4 * self.workers))
        self._pool: list[_Worker | None] = []
        self._batches: list[_Batch] = []
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._cancel = False
        self._stop = False
        self._failed_starts = 0

    # -- Executor protocol ---------------------------------------------------------------------------
    def start(self) -> None:
        """Launch the workers and the dispatcher thread; idempotent, returns without waiting for the
        workers' imports."""
        with self._lock:
            if self._thread is not None:
                return
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            self._pool = [self._spawn() for _ in range(self.workers)]
            self._thread = threading.Thread(target=self._dispatch, name="trustai-audit-dispatch", daemon=True)
            self._thread.start()

    def submit(
        self, jobs: Sequence[AuditJob], deliver: Deliver, on_done: Callable[[], None] | None = None
    ) -> None:
        """Queue ``jobs`` and return at once; ``deliver(job, evidence)`` runs on the dispatcher thread as
        each result lands, ``on_done()`` once all of them have."""
        self.start()
        # A loaded policy stays in this process: a worker loads the checkpoint itself.
        batch = _Batch(deque(dataclasses.replace(j, policy=None) for j in jobs), deliver, on_done)
        with self._lock:
            self._batches.append(batch)
        self._wake()

    def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted batch has completed, at most ``timeout_s``; then jobs still running
        are stopped (their workers killed) and, like those not started, delivered as ``error`` Evidence.
        True if everything finished in time."""
        if self._wait_idle(timeout_s):
            return True
        with self._lock:
            self._cancel = True
        self._wake()
        self._wait_idle(30.0)
        with self._lock:
            self._cancel = False
        return False

    def shutdown(self) -> None:
        """Stop the dispatcher and the workers (those still busy are killed)."""
        with self._lock:
            self._stop = True
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._wake()
        thread.join(timeout=10)
        for worker in self._pool:
            if worker is not None:
                self._retire(worker, kill=worker.job is not None)
        self._pool = []
        if not thread.is_alive():  # else it still polls the wake pipe; the process exit closes it
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)

    # -- the dispatcher thread -----------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        ours, theirs = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=serve,
            args=(theirs, str(self.root), self.nice, self.threads),
            name="trustai-audit-worker",
            daemon=True,
        )
        with _main_script_hidden():
            process.start()
        theirs.close()
        return _Worker(process, ours)

    def _retire(self, worker: _Worker, *, kill: bool) -> None:
        try:
            if kill:
                worker.process.kill()
            else:
                worker.conn.send(None)
        except (OSError, ValueError):
            pass
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.conn.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # not started, or shut down
            os.write(self._wake_w, b"x")

    def _wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._batches and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(min(left, 1.0))
            return not self._batches

    def _next_job(self) -> tuple[_Batch, AuditJob] | None:
        with self._lock:
            for batch in self._batches:
                if batch.queued:
                    batch.running += 1
                    return batch, batch.queued.popleft()
        return None

    def _launch(self) -> None:
        """Hand queued jobs to ready idle workers; start workers in the slots of those that exited."""
        for slot, worker in enumerate(self._pool):
            if worker is not None and worker.process.is_alive():
                idle = worker.ready and not worker.retiring and worker.job is None
                if idle and (picked := self._next_job()) is not None:
                    self._hand(worker, *picked)
                continue
            with self._lock:
                wanted = any(b.queued for b in self._batches)
            if worker is not None:
                worker.conn.close()
                self._pool[slot] = None
            if wanted:
                self._pool[slot] = self._spawn()

    def _hand(self, worker: _Worker, batch: _Batch, job: AuditJob) -> None:
        try:
            worker.conn.send((job, _audit_module(job.check.audit)))
        except (OSError, ValueError) as exc:
            self._finish(batch, job, None, f"could not hand the job to an audit worker: {exc}")
            return
        worker.job = (batch, job, time.monotonic() + job.check.timeout_s + GRACE_S)

    def _finish(self, batch: _Batch, job: AuditJob, evidence: Evidence | None, error: str | None) -> None:
        """Deliver ``job``'s Evidence (or ``error``) and complete its batch when it was the last one."""
        if evidence is None:
            evidence = error_evidence(job, error or "no result")
        try:
            batch.deliver(job, evidence)
        except Exception:  # a failed recording must not kill the dispatcher
            log.exception("trustai: delivering an audit's evidence failed")
        with self._lock:
            batch.running -= 1
            done = not batch.queued and batch.running == 0
        if done:
            self._complete(batch)

    def _complete(self, batch: _Batch) -> None:
        if batch.on_done is not None:
            try:
                batch.on_done()
            except Exception:  # a failed card must not kill the dispatcher
                log.exception("trustai: completing an audit batch failed")
        with self._lock:
            self._batches.remove(batch)
            self._lock.notify_all()

    def _cancel_queued(self, reason: str) -> None:
        while (picked := self._next_job()) is not None:
            self._finish(*picked, None, reason)

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                stop, cancel = self._stop, self._cancel
                empty = [b for b in self._batches if not b.queued and b.running == 0]
            if stop:
                return
            for batch in empty:  # a batch submitted without jobs
                self._complete(batch)
            if cancel or self._failed_starts >= START_ATTEMPTS:
                self._cancel_queued(
                    "not started before the wait ran out"
                    if cancel
                    else f"{START_ATTEMPTS} audit workers in a row exited before they were ready"
                )
            self._launch()
            watched = [
                w for w in self._pool if w is not None and (w.job is not None or not w.ready or w.retiring)
            ]
            now = time.monotonic()
            timeout = min((max(0.0, w.job[2] - now) for w in watched if w.job), default=None)
            waitables: list = [self._wake_r]
            for worker in watched:
                waitables += [worker.conn, worker.process.sentinel]
            ready = wait(waitables, timeout=min(timeout, 1.0) if timeout is not None else None)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
            for worker in watched:
                self._check(worker, cancel)

    def _check(self, worker: _Worker, cancel: bool) -> None:
        """Take the worker's message (ready, or its job's Evidence); else, if it died or ran past its
        job's deadline, deliver the job as an ``error``."""
        try:
            message = worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message == READY:
            worker.ready, self._failed_starts = True, 0
            return
        if worker.job is None:
            if not worker.process.is_alive() and not worker.retiring:  # died while starting
                self._failed_starts += 1
            return
        batch, job, deadline = worker.job
        if message is not None:
            result, retiring = message
            evidence, error = Evidence.model_validate(result), None
            worker.retiring = retiring
        elif not worker.process.is_alive():
            evidence, error = None, f"audit worker died (exit code {worker.process.exitcode})"
        elif cancel or time.monotonic() > deadline:
            worker.process.kill()
            worker.process.join(timeout=5)
            evidence, error = (
                None,
                (
                    "not finished before the wait ran out (worker stopped)"
                    if cancel
                    else f"timed out after {job.check.timeout_s:g} s (worker killed)"
                ),
            )
        else:
            return
        worker.job = None
        self._finish(batch, job, evidence, error)
