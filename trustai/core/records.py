"""The kinds of ledger record and the payload each kind carries.

Every record a run writes has a ``RecordKind`` and a payload model here; ``Ledger.append`` validates a
payload against its kind's model and stores the model's canonical JSON. The stored JSON is what the
writers stored before these models existed, byte for byte, so old ledgers read and verify unchanged.
Readers go through ``trustai.core.run_record``.
"""

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from trustai.core.evidence import Evidence, Finding, Model, Stage


class RecordKind(StrEnum):
    """What a ledger record says happened."""

    RUN_START = "run.start"  # a run (or a resumed run) started: its policy pack and manifest
    STAGE = "stage"  # a lifecycle stage was raised; its evidence and findings follow
    EVIDENCE = "evidence"  # what one audit measured
    FINDING = "finding"  # what the policy pack concluded from one evidence record
    CARD = "card"  # a checkpoint's model card was written (and signed)
    PRIVACY_STOP = "privacy.stop"  # DP training stopped before exceeding its privacy budget
    HOOK_ERROR = "hook.error"  # a training hook failed; training went on
    RUN_END = "run.end"  # training ended
    ANCHOR = "anchor"  # a signature over the record before it, and so over the whole chain up to it


class Payload(BaseModel):
    """Base of the payload models written here: strict fields; the fields named in ``omit_when_none``
    are left out of the stored JSON when unset, as their writers always did."""

    # Non-finite floats inside open-ended values are kept as such; canonical JSON writes them as text.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")
    omit_when_none: ClassVar[frozenset[str]] = frozenset()

    def canonical(self) -> dict[str, Any]:
        """Return the JSON-mode dict that is hashed and stored."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if not (k in self.omit_when_none and v is None)}


class PackRecord(Payload):
    """The policy pack a run started under, with every check it fixed beforehand."""

    name: str
    version: int
    digest: str  # sha256 of the pack's canonical JSON
    source: str  # the file or built-in name it was loaded from
    checks: list[dict[str, Any]]


class PackDigest(Payload):
    """The pack a stage outside training (``trustai audit``) was judged by."""

    name: str
    digest: str


class RunStart(Payload):
    """``run.start``: the pack that governs the run and its provenance manifest (open-ended: git,
    environment, seed, train config, dataset, resume, ...). ``run_id`` (a uuid4) is created by the
    first start and repeated by every resumed start; ledgers written before run ids have none."""

    omit_when_none = frozenset({"run_id"})
    policy_pack: PackRecord
    manifest: dict[str, Any]
    run_id: str | None = None


class StageEvent(Payload):
    """``stage``: a stage was raised at a training step; ``trigger`` (with the pack's digest) names what
    raised it outside training."""

    omit_when_none = frozenset({"trigger", "policy_pack"})
    stage: Stage
    step: int | None
    trigger: str | None = None
    policy_pack: PackDigest | None = None


class RecordRef(Payload):
    """A citation of a ledger record (``Record.cite()``)."""

    seq: int
    hash: str
    kind: str


class FindingRecord(Finding):
    """``finding``: the Finding and the evidence record it judges."""

    evidence_record: RecordRef


class CardRecord(Payload):
    """``card``: a checkpoint's card was written; recorded after the card and its signature, so this
    record is the seal's commit point."""

    omit_when_none = frozenset({"checkpoint_digest"})
    checkpoint: str  # the model folder, relative to the run folder when inside it
    step: int | None
    release: bool
    card_digest: str
    signed: bool
    checkpoint_digest: str | None = None  # weights digest (trustai.core.manifest.weights_digest)


class PrivacyStop(Payload):
    """``privacy.stop``: DP training stopped at ``step`` (of ``steps_planned``) because the next step
    would exceed the privacy budget; ``checkpoint`` holds the final weights."""

    step: int
    steps_planned: int
    epsilon: float
    target_epsilon: float
    delta: float
    checkpoint: str


class HookError(Payload):
    """``hook.error``: a governance hook raised; training continued without it."""

    hook: str
    error: str  # repr of the exception


class RunEnd(Payload):
    """``run.end``: training ended. ``release_checkpoint`` is always stated; the rest is what the
    trainer knows (LeRobot: steps, ranks, timings; Ray Train: the trainer's name)."""

    omit_when_none = frozenset(
        {
            "steps",
            "ranks",
            "audits_finished_in_time",
            "setup_s",
            "loop_blocked_s",
            "release_wait_s",
            "trainer",
        }
    )
    release_checkpoint: str | None
    steps: int | None = None
    ranks: int | None = None
    audits_finished_in_time: bool | None = None
    setup_s: float | None = None  # before the loop: data stage and manifest
    loop_blocked_s: float | None = None  # inside the loop: what the steps waited on trustai
    release_wait_s: float | None = None  # the release stage and waiting for audits
    trainer: str | None = None


class AnchorRecord(Payload):
    """``anchor``: the run's signer vouches for the chain up to record ``seq`` (whose hash is ``hash``),
    and so for every record before it. ``signature`` is ECDSA (SHA-256, DER, base64) over the canonical
    JSON of every other field, by the key whose public-key fingerprint is ``key``; each anchor verifies
    on its own (trustai.attest.anchor)."""

    format: str  # trustai.attest.anchor.ANCHOR_FORMAT
    run_id: str
    seq: int  # the record covered: the one just before this anchor
    hash: str
    reason: str  # what was sealed: a card, the run's end, the end of a command's session
    key: str  # sha256 of the signer's PEM SubjectPublicKeyInfo (trustai.attest.keys.public_key_fingerprint)
    signature: str


PAYLOADS: dict[RecordKind, type[Model | Payload]] = {
    RecordKind.RUN_START: RunStart,
    RecordKind.STAGE: StageEvent,
    RecordKind.EVIDENCE: Evidence,
    RecordKind.FINDING: FindingRecord,
    RecordKind.CARD: CardRecord,
    RecordKind.PRIVACY_STOP: PrivacyStop,
    RecordKind.HOOK_ERROR: HookError,
    RecordKind.RUN_END: RunEnd,
    RecordKind.ANCHOR: AnchorRecord,
}


def payload_json(kind: RecordKind, payload: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """The JSON a record of ``kind`` stores for ``payload``: the kind's model as given, or a dict
    validated against it. Raises ValueError for an unknown kind, TypeError for another model, and
    pydantic's ValidationError for a dict that does not fit."""
    model = PAYLOADS[RecordKind(kind)]
    if isinstance(payload, BaseModel) and not isinstance(payload, model):
        raise TypeError(f"a {kind} record takes a {model.__name__}, not a {type(payload).__name__}")
    validated = payload if isinstance(payload, model) else model.model_validate(payload)
    return validated.canonical()
