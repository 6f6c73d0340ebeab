"""Tamper trials: random single-byte flips, truncations, deletions, added files and edited, deleted or
reordered ledger records, across the weights, cards, evidence and ledger of a real governed run.
``trustai verify`` must fail for every one that changed evidence, and name the file or record."""

import random
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.conftest import GovernedRun
from tests.reliability.figures import FIGURES
from tests.reliability.runs import copy_run, ledger_rows, open_ledger_for_edit, own, trustai
from tests.reliability.scale import SCALE
from trustai.attest.verify import verify_checkpoint

TEXT_FIELDS = ("ts", "kind", "stage", "payload", "payload_sha256", "prev_hash", "hash")


@dataclass(frozen=True)
class Tamper:
    """What one trial did, and the names of which at least one must appear in verify's problems."""

    what: str
    names: tuple[str, ...]
    raw_ledger: bool = False  # a raw edit of the SQLite file may hit bytes that hold no record


@dataclass(frozen=True)
class Target:
    """A tampered copy: its ledger and the checkpoint folder that will be verified."""

    ledger: Path
    folder: Path  # a pretrained_model folder


def _signed_file(rng: random.Random, folder: Path) -> str:
    """A random signed file of the folder, chosen by kind first so small kinds are hit as often."""
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    kinds = {
        "weights": [f for f in files if f.endswith(".safetensors")],
        "card": ["trustai/card.json", "README.md"],
        "evidence": [f for f in files if f.startswith("trustai/evidence/")],
        "config": [f for f in files if f.endswith(".json") and "/" not in f],
        "signature": ["model.sig"],
    }
    return rng.choice(kinds[rng.choice(sorted(kinds))])


def flip_byte(rng: random.Random, t: Target) -> Tamper:
    """Flip one bit of one byte of a signed file."""
    rel = _signed_file(rng, t.folder)
    data = bytearray(own(t.folder / rel).read_bytes())
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    (t.folder / rel).write_bytes(bytes(data))
    return Tamper(f"flip byte {at} of {rel}", (rel,))


def truncate_file(rng: random.Random, t: Target) -> Tamper:
    """Cut a signed file short."""
    rel = _signed_file(rng, t.folder)
    data = own(t.folder / rel).read_bytes()
    size = rng.randrange(len(data))
    (t.folder / rel).write_bytes(data[:size])
    return Tamper(f"truncate {rel} to {size} bytes", (rel,))


def delete_file(rng: random.Random, t: Target) -> Tamper:
    """Delete a signed file."""
    rel = _signed_file(rng, t.folder)
    (t.folder / rel).unlink()
    return Tamper(f"delete {rel}", (rel,))


def add_file(rng: random.Random, t: Target) -> Tamper:
    """Add a file the signature does not cover, next to weights, card or evidence."""
    where = rng.choice(["", "trustai/", "trustai/evidence/"])
    rel = f"{where}extra-{rng.randrange(1 << 20)}{rng.choice(['.json', '.safetensors', '.md'])}"
    (t.folder / rel).write_bytes(rng.randbytes(rng.randrange(1, 256)))
    return Tamper(f"add {rel}", (rel,))


def flip_ledger_byte(rng: random.Random, t: Target) -> Tamper:
    """Flip one bit anywhere in the SQLite file."""
    data = bytearray(t.ledger.read_bytes())
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    t.ledger.write_bytes(bytes(data))
    return Tamper(f"flip byte {at} of the ledger file", ("record ", "ledger"), raw_ledger=True)


def truncate_ledger(rng: random.Random, t: Target) -> Tamper:
    """Cut the SQLite file short."""
    data = t.ledger.read_bytes()
    size = rng.randrange(len(data))
    t.ledger.write_bytes(data[:size])
    return Tamper(f"truncate the ledger file to {size} bytes", ("record ", "ledger"), raw_ledger=True)


def _covered_seqs(db: sqlite3.Connection) -> list[int]:
    """Records up to the last card record: each card anchors the head it saw and its own record."""
    last_card = db.execute("SELECT MAX(seq) FROM records WHERE kind = 'card'").fetchone()[0]
    return list(range(1, last_card + 1))


def flip_record_field(rng: random.Random, t: Target) -> Tamper:
    """Flip one bit of one text field of one record (left as raw bytes: it may stop being UTF-8)."""
    db = open_ledger_for_edit(t.ledger)
    seq = rng.randrange(1, db.execute("SELECT MAX(seq) FROM records").fetchone()[0] + 1)
    values = db.execute(f"SELECT {', '.join(TEXT_FIELDS)} FROM records WHERE seq = ?", (seq,)).fetchone()
    row = dict(zip(TEXT_FIELDS, values, strict=True))
    name = rng.choice([f for f in TEXT_FIELDS if row[f] is not None])
    data = bytearray(row[name].encode())
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    db.execute(f"UPDATE records SET {name} = CAST(? AS TEXT) WHERE seq = ?", (bytes(data), seq))
    db.close()
    return Tamper(f"flip byte {at} of {name} in record {seq}", (f"record {seq} (", f"ledger record {seq} "))


