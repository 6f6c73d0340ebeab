"""``trustai verify``: one verdict over a checkpoint — signature, every file's digest, the card's
citations against the ledger, the evidence files against their records, and the ledger chain."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from trustai.canonical import digest
from trustai.card import CARD_DIR, CARD_NAME
from trustai.errors import TrustaiUserError
from trustai.ledger import Ledger


@dataclass
class Check:
    """One verification step: its name, whether it held, and what was wrong."""

    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the step found no problem."""
        return not self.problems


@dataclass
class VerifyReport:
    """All verification steps of one checkpoint."""

    checkpoint: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True only when every step held."""
        return all(c.ok for c in self.checks)


def model_folder(path: Path) -> Path:
    """Return the signed folder of a checkpoint: ``path`` itself or its ``pretrained_model``."""
    path = Path(path)
    if not path.exists():
        raise TrustaiUserError(
            "checkpoint not found", where=str(path), fix="pass a checkpoint or pretrained_model folder"
        )
    if (path / "pretrained_model").is_dir():
        return path / "pretrained_model"
    if path.is_dir():
        return path
    raise TrustaiUserError(
        "not a folder", where=str(path), fix="pass a checkpoint or pretrained_model folder"
    )


def _check_card(folder: Path, card: dict) -> tuple[Check, Check, Check]:
    """Check the card's evidence files and citations against the ledger it names, and the chain."""
    cites, files, chain = (
        Check("card cites ledger records"),
        Check("evidence matches ledger"),
        Check("ledger chain"),
    )
    ledger_path = (folder / CARD_DIR / card["ledger"]["path"]).resolve()
    try:
        ledger = Ledger(ledger_path, create=False)
    except TrustaiUserError as exc:
        chain.problems.append(str(exc))
        return cites, files, chain
    try:
        report = ledger.verify()
        chain.problems += report.problems
        cited = [e["record"] for e in card["evidence"]] + [
            f["record"] for f in card["governance"]["findings"]
        ]
        if card["ledger"]["head"]:
            cited.append(card["ledger"]["head"])
        for ref in cited:
            rec = ledger.get(ref["seq"])
            if rec is None:
                cites.problems.append(f"card cites ledger record {ref['seq']}, which is missing")
            elif rec.hash != ref["hash"]:
                cites.problems.append(
                    f"card cites ledger record {ref['seq']} with hash {ref['hash'][:12]}, "
                    f"ledger has {rec.hash[:12]}"
                )
        for item in card["evidence"]:
            path = folder / CARD_DIR / item["file"]
            rec = ledger.get(item["record"]["seq"])
            if not path.is_file():
                files.problems.append(f"{path.relative_to(folder)}: evidence file missing")
            elif rec is not None:
                try:
                    ok = digest(json.loads(path.read_text(encoding="utf-8"))) == rec.payload_sha256
                except (ValueError, UnicodeDecodeError):
                    ok = False
                if not ok:
                    files.problems.append(f"{path.relative_to(folder)}: differs from ledger record {rec.seq}")
    finally:
        ledger.close()
    return cites, files, chain


def _require_card_fields(card: dict) -> None:
    """Raise KeyError/TypeError when the card lacks the fields verification reads."""
    for key in ("path", "head"):
        card["ledger"][key]
    for item in card["evidence"]:
        item["file"], item["record"]["seq"], item["record"]["hash"]
    for finding in card["governance"]["findings"]:
        finding["record"]["seq"], finding["record"]["hash"]


def verify_checkpoint(path: Path, public_key: Path | None) -> VerifyReport:
    """Verify a checkpoint; ``public_key`` None skips only the signature step (reported as not checked)."""
    from trustai.signing import verify_folder

    folder = model_folder(path)
    report = VerifyReport(folder)
    signature = Check("signature and file digests")
    if public_key is None:
        signature.problems.append("no public key given: signature not checked (pass --public-key)")
    else:
        result = verify_folder(folder, Path(public_key))
        signature.problems += result.problems
    report.checks.append(signature)
    card_path = folder / CARD_DIR / CARD_NAME
    card_check = Check("model card")
    report.checks.append(card_check)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        _require_card_fields(card)
    except FileNotFoundError:
        card_check.problems.append(f"{card_path.relative_to(folder)}: missing")
        return report
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        card_check.problems.append(
            f"{card_path.relative_to(folder)}: unreadable ({type(exc).__name__}: {exc})"
        )
        return report
    report.checks += _check_card(folder, card)
    return report
