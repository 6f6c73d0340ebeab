"""The policy pack schema: a named, versioned list of checks, each an audit at a stage with params,
thresholds, a severity and the regulatory items it serves."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from trustai.core.evidence import Severity, Stage

MAX_WAIT_S = 7 * 24 * 3600.0  # a week bounds any sane wait; threads cannot wait on inf or 1e300 s

CheckId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class Threshold(BaseModel):
    """Bounds on one metric; both are inclusive. At least one must be set."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_bound(self) -> "Threshold":
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs 'min' or 'max'")
        return self


class Check(BaseModel):
    """One check of a pack: an audit at a stage, with params, thresholds, severity and references."""

    model_config = ConfigDict(extra="forbid")
    id: CheckId
    audit: str
    stage: Stage
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    severity: Severity = Severity.WARN
    references: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=300.0, gt=0, le=MAX_WAIT_S)
    inconclusive: Severity | None = Field(
        default=None,
        description="how much it matters when the audit could not measure (an inconclusive finding): "
        "block (stops promotion), warn or info (recorded, never gates); default: the check's severity, "
        "so an unmeasured block check blocks",
    )


class PolicyPack(BaseModel):
    """A named, versioned set of checks."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = 1
    description: str = ""
    checks: list[Check] = Field(default_factory=list)
    # The longest the end of training waits for audits.
    release_wait_s: float = Field(default=3600.0, gt=0, le=MAX_WAIT_S)
    source: str = Field(default="", exclude=True)

    def checks_for(self, stage: Stage) -> list[Check]:
        """Return the checks that run at ``stage``, in pack order."""
        return [c for c in self.checks if c.stage == stage]
