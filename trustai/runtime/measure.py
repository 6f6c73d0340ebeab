"""Runs one check's audit under a time limit and always returns Evidence.

An audit that raises, returns garbage or outlives its limit yields Evidence with ``error`` set (the
policy turns it into an ``error`` finding); nothing propagates to the caller, so a training run never
crashes because of governance. The inline runtime uses a daemon thread: a hung audit is abandoned,
not killed (use the process or Ray runtimes for audits that may hang while holding resources).
"""

import threading
import time
import traceback
from pathlib import Path

from trustai.core.audit import AuditContext, Measurement, get_audit
from trustai.core.evidence import Artifact, Evidence, utc_now
from trustai.packs import Check


def _clean_metrics(metrics: dict) -> dict:
    """Coerce numpy/torch scalars (anything with ``.item()``) to plain Python numbers."""
    return {str(k): v.item() if hasattr(v, "item") else v for k, v in metrics.items()}


def measure_with_limit(check: Check, ctx: AuditContext, evidence_root: Path) -> Evidence:
    """Run ``check`` on ``ctx`` with its ``timeout_s`` and return Evidence (``error`` on any failure).

    Artifact paths in the Evidence are relative to ``evidence_root``.
    """
    started, t0 = utc_now(), time.perf_counter()
    outcome: dict[str, object] = {}
    base = dict(
        audit=check.audit, stage=check.stage, check_id=check.id, inputs=ctx.inputs, started_at=started
    )

    def work() -> None:
        try:
            audit_cls = get_audit(check.audit)
            params = audit_cls.Params.model_validate(check.params)
            outcome["version"] = audit_cls.version
            outcome["params"] = params.model_dump(mode="json")
            ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
            outcome["result"] = audit_cls().measure(ctx, params)
        except BaseException as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"
            outcome["trace"] = traceback.format_exc(limit=8)

    worker = threading.Thread(target=work, name=f"trustai-audit-{check.id}", daemon=True)
    worker.start()
    worker.join(check.timeout_s)
    duration = time.perf_counter() - t0
    version = str(outcome.get("version", "unknown"))
    params = outcome.get("params", check.params)
    if worker.is_alive():
        error = f"timed out after {check.timeout_s:g} s"
    elif "error" in outcome:
        error = str(outcome["error"])
    elif not isinstance(outcome.get("result"), Measurement):
        error = f"audit returned {type(outcome.get('result')).__name__}, not a Measurement"
    else:
        result: Measurement = outcome["result"]  # type: ignore[assignment]
        try:
            metrics = _clean_metrics(result.metrics)
            artifacts = [Artifact.from_file(Path(p), evidence_root) for p in result.artifacts]
            return Evidence(
                **base,
                audit_version=version,
                params=params,
                metrics=metrics,
                tables=result.tables,
                artifacts=artifacts,
                duration_s=duration,
                inconclusive=result.inconclusive,
                inconclusive_metrics=result.inconclusive_metrics,
                exceeds=result.exceeds or None,
            )
        except (ValueError, TypeError, OSError) as exc:
            error = f"audit produced unusable output: {exc}"
    return Evidence(
        **base,
        audit_version=version,
        params=params if isinstance(params, dict) else {},
        duration_s=duration,
        error=error,
    )
