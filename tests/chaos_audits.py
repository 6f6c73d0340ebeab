"""Fault-injection audits for the test suite: prove that trustai survives audits that raise, hang,
exhaust memory or kill their worker. Each becomes an ``error`` finding; training goes on.

Registered as an audit plugin (``TRUSTAI_AUDIT_PLUGINS=tests.chaos_audits``, set by conftest), the way
any team adds audits of its own, so subprocesses and Ray workers of a test find them too."""

import os
import time

from pydantic import BaseModel, ConfigDict, Field

from trustai.core.audit import Audit, AuditContext, Measurement, register
from trustai.core.evidence import Stage


class ChaosParams(BaseModel):
    """``seconds`` to hang; ``gigabytes`` to allocate; ``attempts_file``: each attempt appends a line
    there, so a test can count retries."""

    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(default=3600.0, ge=0)
    gigabytes: float = Field(default=1024.0, ge=0)
    attempts_file: str | None = None


def _count_attempt(params: ChaosParams) -> None:
    if params.attempts_file:
        with open(params.attempts_file, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")


def _in_worker() -> bool:
    """True in an isolated audit worker: a Ray worker, or a process-runtime worker (a multiprocessing
    child)."""
    import multiprocessing

    import ray

    if multiprocessing.parent_process() is not None:
        return True
    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE


@register
class Raise(Audit):
    """Raises RuntimeError."""

    name = "chaos.raise"
    stages = frozenset(Stage)
    Params = ChaosParams

    def measure(self, ctx: AuditContext, params: ChaosParams) -> Measurement:
        _count_attempt(params)
        raise RuntimeError("chaos.raise: planted failure")


@register
class Hang(Audit):
    """Sleeps ``seconds`` (past its time limit), then returns nothing."""

    name = "chaos.hang"
    stages = frozenset(Stage)
    Params = ChaosParams

    def measure(self, ctx: AuditContext, params: ChaosParams) -> Measurement:
        _count_attempt(params)
        time.sleep(params.seconds)
        return Measurement()


@register
class ExhaustMemory(Audit):
    """Tries to allocate ``gigabytes`` at once; the allocation fails with MemoryError."""

    name = "chaos.exhaust_memory"
    stages = frozenset(Stage)
    Params = ChaosParams

    def measure(self, ctx: AuditContext, params: ChaosParams) -> Measurement:
        import numpy as np

        _count_attempt(params)
        np.ones(int(params.gigabytes * (1 << 30)), dtype=np.uint8)
        return Measurement()


@register
class CrashWorker(Audit):
    """Kills the process it runs in (only in an isolated audit worker; refuses to run inline)."""

    name = "chaos.crash_worker"
    stages = frozenset(Stage)
    Params = ChaosParams

    def measure(self, ctx: AuditContext, params: ChaosParams) -> Measurement:
        _count_attempt(params)
        if not _in_worker():
            raise RuntimeError("chaos.crash_worker only kills isolated audit workers, not this process")
        os._exit(137)
