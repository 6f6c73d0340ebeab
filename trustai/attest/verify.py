"""``trustai verify``: one verdict over a checkpoint — signature, every file's digest, the card's
citations against the ledger, the evidence files against their records, the ledger chain and its
signed anchors, and the checkpoint's identity (the run, place and step its card binds, and that its
card is the latest the ledger holds for it). ``verify_ledger``: the verdict over a run's ledger alone
(``trustai ledger verify`` and reports). Verifying several checkpoints of one run (a report, the
dashboard, ``trustai audit --all``) walks its ledger once (``trustai.attest.verified_ledger``)."""

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from trustai import layout
from trustai.attest.anchor import AnchorCheck, check_anchors
from trustai.attest.card import checkpoint_ref
from trustai.attest.verified_ledger import VerifiedLedger, read_verified
from trustai.core.canonical import digest, file_sha256
from trustai.core.ledger import Ledger
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError

MAX_JSON_BYTES = 64 << 20  # a card or evidence file larger than this is refused, not parsed
SIGNATURE_STEP = "signature and file digests"
ANCHORS_STEP = "signature of the ledger (anchors)"  # like SIGNATURE_STEP, needs the public key
CHAIN_STEP = "ledger chain"
IDENTITY_STEP = "checkpoint identity (run, location, step, latest card)"
NO_KEY = "no public key given: {} not checked (pass --public-key)"


@dataclass
class VerifyStep:
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
    steps: list[VerifyStep] = field(default_factory=list)
    ledger: Path | None = None  # the ledger the card cites (resolved), once it was opened

    @property
    def ok(self) -> bool:
        """True only when every step held."""
        return all(c.ok for c in self.steps)


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


def _check_citations(ledger: VerifiedLedger, card: dict, check: VerifyStep) -> str | None:
    """Every record the card cites is in the ledger with the cited hash, and the card itself is recorded.
    Returns the card's digest (None when it cannot be hashed)."""
    cited = [e["record"] for e in card["evidence"]] + [f["record"] for f in card["governance"]["findings"]]
    if card["ledger"]["head"]:
        cited.append(card["ledger"]["head"])
    for ref in cited:
        rec = ledger.records.get(ref["seq"])
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
        check.problems.append(f"{layout.MODEL_CARD}: cannot be hashed ({exc})")
        return None
    # Governance.seal records each card after signing it; without that record a truncated ledger tail
    # (or a card that never went through the ledger) would pass.
    if not any(r.payload.get("card_digest") == card_digest for r in ledger.run.cards):
        check.problems.append(f"{layout.MODEL_CARD}: no ledger card record matches this card")
    return card_digest


def _check_evidence(ledger: VerifiedLedger, card: dict, card_dir: Path, check: VerifyStep) -> None:
    """Each cited evidence file equals its ledger record; each artifact is inside the card folder and
    matches its sha256."""
    for item in card["evidence"]:
        path = _inside(card_dir, item["file"])
        if path is None:
            check.problems.append(
                f"evidence file {_shown(item['file'])!r} is outside {layout.TRUSTAI_DIR}/ (refused, not read)"
            )
            continue
        shown = f"{layout.TRUSTAI_DIR}/{_shown(item['file'])}"
        rec = ledger.records.get(item["record"]["seq"])
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
                    f"artifact {_shown(art['path'])!r} is outside {layout.TRUSTAI_DIR}/ (refused, not read)"
                )
            elif art_path.is_symlink() or not art_path.is_file():
                check.problems.append(
                    f"{layout.TRUSTAI_DIR}/{_shown(art['path'])}: artifact missing or not a file"
                )
            elif _sha256_or_none(art_path) != art["sha256"]:
                check.problems.append(
                    f"{layout.TRUSTAI_DIR}/{_shown(art['path'])}: artifact differs from its sha256"
                )


def _recorded_location(run_dir: Path, recorded: str) -> Path | None:
    """The model folder a card's ``run.checkpoint`` names, resolved; None when a relative name leaves
    the run folder (trustai never writes one)."""
    try:
        if Path(recorded).is_absolute():
            return Path(recorded).resolve()
        inside = _inside(run_dir, recorded)
        return inside.resolve() if inside is not None else None
    except (OSError, RuntimeError, ValueError):  # a NUL, a link loop: not a place a checkpoint can be
        return None


