"""Integrity of a run at rendering time: the ledger's hash chain, the run's evidence and artifact files
against their records, and every sealed checkpoint in scope (signature, card, cited records, evidence
copies) through ``trustai.verify``. A report states these verdicts on its first page."""

import json
from dataclasses import dataclass
from pathlib import Path

from trustai.reports.document import Verdict
from trustai.reports.model import RunEvidence

from trustai.canonical import digest, file_sha256
from trustai.errors import TrustaiUserError
from trustai.keys import default_key_paths
from trustai.ledger import Ledger

OK, FAILED, NOT_CHECKED = "ok", "failed", "not checked"
# Step names given by trustai.verify.verify_checkpoint: the signature step is "not checked" without a
# key, and its ledger step repeats the chain check made once here for the whole run.
_SIGNATURE_STEP = "signature and file digests"
_LEDGER_STEP = "ledger chain"


@dataclass(frozen=True)
class Integrity:
    """All verdicts, plus the two the first page states on their own."""

    verdicts: list[Verdict]
    ledger: Verdict  # the hash chain
    signatures: dict[str, Verdict]  # each sealed checkpoint in scope (run-relative name) -> signature
    signature: Verdict  # the subject checkpoint's signature
    key: str | None  # sha256 fingerprint (16 hex) of the public key used, None when none


def resolve_public_key(given: Path | None) -> Path | None:
    """Return the key to verify signatures with: ``given`` (which must exist), else trustai's default
    public key when present, else None (signatures are then reported as not checked)."""
    if given is not None:
        if not Path(given).is_file():
            raise TrustaiUserError(
                "public key not found", where=str(given), fix="pass the PEM public key the run was signed for"
            )
        return Path(given)
    default = default_key_paths()[1]
    return default if default.is_file() else None


def _verdict(name: str, problems: list[str]) -> Verdict:
    return Verdict(name, FAILED if problems else OK, tuple(problems))


def _json_matches(path: Path, payload_sha256: str) -> bool:
    """True when the JSON file's canonical form hashes to the ledger record's payload sha256."""
    try:
        return digest(json.loads(path.read_text(encoding="utf-8"))) == payload_sha256
    except (ValueError, UnicodeDecodeError):
        return False


def artifact_intact(trustai_dir: Path, artifact: dict) -> bool:
    """True when the artifact file an evidence record lists lies inside the run's trustai folder,
    exists and has the recorded sha256."""
    path = (trustai_dir / str(artifact.get("path", ""))).resolve()
    inside = path.is_relative_to(trustai_dir.resolve())
    return inside and path.is_file() and file_sha256(path) == artifact.get("sha256")


def _run_files(run: RunEvidence) -> list[Verdict]:
    """Check the run's evidence files and artifact files against their ledger records."""
    trustai_dir = run.ledger_path.parent
    evidence_problems, artifact_problems, artifacts = [], [], 0
    for item in run.items:
        rel = f"trustai/evidence/{item.record.seq:06d}-{item.check_id}.json"
        if not (run.run_dir / rel).is_file():
            evidence_problems.append(f"{rel}: missing")
        elif not _json_matches(run.run_dir / rel, item.record.payload_sha256):
            evidence_problems.append(f"{rel}: differs from ledger record {item.record.seq}")
        for artifact in item.payload.get("artifacts", []):
            artifacts += 1
            if not artifact_intact(trustai_dir, artifact):
                artifact_problems.append(
                    f"trustai/{artifact.get('path')}: missing or differs from ledger record {item.record.seq}"
                )
    return [
        _verdict(f"run evidence files vs their ledger records, {len(run.items)} files", evidence_problems),
        _verdict(f"run artifact files vs their evidence records, {artifacts} files", artifact_problems),
    ]


def _checkpoint(run: RunEvidence, folder: Path, public_key: Path | None) -> list[Verdict]:
    """Verify one sealed checkpoint; a missing folder fails only when it is the report's subject."""
    from trustai.verify import verify_checkpoint

    name = run.display(folder)
    if not folder.is_dir():
        status = FAILED if folder == run.subject else NOT_CHECKED
        return [Verdict(f"{name}: {_SIGNATURE_STEP}", status, ("sealed in the ledger but not present",))]
    verdicts = []
    for check in verify_checkpoint(folder, public_key).checks:
        if check.name == _LEDGER_STEP:
            continue
        if check.name == _SIGNATURE_STEP and public_key is None:
            verdicts.append(Verdict(f"{name}: {check.name}", NOT_CHECKED, ("no public key given or found",)))
        else:
            verdicts.append(_verdict(f"{name}: {check.name}", [f"{name}/{p}" for p in check.problems]))
    return verdicts


def check_integrity(run: RunEvidence, public_key: Path | None) -> Integrity:
    """Verify the run as it is now: ledger chain, run files, then every sealed checkpoint in scope.

    ``public_key`` None reports every signature as not checked; all other checks run regardless.
    """
    with Ledger(run.ledger_path, create=False) as ledger:
        report = ledger.verify()
    chain = _verdict(f"ledger hash chain, {report.records} records", report.problems)
    limit = run.subject_step
    folders = sorted(
        {
            run.checkpoint_folder(card)
            for card in run.all("card")
            if limit is None or (card.payload.get("step") or 0) <= limit
        }
    )
    per_folder = {folder: _checkpoint(run, folder, public_key) for folder in folders}
    signatures = {
        run.display(folder): next(v for v in per_folder[folder] if v.name.endswith(f": {_SIGNATURE_STEP}"))
        for folder in folders
    }
    verdicts = [chain, *_run_files(run), *(v for folder in folders for v in per_folder[folder])]
    signature = signatures.get(run.display(run.subject)) if run.subject else None
    if signature is None:
        signature = Verdict(_SIGNATURE_STEP, NOT_CHECKED, ("the run has no sealed checkpoint",))
        verdicts.append(signature)
    key = file_sha256(public_key)[:16] if public_key else None
    return Integrity(verdicts, chain, signatures, signature, key)