def delete_record(rng: random.Random, t: Target) -> Tamper:
    """Delete one record that a card anchors."""
    db = open_ledger_for_edit(t.ledger)
    seq = rng.choice(_covered_seqs(db))
    db.execute("DELETE FROM records WHERE seq = ?", (seq,))
    db.close()
    return Tamper(f"delete record {seq}", (f"sequence number {seq} ", "no ledger card record"))


def swap_records(rng: random.Random, t: Target) -> Tamper:
    """Swap the contents of two records (their order in the chain)."""
    db = open_ledger_for_edit(t.ledger)
    a, b = sorted(rng.sample(_covered_seqs(db), 2))
    cols = ", ".join(TEXT_FIELDS)
    rows = {s: db.execute(f"SELECT {cols} FROM records WHERE seq = ?", (s,)).fetchone() for s in (a, b)}
    sets = ", ".join(f"{c} = ?" for c in TEXT_FIELDS)
    db.execute(f"UPDATE records SET {sets} WHERE seq = ?", (*rows[b], a))
    db.execute(f"UPDATE records SET {sets} WHERE seq = ?", (*rows[a], b))
    db.close()
    return Tamper(f"swap records {a} and {b}", (f"record {a} (", f"record {b} ("))


MUTATIONS: list[Callable[[random.Random, Target], Tamper]] = [
    flip_byte,
    truncate_file,
    delete_file,
    add_file,
    flip_ledger_byte,
    truncate_ledger,
    flip_record_field,
    delete_record,
    swap_records,
]


@dataclass(frozen=True)
class Outcome:
    """How verification met one tampering."""

    what: str
    verdict: str  # detected, inert (no record changed), lost (accepted) or crashed
    named: bool = False
    cli_ok: bool | None = None  # `trustai verify` exited 1 naming it; None when not run


def trial(rng: random.Random, copy: Path, public_key: Path, original_rows: list | None, cli: bool) -> Outcome:
    """Tamper with ``copy`` once, verify it (and through `trustai verify` when ``cli``)."""
    folder = rng.choice(sorted(copy.glob("checkpoints/[0-9]*/pretrained_model")))
    ledger = copy / "trustai" / "ledger.sqlite"
    tamper = rng.choice(MUTATIONS)(rng, Target(ledger, folder))
    try:
        report = verify_checkpoint(folder, public_key)
    except Exception as exc:
        return Outcome(f"{tamper.what}: verify raised {type(exc).__name__}: {exc}", "crashed")
    if report.ok:
        # A raw edit may hit SQLite free space or page slack, leaving every record byte-identical.
        inert = tamper.raw_ledger and ledger_rows(ledger) == original_rows
        return Outcome(tamper.what, "inert" if inert else "lost")
    problems = "\n".join(p for c in report.steps for p in c.problems)
    named = any(n in problems for n in tamper.names)
    what = tamper.what if named else f"{tamper.what}: not named in {problems!r}"
    if not cli:
        return Outcome(what, "detected", named)
    result = trustai("verify", folder, "--public-key", public_key)
    cli_ok = result.returncode == 1 and any(n in result.stdout for n in tamper.names)
    if not cli_ok:
        what += f"; `trustai verify` exit {result.returncode}: {result.stdout}{result.stderr}"
    return Outcome(what, "detected", named, cli_ok)


def test_every_tampering_is_detected_and_named(governed: GovernedRun, tmp_path: Path) -> None:
    rng = random.Random(f"{SCALE.seed}-tamper")
    original_rows = ledger_rows(governed.run_dir / "trustai" / "ledger.sqlite")
    cli_every = max(1, SCALE.tamper // SCALE.tamper_cli)
    fig = FIGURES.row("tamper")
    outcomes = []
    for i in range(SCALE.tamper):
        copy = copy_run(governed.run_dir, tmp_path / f"trial-{i}")
        try:
            outcomes.append(trial(rng, copy, governed.public_key, original_rows, cli=i % cli_every == 0))
        finally:
            shutil.rmtree(copy)
    verdicts = [o.verdict for o in outcomes]
    fig.trials += len(outcomes)
    fig.detected += verdicts.count("detected")
    fig.lost += verdicts.count("lost")
    fig.crashed += verdicts.count("crashed")
    named = sum(o.named for o in outcomes)
    by_cli = [o.cli_ok for o in outcomes if o.cli_ok is not None]
    fig.notes.append(f"{named}/{fig.detected} detections named the tampered file or record")
    fig.notes.append(f"{sum(by_cli)}/{len(by_cli)} re-checked through `trustai verify`: exit 1, named")
    fig.notes.append(
        f"{verdicts.count('inert')} raw ledger edits changed no record (SQLite free space, page slack): "
        "nothing to detect"
    )
    failures = [o.what for o in outcomes if o.verdict in ("lost", "crashed") or o.cli_ok is False]
    failures += [o.what for o in outcomes if o.verdict == "detected" and not o.named]
    assert not failures, "\n".join(failures[:20])
