"""The promotion gate: one verdict (pass, warn or blocked) over a set of findings. Every command that
states a gate asks here; judging (``trustai.packs.judging``) decides each finding, this decides what
they add up to.

The rule: ``blocked`` when the latest finding of any ``block`` check failed, errored or was
inconclusive; else ``warn`` when the latest finding of a ``warn`` check did not pass; else ``pass``.
``info`` checks never move the gate.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from trustai.core.evidence import Severity, Status

# A block check that could not decide must not pass the gate. Judging gives an inconclusive finding the
# severity its pack says (``Check.inconclusive``), so a pack that lets one through makes it non-blocking.
BLOCKING_STATUSES = frozenset({Status.FAIL.value, Status.ERROR.value, Status.INCONCLUSIVE.value})
GATING_SEVERITIES = (Severity.BLOCK.value, Severity.WARN.value)


class Verdict(StrEnum):
    """What a gate says about promoting a model."""

    PASS = "pass"
    WARN = "warn"
    BLOCKED = "blocked"


class Judged(Protocol):
    """A judged check as the gate reads it: a Finding, or a finding read back from a ledger."""

    @property
    def check_id(self) -> str: ...

    @property
    def severity(self) -> str: ...

    @property
    def status(self) -> str: ...


class GateCheck(Protocol):
    """A pack check as the gate reads it (``trustai.packs.Check``)."""

    @property
    def id(self) -> str: ...

    @property
    def severity(self) -> str: ...


@dataclass(frozen=True)
class Gate:
    """The verdict, the checks that blocked it and those that warned (in the order they were judged),
    and the latest status of each gating check asked about (None: no finding)."""

    verdict: Verdict
    blocking: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    statuses: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        """True when promotion is blocked."""
        return self.verdict == Verdict.BLOCKED

    def as_json(self) -> dict[str, object]:
        """The gate as a JSON object: ``verdict``, ``blocking`` and ``warnings`` (check ids)."""
        return {
            "verdict": self.verdict.value,
            "blocking": list(self.blocking),
            "warnings": list(self.warnings),
        }


def blocks(finding: Judged) -> bool:
    """True when ``finding`` alone blocks promotion: a ``block`` check that failed, errored or was
    inconclusive."""
    return str(finding.severity) == Severity.BLOCK.value and str(finding.status) in BLOCKING_STATUSES


def gate(findings: Iterable[Judged], checks: Iterable[GateCheck] = ()) -> Gate:
    """The gate over ``findings``, given in the order they were judged: a later finding of a check
    replaces an earlier one (a re-audit supersedes the audit before it). ``checks`` (a pack's) name the
    block and warn checks whose latest status ``Gate.statuses`` reports, None for a check without a
    finding; a missing finding does not move the verdict."""
    latest = {f.check_id: f for f in findings}
    blocking = tuple(c for c, f in latest.items() if blocks(f))
    warnings = tuple(
        c
        for c, f in latest.items()
        if str(f.severity) in GATING_SEVERITIES and str(f.status) != Status.PASS.value and c not in blocking
    )
    statuses = {
        c.id: (str(latest[c.id].status) if c.id in latest else None)
        for c in checks
        if str(c.severity) in GATING_SEVERITIES
    }
    verdict = Verdict.BLOCKED if blocking else Verdict.WARN if warnings else Verdict.PASS
    return Gate(verdict, blocking, warnings, statuses)
