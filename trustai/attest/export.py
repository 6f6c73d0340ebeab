"""``trustai export``: one sealed checkpoint as a self-contained, upload-ready folder that still
verifies wherever it is copied.

A card binds its checkpoint to the run's ledger by relative path and to its place in the run
(``trustai.attest.verify``), so the export keeps that shape, with the run folder reduced to what the
checkpoint needs::

    OUT/README.md                                 the Hugging Face card (model-index with every result)
    OUT/checkpoints/<step>/pretrained_model/      the signed folder, byte for byte (weights, model.sig,
                                                  trustai/card.json, cited evidence and artifacts)
    OUT/trustai/ledger.sqlite                     a consistent copy of the run's ledger (the evidence)
    OUT/trustai/export.json                       what was exported, the public key's sha256 fingerprint
                                                  and how to verify
    OUT/trustai/signing-key.pub                   the public key (check its fingerprint out of band)

Nothing is re-signed: the export holds only what the signing key already covers, so ``trustai verify
OUT/checkpoints/<step>`` passes on any copy of OUT and fails on any change. The checkpoint is verified
before anything is written, and the export again once written.
"""

import json
import shutil
import sqlite3
from pathlib import Path

from trustai import layout
from trustai.attest.keys import public_key_fingerprint
from trustai.attest.verify import VerifyReport, verify_checkpoint
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError

EXPORT_SCHEMA = "trustai.export/v1"
MANIFEST = "export.json"
PUBLIC_KEY = "signing-key.pub"


class ExportRefused(Exception):
    """The checkpoint does not verify: nothing was exported. ``report`` says why."""

    def __init__(self, report: VerifyReport):
        super().__init__(f"{report.checkpoint}: verification failed, nothing exported")
        self.report = report


def _copy_ledger(source: Path, target: Path) -> None:
    """A consistent copy of the ledger at ``source`` (read-only; SQLite's backup), as one file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
    finally:
        src.close()
        dst.close()


def export_checkpoint(checkpoint: Path, out: Path, public_key: Path) -> tuple[Path, VerifyReport]:
    """Export the sealed ``checkpoint`` into the new folder ``out``; return the exported model folder
    and its verification. Raises ExportRefused when the checkpoint does not verify with
    ``public_key``, TrustaiUserError when ``out`` exists and is not empty or the checkpoint is not a
    sealed checkpoint of a run."""
    model = layout.model_folder(checkpoint).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrustaiUserError("export folder is not empty", where=str(out), fix="name a new folder")
    report = verify_checkpoint(model, public_key)
    if not report.ok:
        raise ExportRefused(report)
    ledger = report.ledger
    run = RunLedger.load(ledger) if ledger is not None else None
    if run is None or not model.is_relative_to(run.run_dir.resolve()):
        raise TrustaiUserError(
            "the checkpoint does not lie inside the run folder of the ledger its card cites",
            where=str(model),
            fix="export a checkpoint from its run's checkpoints/ folder",
        )
    rel = model.relative_to(run.run_dir.resolve())
    target = out / rel
    shutil.copytree(model, target, symlinks=False)
    _copy_ledger(ledger, layout.ledger_path(out))
    shutil.copy2(model / "README.md", out / "README.md")
    shutil.copy2(public_key, layout.trustai_dir(out) / PUBLIC_KEY)
    card = json.loads(layout.card_path(model).read_text(encoding="utf-8"))
    manifest = {
        "schema": EXPORT_SCHEMA,
        "checkpoint": rel.as_posix(),
        "step": card["run"]["step"],
        "run_id": run.run_id,
        "gate": card["governance"]["gate"],
        "ledger_head": run.head.cite() if run.head else None,
        "public_key_sha256": public_key_fingerprint(public_key),
        "verify": f"trustai verify {rel.as_posix()} --public-key <the signer's public key>",
    }
    (layout.trustai_dir(out) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target, verify_checkpoint(target, public_key)
