"""``trustai verify``: one verdict over a checkpoint — signature, every file's digest, the card's
citations against the ledger, the evidence files against their records, and the ledger chain."""

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from trustai.canonical import digest, file_sha256
from trustai.card import CARD_DIR, CARD_NAME
from trustai.errors import TrustaiUserError
from trustai.ledger import LEDGER_NAME, Ledger

MAX_JSON_BYTES = 64 << 20  # a card or evidence file larger than this is refused, not parsed


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


def _shown(text: str) -> str:
    """``text`` as it may be printed: escaped when it holds control or non-UTF-8 characters."""
    return text if text.isprintable() else ascii(text)


def _inside(base: Path, rel: str) -> Path | None:
    """Return ``base / rel`` if ``rel`` is relative and stays inside ``base`` (links followed), else None."""
    if not rel or "\x00" in rel or Path(rel).is_absolute():
        return None
    try:
        target = (base / rel).resolve()
        return base / rel if target.is_relative_to(base.resolve()) else None
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name the filesystem cannot hold
        return None


def _load_json(path: Path) -> Any:
    """Parse a regular JSON file of at most MAX_JSON_BYTES; raise ValueError saying why it is unusable."""
    if path.is_symlink():
        raise ValueError("is a symbolic link (refused)")
    if not path.is_file():
        raise ValueError("missing" if not path.exists() else "is not a regular file (refused)")
    with path.open("rb") as f:
        data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"larger than {MAX_JSON_BYTES} bytes (refused)")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply (refused)") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def _sha256_or_none(path: Path) -> str | None:
    """The file's sha256, or None when it cannot be read."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def _is_ref(value: Any) -> bool:
    """True for a ledger record reference ``{"seq": int, "hash": str}`` with a storable seq."""
    return (
        isinstance(value, dict)
        and type(value.get("seq")) is int
        and 0 < value["seq"] <= 2**53
        and isinstance(value.get("hash"), str)
    )


def _card_problem(card: Any) -> str | None:
    """Say which field verification reads is missing or mistyped; None when the card is usable."""
    if not isinstance(card, dict):
        return "not a JSON object"
    ledger = card.get("ledger")
    if not isinstance(ledger, dict) or not isinstance(ledger.get("path"), str):
        return "ledger.path must be text"
    if "head" not in ledger or not (ledger["head"] is None or _is_ref(ledger["head"])):
        return "ledger.head must be a record reference or null"
    evidence = card.get("evidence")
    if not isinstance(evidence, list):
        return "evidence must be a list"
    for i, item in enumerate(evidence):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("file"), str)
            or not _is_ref(item.get("record"))
        ):
            return f"evidence[{i}] needs a file name and a record reference"
        artifacts = item.get("artifacts", [])
        if not isinstance(artifacts, list) or not all(
            isinstance(a, dict) and isinstance(a.get("path"), str) and isinstance(a.get("sha256"), str)
            for a in artifacts
        ):
            return f"evidence[{i}].artifacts must be a list of {{path, sha256}}"
    governance = card.get("governance")
    findings = governance.get("findings") if isinstance(governance, dict) else None
    if not isinstance(findings, list) or not all(
        isinstance(f, dict) and _is_ref(f.get("record")) for f in findings
    ):
        return "governance.findings must be a list of findings with record references"
    return None


def _check_citations(ledger: Ledger, card: dict, check: Check) -> None:
    """Every record the card cites is in the ledger with the cited hash, and the card itself is recorded."""
    cited = [e["record"] for e in card["evidence"]] + [f["record"] for f in card["governance"]["findings"]]
    if card["ledger"]["head"]:
        cited.append(card["ledger"]["head"])
    for ref in cited:
        rec = ledger.get(ref["seq"])
        if rec is None:
            check.problems.append(f"card cites ledger record {ref['seq']}, which is missing")
        elif rec.hash != ref["hash"]:
            check.problems.append(
                f"card cites ledger record {ref['seq']} with hash {_shown(ref['hash'][:12])}, "
                f"ledger has {rec.hash[:12]}"
            )
    try:
        card_digest = digest(card)
    except ValueError as exc:
        check.problems.append(f"{CARD_DIR}/{CARD_NAME}: cannot be hashed ({exc})")
        return
    # Governance.seal records each card after signing it; without that record a truncated ledger tail
    # (or a card that never went through the ledger) would pass.
    if not any(r.payload.get("card_digest") == card_digest for r in ledger.records("card")):
        check.problems.append(f"{CARD_DIR}/{CARD_NAME}: no ledger card record matches this card")


def _check_evidence(ledger: Ledger, card: dict, card_dir: Path, check: Check) -> None:
    """Each cited evidence file equals its ledger record; each artifact is inside the card folder and
    matches its sha256."""
    for item in card["evidence"]:
        path = _inside(card_dir, item["file"])
        if path is None:
            check.problems.append(
                f"evidence file {_shown(item['file'])!r} is outside {CARD_DIR}/ (refused, not read)"
            )
            continue
        shown = f"{CARD_DIR}/{_shown(item['file'])}"
        rec = ledger.get(item["record"]["seq"])
        try:
            ok = rec is None or digest(_load_json(path)) == rec.payload_sha256
        except ValueError as exc:
            check.problems.append(f"{shown}: {exc}")
            continue
        if not ok:
            check.problems.append(f"{shown}: differs from ledger record {rec.seq}")
        for art in item.get("artifacts", []):
            art_path = _inside(card_dir, art["path"])
            if art_path is None:
                check.problems.append(
                    f"artifact {_shown(art['path'])!r} is outside {CARD_DIR}/ (refused, not read)"
                )
            elif art_path.is_symlink() or not art_path.is_file():
                check.problems.append(f"{CARD_DIR}/{_shown(art['path'])}: artifact missing or not a file")
            elif _sha256_or_none(art_path) != art["sha256"]:
                check.problems.append(f"{CARD_DIR}/{_shown(art['path'])}: artifact differs from its sha256")


def _check_card(folder: Path, card: dict) -> tuple[Check, Check, Check]:
    """Check the card's citations and evidence files against the ledger it names, and the chain."""
    cites, files, chain = (
        Check("card cites ledger records"),
        Check("evidence matches ledger"),
        Check("ledger chain"),
    )
    card_dir = folder / CARD_DIR
    named = card["ledger"]["path"]
    if not named.isprintable() or PurePath(named).name != LEDGER_NAME:
        chain.problems.append(f"card names {_shown(named)!r} as its ledger, not a {LEDGER_NAME} (refused)")
        return cites, files, chain
    try:
        ledger = Ledger(card_dir / named, create=False)
    except TrustaiUserError as exc:
        chain.problems.append(str(exc))
        return cites, files, chain
    try:
        chain.problems += ledger.verify().problems
        _check_citations(ledger, card, cites)
        _check_evidence(ledger, card, card_dir, files)
    except TrustaiUserError as exc:  # a ledger too damaged to read records from
        cites.problems.append(str(exc))
    finally:
        ledger.close()
    return cites, files, chain


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
        card = _load_json(card_path)
    except ValueError as exc:
        card_check.problems.append(f"{CARD_DIR}/{CARD_NAME}: {exc}")
        return report
    malformed = _card_problem(card)
    if malformed:
        card_check.problems.append(f"{CARD_DIR}/{CARD_NAME}: unreadable ({malformed})")
        return report
    report.checks += _check_card(folder, card)
    return report