def _check_identity(
    folder: Path, card: dict, card_digest: str | None, run: RunLedger, check: VerifyStep
) -> None:
    """The card (whose digest is ``card_digest``, None when it cannot be hashed) belongs to the ledger's
    run, sits where and at the step it was sealed, and is the latest card the anchored ledger holds for
    this folder (else: copied, moved or rolled back)."""
    ident = card.get("run")
    if not (
        isinstance(ident, dict)
        and isinstance(ident.get("id"), str)
        and isinstance(ident.get("checkpoint"), str)
    ):
        check.problems.append(
            f"{layout.MODEL_CARD}: binds no run identity (sealed by a trustai before card v2), so where it "
            "belongs and whether it is current cannot be checked; re-seal it with `trustai audit`"
        )
        return
    if run.run_id is None:
        check.problems.append("the ledger records no run id (written by a trustai before run ids)")
    elif ident["id"] != run.run_id:
        check.problems.append(
            f"{layout.MODEL_CARD}: belongs to run {_shown(ident['id'])}, the ledger it names is run "
            f"{run.run_id} (refused)"
        )
    here = checkpoint_ref(run.run_dir, folder)
    recorded, step = ident["checkpoint"], ident.get("step")
    location = _recorded_location(run.run_dir, recorded)
    if location is None:
        check.problems.append(
            f"{layout.MODEL_CARD}: names {_shown(recorded)!r} as its checkpoint, outside its run (refused)"
        )
    elif location != folder.resolve():
        check.problems.append(
            f"{here}: holds the card of {_shown(recorded)} (step {step}): copied, moved or rolled back "
            "from there (refused)"
        )
    details = card.get("model_details")
    named_step = layout.checkpoint_step(folder)
    if step != (details.get("step") if isinstance(details, dict) else None) or (
        named_step is not None and folder.name == layout.MODEL_DIR and named_step != step
    ):
        check.problems.append(f"{here}: its card says step {step}, which is not this checkpoint's step")
    if card_digest is None:
        return  # named by the citations step: a card that cannot be hashed matches no card record
    latest = run.cards_of(folder, anchored=True)
    if latest and latest[-1].payload.get("card_digest") != card_digest:
        mine = next((c.seq for c in run.cards if c.payload.get("card_digest") == card_digest), None)
        check.problems.append(
            f"{here}: rolled back: the ledger's latest card for it is card record {latest[-1].seq} "
            f"(step {latest[-1].payload.get('step')}), this folder holds "
            + (f"the older one of card record {mine}" if mine else "a card no card record holds")
        )
    recorded_by = next((c for c in run.cards if c.payload.get("card_digest") == card_digest), None)
    if recorded_by is not None and (
        recorded_by.payload.get("checkpoint") != recorded or recorded_by.payload.get("step") != step
    ):
        check.problems.append(
            f"{layout.MODEL_CARD}: its card record {recorded_by.seq} names "
            f"{recorded_by.payload.get('checkpoint')} step {recorded_by.payload.get('step')}, the card "
            f"{_shown(recorded)} step {step}"
        )


def _anchor_step(anchors: AnchorCheck) -> VerifyStep:
    """The anchors' verdict: every problem with a key; without one, not checked (and what contradicts
    itself anyway)."""
    step = VerifyStep(ANCHORS_STEP)
    step.problems += anchors.problems if anchors.keyed else [NO_KEY.format("ledger anchors")]
    if not anchors.keyed:
        step.problems += anchors.inconsistent
    return step


def _check_card(folder: Path, card: dict, public_key: Path | None, report: VerifyReport) -> None:
    """Check the card's citations and evidence files against the ledger it names, the chain and its
    anchors, and the checkpoint's identity."""
    cites, files, chain = (
        VerifyStep("card cites ledger records"),
        VerifyStep("evidence matches ledger"),
        VerifyStep(CHAIN_STEP),
    )
    identity = VerifyStep(IDENTITY_STEP)
    report.steps += [cites, files, chain]
    card_dir = layout.card_dir(folder)
    named = card["ledger"]["path"]
    if not named.isprintable() or PurePath(named).name != layout.LEDGER_NAME:
        chain.problems.append(
            f"card names {_shown(named)!r} as its ledger, not a {layout.LEDGER_NAME} (refused)"
        )
        return
    try:
        ledger = Ledger((card_dir / named).resolve(), create=False)
    except (TrustaiUserError, OSError, RuntimeError) as exc:
        chain.problems.append(str(exc))
        return
    report.ledger = ledger.path
    try:
        verified = read_verified(ledger)
    except TrustaiUserError as exc:  # a ledger too damaged to read records from
        chain.problems += ledger.verify().problems
        cites.problems.append(str(exc))
        return
    finally:
        ledger.close()
    chain.problems += verified.chain.problems
    card_digest = _check_citations(verified, card, cites)
    _check_evidence(verified, card, card_dir, files)
    report.steps.append(_anchor_step(verified.anchors(public_key)))
    _check_identity(folder, card, card_digest, verified.run, identity)
    report.steps.append(identity)


