"""Integrity of a run at rendering time: the ledger's hash chain and its signed anchors, that the report
reads the one ledger its checkpoints' cards cite, the run's evidence and artifact files against their
records, every sealed checkpoint in scope (signature, card, cited records, evidence copies, identity)
through ``trustai.attest.verify``, and the checkpoints on disk the ledger does not account for. A
report states these verdicts on its first page; ``tampered`` reports exit 1."""

import json
from dataclasses import dataclass
from pathlib import Path

from trustai.reports.document import Verdict
from trustai.reports.model import RunEvidence

from trustai import layout
from trustai.attest.keys import public_key_fingerprint
from trustai.attest.verify import ANCHORS_STEP, CHAIN_STEP, SIGNATURE_STEP, verify_checkpoint, verify_ledger
from trustai.core.canonical import digest, file_sha256
from trustai.core.ledger import Record

OK, FAILED, NOT_CHECKED = "ok", "failed", "not checked"
_NO_KEY = "no public key given or found"


@dataclass(frozen=True)
class Integrity:
    """All verdicts, plus those the first page and the ledger block state on their own."""

    verdicts: list[Verdict]
    ledger: Verdict  # the hash chain
    anchors: Verdict  # the signed anchors over the chain
    signatures: dict[str, Verdict]  # each sealed checkpoint in scope (run-relative name) -> signature
    key: str | None  # sha256 fingerprint (16 hex) of the public key used, None when none


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
    trustai_dir = layout.trustai_dir(run.run_dir)
    evidence_problems, artifact_problems, artifacts = [], [], 0
    for item in run.items:
        rel = f"{layout.TRUSTAI_DIR}/{layout.evidence_name(item.record.seq, item.check_id)}"
        if not (run.run_dir / rel).is_file():
            evidence_problems.append(f"{rel}: missing")
        elif not _json_matches(run.run_dir / rel, item.record.payload_sha256):
            evidence_problems.append(f"{rel}: differs from ledger record {item.record.seq}")
        for artifact in item.payload.get("artifacts", []):
            artifacts += 1
            if not artifact_intact(trustai_dir, artifact):
                artifact_problems.append(
                    f"{layout.TRUSTAI_DIR}/{artifact.get('path')}: missing or differs from ledger record "
                    f"{item.record.seq}"
                )
    return [
        _verdict(f"run evidence files vs their ledger records, {len(run.items)} files", evidence_problems),
        _verdict(f"run artifact files vs their evidence records, {artifacts} files", artifact_problems),
    ]


def _checkpoint(run: RunEvidence, folder: Path, public_key: Path | None) -> tuple[list[Verdict], list[str]]:
    """Verify one sealed checkpoint (the run-wide ledger steps left out); a missing folder fails only
    when it is the report's subject. Also returns why its card does not cite this report's ledger."""
    name = run.display(folder)
    if not folder.is_dir():
        status = FAILED if folder == run.subject else NOT_CHECKED
        return [Verdict(f"{name}: {SIGNATURE_STEP}", status, ("sealed in the ledger but not present",))], []
    verdicts = []
    report = verify_checkpoint(folder, public_key)
    for check in report.steps:
        if check.name in (CHAIN_STEP, ANCHORS_STEP):
            continue
        if check.name == SIGNATURE_STEP and public_key is None:
            verdicts.append(Verdict(f"{name}: {check.name}", NOT_CHECKED, (_NO_KEY,)))
        else:
            verdicts.append(_verdict(f"{name}: {check.name}", [f"{name}/{p}" for p in check.problems]))
    other = report.ledger is not None and report.ledger != run.ledger_path.resolve()
    cites_other = (
        [f"{name}: its card cites the ledger {report.ledger}, not this one (refused)"] if other else []
    )
    return verdicts, cites_other


def _escapes(run: RunEvidence, card: Record) -> bool:
    """True when a card record names its checkpoint by a relative path that leaves the run folder
    (trustai never writes one)."""
    named = str(card.payload.get("checkpoint", ""))
    return not Path(named).is_absolute() and not run.checkpoint_folder(card).is_relative_to(
        run.run_dir.resolve()
    )


def _ledger_in_checkpoint(ledger: Path) -> str | None:
    """Why the ledger lies inside a checkpoint folder rather than at a run's top, or None."""
    home = layout.run_dir_of(ledger.resolve())
    model_like = (
        home.name == layout.MODEL_DIR
        or layout.card_path(home).is_file()
        or (home / layout.MODEL_DIR).is_dir()
        or (home.name.isdigit() and home.parent.name == layout.CHECKPOINTS_DIR)
    )
    if not model_like:
        return None
    return f"{ledger}: a ledger inside a checkpoint folder, not a run's {layout.RUN_LEDGER} (refused)"


def _unaccounted(run: RunEvidence) -> list[str]:
    """Checkpoints on disk that no anchored card record seals."""
    sealed = {run.checkpoint_folder(c) for c in run.ledger.anchored_cards}
    return [
        f"{run.display(folder)}: on disk, but no anchored card record of the ledger seals it (not governed)"
        for folder in layout.checkpoint_models(run.run_dir)
        if folder.resolve() not in sealed
    ]


def check_integrity(run: RunEvidence, public_key: Path | None) -> Integrity:
    """Verify the run as it is now: ledger chain and anchors, the one ledger, run files, every sealed
    checkpoint in scope, and the checkpoints the ledger does not account for.

    ``public_key`` None reports every signature (checkpoints' and anchors') as not checked; all other
    checks run regardless.
    """
    ledger = verify_ledger(run.ledger_path, public_key)
    chain = _verdict(f"ledger hash chain, {ledger.records} records", ledger.consistency)
    found = ledger.anchors
    anchor_name = f"ledger anchors (signed heads), {found.anchors} anchors"
    if public_key is None:
        anchors = Verdict(anchor_name, NOT_CHECKED, (_NO_KEY, *found.unanchored))
    else:
        anchors = _verdict(anchor_name, found.unanchored + found.signatures)
    limit = run.subject_step
    in_scope = [
        card
        for card in run.ledger.anchored_cards
        if limit is None or (card.payload.get("step") or 0) <= limit
    ]
    one_ledger = list(run.refused)
    inside = _ledger_in_checkpoint(run.ledger_path)
    one_ledger += [inside] if inside else []
    one_ledger += [
        f"ledger card record {c.seq} names {c.payload.get('checkpoint')!r}, outside the run "
        "(refused, not read)"
        for c in in_scope
        if _escapes(run, c)
    ]
    folders = sorted({run.checkpoint_folder(card) for card in in_scope if not _escapes(run, card)})
    per_folder = {}
    for folder in folders:
        per_folder[folder], cites_other = _checkpoint(run, folder, public_key)
        one_ledger += cites_other
    signatures = {
        run.display(folder): next(v for v in per_folder[folder] if v.name.endswith(f": {SIGNATURE_STEP}"))
        for folder in folders
    }
    verdicts = [
        chain,
        anchors,
        _verdict("one ledger: the one every card in scope cites", one_ledger),
        *_run_files(run),
        *(v for folder in folders for v in per_folder[folder]),
        _verdict("checkpoints on disk the ledger accounts for", _unaccounted(run)),
    ]
    if run.subject is None or run.display(run.subject) not in signatures:
        verdicts.append(Verdict(SIGNATURE_STEP, NOT_CHECKED, ("the run has no sealed checkpoint",)))
    key = public_key_fingerprint(public_key)[:16] if public_key else None
    return Integrity(verdicts, chain, anchors, signatures, key)
