"""Ledger anchors: a signature over the ledger's head, and so over every record before it.

The hash chain alone holds only against accidents: whoever can write the ledger file can edit a record
and recompute every hash after it. An ``anchor`` record (trustai.core.records.AnchorRecord) closes
that: the run's signer signs ``{format, run_id, seq, hash, reason, key}`` of the record just before the
anchor with ECDSA (SHA-256) using the run's signing key, the same PEM key files as the model
signatures. Since a record's hash covers the hash before it, one valid anchor vouches for the whole
chain up to the record it covers. Governance appends one whenever it seals something (each card, the
run's end, the end of every command that wrote to the ledger), so once a stage is over no record is
left that a signature does not cover.

Each anchor names its signer's key fingerprint and verifies on its own, without the anchors around it:
several signers (a central ledger service, more than one auditor) can anchor one ledger, and a
verifier that trusts several keys checks each anchor against the key it names.
"""

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from trustai.attest.keys import key_fingerprint, load_public_key
from trustai.core.canonical import canonical_json
from trustai.core.ledger import Record
from trustai.core.records import AnchorRecord, RecordKind
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError

ANCHOR_FORMAT = "trustai.attest.anchor/v1"
_ECDSA = ec.ECDSA(hashes.SHA256())


def signed_message(anchor: AnchorRecord) -> bytes:
    """The bytes an anchor's signature covers: the canonical JSON of every field but the signature."""
    return canonical_json(anchor.model_dump(mode="json", exclude={"signature"}))


class AnchorSigner:
    """Signs anchors with one private key file (loaded once; its material is never printed)."""

    def __init__(self, private_key: Path):
        """Load the PEM EC private key at ``private_key``; TrustaiUserError when it is not one."""
        fix = "pass the run's private signing key (signing-key.pem)"
        try:
            key = serialization.load_pem_private_key(Path(private_key).read_bytes(), password=None)
        except OSError as err:
            raise TrustaiUserError(
                f"cannot read the signing key ({err.strerror or err})", str(private_key), fix
            ) from None
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None  # no detail: never echo anything derived from key material
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TrustaiUserError("not an unencrypted PEM ECDSA private key", str(private_key), fix)
        self._key = key
        self.fingerprint = key_fingerprint(key.public_key())

    def anchor(self, run_id: str, covered: Record, reason: str) -> AnchorRecord:
        """The signed anchor over ``covered`` (the ledger's head) of run ``run_id``."""
        unsigned = AnchorRecord(
            format=ANCHOR_FORMAT,
            run_id=run_id,
            seq=covered.seq,
            hash=covered.hash,
            reason=reason,
            key=self.fingerprint,
            signature="",
        )
        signature = self._key.sign(signed_message(unsigned), _ECDSA)
        return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode("ascii")})