def verify_checkpoint(path: Path, public_key: Path | None) -> VerifyReport:
    """Verify a checkpoint; ``public_key`` None skips the two signature steps (the folder's and the
    ledger anchors', reported as not checked), so the report is never ok without a key."""
    from trustai.attest.signing import verify_folder

    folder = layout.model_folder(path)
    report = VerifyReport(folder)
    signature = VerifyStep(SIGNATURE_STEP)
    if public_key is None:
        signature.problems.append(NO_KEY.format("signature"))
    else:
        result = verify_folder(folder, Path(public_key))
        signature.problems += result.problems
    report.steps.append(signature)
    card_check = VerifyStep("model card")
    report.steps.append(card_check)
    try:
        card = _load_json(layout.card_path(folder))
    except ValueError as exc:
        card_check.problems.append(f"{layout.MODEL_CARD}: {exc}")
        return report
    malformed = _card_problem(card)
    if malformed:
        card_check.problems.append(f"{layout.MODEL_CARD}: unreadable ({malformed})")
        return report
    _check_card(folder, card, public_key, report)
    return report


@dataclass
class LedgerVerdict:
    """``verify_ledger``: the chain, its anchors, and the signed files on disk that cite it."""

    path: Path
    records: int
    chain: list[str]  # the hash chain's problems
    anchors: AnchorCheck
    citations: list[str]  # cards on disk citing records the ledger lacks: records were removed

    @property
    def consistency(self) -> list[str]:
        """What contradicts itself with or without a key: the chain, the anchors against the records
        they cover, and the cards on disk against the ledger."""
        return self.chain + self.anchors.inconsistent + self.citations

    @property
    def problems(self) -> list[str]:
        """Every problem: ``consistency``, and with a key the unanchored records and bad signatures."""
        return self.chain + self.anchors.problems + self.citations

    @property
    def ok(self) -> bool:
        """True when nothing failed (without a key this proves internal consistency only)."""
        return not self.problems


def _dangling_citations(run: RunLedger) -> list[str]:
    """Cards of this run on disk that cite a record, or a card record, the ledger lacks: records after a
    signed head were removed. Each card found is read (safely) but not trusted: it can only raise an
    alarm, never clear one."""
    folders = {*layout.checkpoint_models(run.run_dir), *(run.checkpoint_folder(c) for c in run.cards)}
    digests = {c.payload.get("card_digest") for c in run.cards}
    by_seq = {r.seq: r for r in run.records}
    ledger = run.ledger_path.resolve()
    problems = []
    for folder in sorted(folders):
        try:
            card = _load_json(layout.card_path(folder))
            if _card_problem(card) or (layout.card_dir(folder) / card["ledger"]["path"]).resolve() != ledger:
                continue
            card_digest = digest(card)
        except (ValueError, OSError, RuntimeError):
            continue  # unreadable or not this ledger's: `trustai verify` of that checkpoint names it
        if not isinstance(card.get("run"), dict) or card["run"].get("id") != run.run_id:
            continue
        name = f"{checkpoint_ref(run.run_dir, folder)}/{layout.MODEL_CARD}"
        head = card["ledger"]["head"]
        if head is not None and getattr(by_seq.get(head["seq"]), "hash", None) != head["hash"]:
            problems.append(
                f"{name}: cites ledger record {head['seq']} ({_shown(head['hash'][:12])}), which the ledger "
                "lacks: records after a signed head were removed"
            )
        elif card_digest not in digests:
            problems.append(f"{name}: no card record holds this card: records after it were removed")
    return problems


def verify_ledger(ledger_path: Path, public_key: Path | None) -> LedgerVerdict:
    """Verify a run's ledger: its hash chain, its anchors (their signatures only with ``public_key``)
    and the cards on disk that cite it. Raises TrustaiUserError when the file is no ledger or the key
    no EC public key."""
    with Ledger(ledger_path, create=False) as ledger:
        try:
            verified = read_verified(ledger)
        except TrustaiUserError as exc:
            report = ledger.verify()
            report.problems.append(str(exc))
            run = RunLedger(layout.run_dir_of(ledger.path), ledger.path, [])
            anchors = check_anchors(run, public_key)
        else:
            report, run, anchors = verified.chain, verified.run, verified.anchors(public_key)
    return LedgerVerdict(ledger.path, report.records, report.problems, anchors, _dangling_citations(run))
