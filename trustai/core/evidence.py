"""The evidence model: lifecycle stages, what an audit measured (Evidence), and what a policy
concluded from it (Finding). Every object has a canonical JSON form that the ledger hashes."""

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from trustai.core.canonical import digest, file_sha256


class Stage(StrEnum):
    """Lifecycle stages at which checks run (data -> train -> checkpoint -> release -> monitor)."""

    DATA = "data"
    TRAIN = "train"
    CHECKPOINT = "checkpoint"
    RELEASE = "release"
    MONITOR = "monitor"


class Severity(StrEnum):
    """How much a violated check matters: ``block`` gates promotion, ``warn`` and ``info`` do not."""

    BLOCK = "block"
    WARN = "warn"
    INFO = "info"


class Status(StrEnum):
    """Outcome of one check: thresholds held (pass), were violated (warn/fail), the audit ran but could
    not measure what the thresholds are about (inconclusive), or the audit broke (error)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    INCONCLUSIVE = "inconclusive"


def utc_now() -> str:
    """Return the current UTC time as an ISO-8601 string with a Z suffix."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Model(BaseModel):
    """Base for trustai records: strict fields, canonical JSON digest. The fields named in
    ``omit_when_none`` are left out of the canonical JSON when unset, so adding one keeps the stored
    JSON (and digest) of every record that does not use it byte for byte."""

    model_config = ConfigDict(extra="forbid")
    omit_when_none: ClassVar[frozenset[str]] = frozenset()

    def canonical(self) -> dict[str, Any]:
        """Return the JSON-mode dict that is hashed and stored."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if not (k in self.omit_when_none and v is None)}

    def digest(self) -> str:
        """Return the sha256 of this record's canonical JSON."""
        return digest(self.canonical())


class Artifact(Model):
    """A file an audit produced (PNG, HTML, JSON), stored relative to the evidence folder."""

    path: str
    sha256: str
    media_type: str

    @classmethod
    def from_file(cls, path: Path, root: Path, media_type: str | None = None) -> "Artifact":
        """Describe ``path`` (inside ``root``) with its sha256 and a media type guessed from its suffix."""
        guessed = {".png": "image/png", ".html": "text/html", ".json": "application/json"}
        return cls(
            path=path.relative_to(root).as_posix(),
            sha256=file_sha256(path),
            media_type=media_type or guessed.get(path.suffix, "application/octet-stream"),
        )


class InputProvenance(Model):
    """Provenance of what an audit looked at."""

    checkpoint: str | None = None  # folder path of the checkpoint audited
    checkpoint_digest: str | None = None  # sha256 over the weight files
    dataset: str | None = None  # dataset repo_id or root
    dataset_fingerprint: str | None = None
    step: int | None = None  # training step the evidence belongs to


class Evidence(Model):
    """What one audit measured at one stage: metrics, tables, artifacts, params, timing, inputs.

    Evidence never says pass or fail; a policy pack turns it into Findings. The last three fields are
    what the audit could not measure (``trustai.core.audit.Measurement``), left out of the stored JSON
    when unset: ``inconclusive`` its reason, ``inconclusive_metrics`` the metrics the reason is about
    (None: all of them), ``exceeds`` metrics known only to be greater than a value (None in ``metrics``).
    """

    omit_when_none = frozenset({"inconclusive", "inconclusive_metrics", "exceeds"})

    audit: str
    audit_version: str
    stage: Stage
    check_id: str
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float | int | bool | None] = Field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    inputs: InputProvenance = Field(default_factory=InputProvenance)
    started_at: str = Field(default_factory=utc_now)
    duration_s: float = 0.0
    error: str | None = None  # set when the audit raised or timed out; metrics are then empty
    inconclusive: str | None = None
    inconclusive_metrics: list[str] | None = None
    exceeds: dict[str, float] | None = None


class ThresholdResult(Model):
    """One threshold compared against one metric."""

    metric: str
    op: str  # "min" or "max"
    limit: float
    value: float | int | bool | None
    held: bool


class Finding(Model):
    """A policy pack's judgement of one Evidence record."""

    check_id: str
    audit: str
    stage: Stage
    status: Status
    severity: Severity
    message: str
    thresholds: list[ThresholdResult] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    evidence_digest: str
