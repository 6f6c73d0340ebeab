"""Judging: compare an audit's Evidence with a check's thresholds and return the Finding. Nothing else
in trustai decides pass or fail."""

from typing import Any

from trustai.core.evidence import Evidence, Finding, Severity, Status, ThresholdResult
from trustai.packs.schema import Check


def _judge_one(metric: str, op: str, limit: float, value: Any) -> ThresholdResult:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if isinstance(value, bool):
        number = int(value)
    held = number is not None and number == number and (number >= limit if op == "min" else number <= limit)
    return ThresholdResult(metric=metric, op=op, limit=limit, value=value, held=held)


def _bounded(metric: str, op: str, limit: float, bound: float) -> ThresholdResult | None:
    """A threshold on a metric known only to exceed ``bound``: held for a ``min`` at or below the bound,
    violated for a ``max`` at or below it; None when the bound cannot decide."""
    if limit > bound:
        return None
    return ThresholdResult(metric=metric, op=op, limit=limit, value=None, held=op == "min")


def judge(check: Check, evidence: Evidence) -> Finding:
    """Compare evidence with the check's thresholds and return the Finding.

    Audit error -> ``error``. Each threshold on a measured metric is held or violated (a missing or
    non-numeric metric counts as violated); one on a metric known only to exceed a bound
    (``evidence.exceeds``) is decided by the bound where it can be. Any violation -> ``fail`` for
    ``block`` checks and ``warn`` otherwise, unless the whole measurement was inconclusive. Then, when
    the whole measurement, or a metric a threshold is on, could not be measured, or a bound decided
    nothing -> ``inconclusive`` (never ``pass``), its severity the check's ``inconclusive`` setting
    (default: its severity), which is what the promotion gate reads. Else ``pass``.
    """
    base = dict(
        check_id=check.id,
        audit=check.audit,
        stage=check.stage,
        severity=check.severity,
        references=check.references,
        evidence_digest=evidence.digest(),
    )
    if evidence.error is not None:
        return Finding(**base, status=Status.ERROR, message=f"audit did not complete: {evidence.error}")
    whole = evidence.inconclusive is not None and evidence.inconclusive_metrics is None
    unmeasured = set(evidence.inconclusive_metrics or []) if evidence.inconclusive is not None else set()
    exceeds = evidence.exceeds or {}
    results, undecided = [], []
    for metric, threshold in check.thresholds.items():
        for op, limit in (("min", threshold.min), ("max", threshold.max)):
            if limit is None:
                continue
            if metric in unmeasured:
                undecided.append(f"{metric} ({evidence.inconclusive})")
                continue
            value = evidence.metrics.get(metric)
            result = (
                _bounded(metric, op, limit, exceeds[metric])
                if value is None and metric in exceeds
                else _judge_one(metric, op, limit, value)
            )
            if result is None:
                undecided.append(f"{metric} > {exceeds[metric]:g} (not measured further) vs {op} {limit:g}")
            else:
                results.append(result)
    broken = [r for r in results if not r.held]
    if broken and not whole:
        status = Status.FAIL if check.severity == Severity.BLOCK else Status.WARN
        shown = {m: f"> {b:g}" for m, b in exceeds.items() if evidence.metrics.get(m) is None}
        what = "; ".join(
            f"{r.metric}={shown.get(r.metric, r.value)} violates {r.op} {r.limit}" for r in broken
        )
        return Finding(**base, status=status, thresholds=results, message=what)
    if whole or undecided:
        reasons = [str(evidence.inconclusive)] if whole else list(dict.fromkeys(undecided))
        return Finding(
            **{**base, "severity": check.inconclusive or check.severity},
            status=Status.INCONCLUSIVE,
            thresholds=[] if whole else results,
            message="could not measure: " + "; ".join(reasons),
        )
    return Finding(
        **base,
        status=Status.PASS,
        thresholds=results,
        message=f"{len(results)} threshold(s) held" if results else "measured (no thresholds)",
    )
