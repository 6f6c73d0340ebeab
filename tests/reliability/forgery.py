"""What a forger with write access to a run (but not its signing key) can do with trustai's own code:
rewrite a ledger with the hash chain recomputed, write a whole new ledger, change weights so they still
load; and the `trustai` command line, run in this process so a trial costs no interpreter start."""

import contextlib
import io
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from tests.reliability.runs import open_ledger_for_edit
from trustai.cli import main
from trustai.core.canonical import canonical_json, file_sha256, sha256_hex
from trustai.core.ledger import GENESIS, Ledger, record_hash


@dataclass(frozen=True)
class Entry:
    """A ledger record before it is numbered and chained."""

    ts: str
    kind: str
    stage: str | None
    payload: dict[str, Any]

    def edit(self, **changes: Any) -> "Entry":
        """This entry with ``changes`` merged into its payload."""
        return replace(self, payload={**self.payload, **changes})


def entries(ledger: Path) -> list[Entry]:
    """Every record of ``ledger`` as an entry, in order."""
    with Ledger(ledger, create=False) as opened:
        return [Entry(r.ts, r.kind, r.stage, r.payload) for r in opened.records()]


def rechain(ledger: Path, chain: list[Entry]) -> list[str]:
    """Replace every record of ``ledger`` (created when missing) with ``chain``, numbered from 1 and
    hashed exactly as ``Ledger.append`` does, so the chain alone holds; return the records' hashes."""
    Ledger(ledger).close()  # the schema, when the file is new
    db = open_ledger_for_edit(ledger)
    db.execute("BEGIN")
    db.execute("DELETE FROM records")
    hashes = [GENESIS]
    for seq, entry in enumerate(chain, 1):
        body = canonical_json(entry.payload)
        payload_sha = sha256_hex(body)
        hashes.append(record_hash(seq, entry.ts, entry.kind, entry.stage, payload_sha, hashes[-1]))
        db.execute(
            "INSERT INTO records (seq, ts, kind, stage, payload, payload_sha256, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, entry.ts, entry.kind, entry.stage, body.decode(), payload_sha, hashes[-2], hashes[-1]),
        )
    db.execute("COMMIT")
    db.close()
    return hashes[1:]


def nudge_weights(model: Path) -> str:
    """Change the first value of one floating-point tensor of ``model/model.safetensors`` (rewritten as
    a new file, so a hard-linked original stays as it was); it still loads. Returns the tensor name."""
    path = model / "model.safetensors"
    with safe_open(path, "pt") as weights:
        metadata = weights.metadata()
        tensors = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118
    name = next(n for n, t in sorted(tensors.items()) if t.is_floating_point() and t.numel())
    first = tensors[name].view(-1)
    first[0] = 2.0 if first[0].item() == 1.0 else 1.0  # a value it does not hold, whatever the dtype
    before = file_sha256(path)
    path.unlink()
    save_file(tensors, path, metadata=metadata)
    assert file_sha256(path) != before, f"{path} did not change"
    return name


def trustai_here(*args: object) -> tuple[int, str]:
    """Run the `trustai` command line in this process; return its exit code and everything it printed."""
    out = io.StringIO()
    argv = sys.argv
    sys.argv = ["trustai", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                main()
                code = 0
            except SystemExit as exited:
                code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue()


def says(output: str, name: str, *, besides: tuple[str, ...] = ()) -> bool:
    """True when ``output`` names ``name`` (any case; a number in it not part of a longer number),
    ignoring how the console wrapped lines and every occurrence of the paths in ``besides`` (the
    command's own arguments, which it echoes whatever it found)."""
    text = re.sub(r"\s+", "", output)
    for path in besides:
        text = text.replace(re.sub(r"\s+", "", path), "")
    pattern = rf"(?<!\d){re.escape(re.sub(r'\s+', '', name))}(?!\d)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def names_records(output: str, seqs: Iterable[int]) -> bool:
    """True when ``output`` names one of the ledger records ``seqs``, alone (``record 12``) or in a
    range (``records 10-14``)."""
    wanted = set(seqs)
    text = " ".join(output.split())
    for named in re.finditer(r"records? (\d+)(?: ?(?:-|–|\.\.|to) ?(\d+))?", text, re.IGNORECASE):
        low, high = int(named[1]), int(named[2] or named[1])
        if wanted & set(range(low, high + 1)):
            return True
    return False