@dataclass
class AnchorCheck:
    """What the anchors of one ledger say.

    ``inconsistent``: anchors that contradict the records they cover (malformed, another run, a
    covered record missing or with another hash: the chain was rewritten or cut); these need no key.
    ``unanchored``: records no anchor covers (a tail after the last anchor, or no anchor at all).
    ``signatures``: anchors that do not verify with the public key; empty when no key was given.
    ``covered``: the seq of the last record a verified anchor covers (0 when none).
    """

    anchors: int = 0
    keyed: bool = False
    covered: int = 0
    signer: str | None = None  # the fingerprint of the last verified anchor's key
    inconsistent: list[str] = field(default_factory=list)
    unanchored: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything that fails when the ledger is checked with a key (only ``inconsistent`` without)."""
        return self.inconsistent + (self.unanchored + self.signatures if self.keyed else [])


def _name(record: Record) -> str:
    return f"record {record.seq} ({RecordKind.ANCHOR.value})"


def _structure_problem(run: RunLedger, record: Record, by_seq: dict[int, Record]) -> str | None:
    """Why an anchor contradicts the ledger it sits in, or None when it agrees with it."""
    try:
        anchor = AnchorRecord.model_validate(record.payload)
    except ValidationError:
        return f"{_name(record)}: not a well-formed anchor (edited)"
    if anchor.format != ANCHOR_FORMAT:
        return f"{_name(record)}: unknown anchor format {anchor.format!r}"
    if run.run_id is not None and anchor.run_id != run.run_id:
        return f"{_name(record)}: anchors run {anchor.run_id}, this ledger is run {run.run_id} (copied in)"
    if not 0 < anchor.seq < record.seq:
        return f"{_name(record)}: covers record {anchor.seq}, which is not before it (edited)"
    covered = by_seq.get(anchor.seq)
    if covered is None:
        return f"{_name(record)}: covers record {anchor.seq}, which the ledger lacks (records removed)"
    if covered.hash != anchor.hash:
        return (
            f"{_name(record)}: signed record {anchor.seq} with hash {anchor.hash[:12]}, the ledger's "
            f"record {anchor.seq} has hash {covered.hash[:12]}: the chain was rewritten"
        )
    return None


def _signature_problem(record: Record, key: ec.EllipticCurvePublicKey, fingerprint: str) -> str | None:
    """Why a well-formed anchor does not verify with ``key``, or None when it does."""
    anchor = AnchorRecord.model_validate(record.payload)
    if anchor.key != fingerprint:
        return (
            f"{_name(record)}: signed by key {anchor.key[:16]}…, not by the given public key "
            f"{fingerprint[:16]}…"
        )
    try:
        key.verify(base64.b64decode(anchor.signature, validate=True), signed_message(anchor), _ECDSA)
    except (InvalidSignature, binascii.Error, ValueError):
        return f"{_name(record)}: its signature does not verify with the given public key (forged or edited)"
    return None


def _kinds(records: list[Record]) -> str:
    kinds = list(dict.fromkeys(str(r.kind) for r in records))  # a damaged record may hold no text
    return ", ".join(kinds[:4]) + (", ..." if len(kinds) > 4 else "")


def check_anchors(run: RunLedger, public_key: Path | None) -> AnchorCheck:
    """Check every anchor of ``run`` against the records it covers and, with ``public_key``, its
    signature; say which records no anchor covers. TrustaiUserError when ``public_key`` is given but
    holds no EC public key."""
    return check_anchors_with(run, load_public_key(public_key) if public_key is not None else None)


def check_anchors_with(run: RunLedger, key: ec.EllipticCurvePublicKey | None) -> AnchorCheck:
    """``check_anchors`` with the public key already loaded (None: signatures not checked)."""
    loaded = (key, key_fingerprint(key)) if key is not None else None
    check = AnchorCheck(anchors=len(run.anchors), keyed=loaded is not None)
    by_seq = {r.seq: r for r in run.records}
    for record in run.anchors:
        problem = _structure_problem(run, record, by_seq)
        if problem is not None:
            check.inconsistent.append(problem)
            continue
        if loaded is None:
            continue
        problem = _signature_problem(record, *loaded)
        if problem is not None:
            check.signatures.append(problem)
        elif not check.inconsistent and not check.signatures:
            check.covered, check.signer = record.seq, loaded[1]
    if not run.records:
        return check
    if not run.anchors:
        check.unanchored.append(
            f"unanchored: none of the ledger's {len(run.records)} records is covered by a signed anchor "
            "(written without a signing key, or by a trustai before anchors): nothing here holds against "
            "someone who can write the run folder"
        )
        return check
    tail = run.unanchored_tail
    if tail:
        which = f"records {tail[0].seq}-{tail[-1].seq}" if len(tail) > 1 else f"record {tail[0].seq}"
        check.unanchored.append(
            f"unanchored tail: {which} ({_kinds(tail)}) after the last signed anchor (record "
            f"{run.anchors[-1].seq}), covered by no signature: appended or edited after sealing, or a "
            "stage that never finished"
        )
    elif run.anchors[-1].payload.get("seq") != run.anchors[-1].seq - 1:
        check.unanchored.append(
            f"{_name(run.anchors[-1])}: the last record, but it does not cover the record just before it"
        )
    return check
