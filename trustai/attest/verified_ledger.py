"""A ledger verified once for everything that cites it: its hash chain walked, its records read and its
anchors checked a single time for all the checkpoints of a run (and the run-wide verdict), not once
per checkpoint.

Every use reads the ledger's stored rows again, in one statement, and reuses an earlier walk only when
those rows are, value for value, the rows it walked, or begin with them (a live run appended records:
only the new ones are walked). An edit anywhere in the chain, a truncation, a rewrite with recomputed
hashes or another ledger put at the same path is walked afresh: only re-hashing is saved, never the
comparison with what is stored now. A walk that found any problem is never reused.
"""

import threading
from collections import OrderedDict
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

from trustai.attest.anchor import AnchorCheck, check_anchors_with
from trustai.attest.keys import key_fingerprint, load_public_key
from trustai.core.ledger import ChainWalk, Ledger, LedgerReport, Record
from trustai.core.run_record import RunLedger
from trustai.layout import run_dir_of

_KEPT = 4  # ledgers remembered, the least recently verified dropped first


@dataclass
class _Walked:
    """One walked state of a ledger, and its anchors' verdict per public key fingerprint."""

    walk: ChainWalk
    by_seq: dict[int, Record]
    anchors: dict[str | None, AnchorCheck] = field(default_factory=dict)


_walked: OrderedDict[Path, _Walked] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class VerifiedLedger:
    """One state of a ledger: the verdict over its chain, its records as a run and by seq, and its
    anchors' verdict (``anchors``)."""

    chain: LedgerReport
    run: RunLedger
    records: Mapping[int, Record]
    _state: _Walked

    def anchors(self, public_key: Path | None) -> AnchorCheck:
        """``check_anchors`` over this state, worked out once per public key. TrustaiUserError when
        ``public_key`` holds no EC public key."""
        key = load_public_key(public_key) if public_key is not None else None
        name = key_fingerprint(key) if key is not None else None
        found = self._state.anchors.get(name)
        if found is None:
            found = self._state.anchors[name] = check_anchors_with(self.run, key)
        return deepcopy(found)  # callers may add to its lists


def _reused(known: _Walked, rows: list[tuple]) -> _Walked | None:
    """``known`` when ``rows`` are the rows it walked; a copy extended by the rows after them when
    ``rows`` begin with them; None when they do not (or ``known`` found a problem)."""
    done = known.walk.rows
    # A walk without problems holds only text and a null stage, which equal only themselves; a seq
    # could equal a number of another type (1.0 == 1) that the walk names, so its type is compared too.
    if known.walk.problems or rows[: len(done)] != done or any(type(r[0]) is not int for r in rows):
        return None
    if len(rows) == len(done):
        return known
    walk = known.walk.copy()
    walk.extend(rows[len(done) :])
    return _Walked(walk, _by_seq(walk.records[len(done) :], dict(known.by_seq)))


def _by_seq(records: list[Record], into: dict[int, Record]) -> dict[int, Record]:
    """``into`` with each record added under its seq (the first one kept, as ``Ledger.get`` finds it)."""
    for record in records:
        into.setdefault(record.seq, record)
    return into


def read_verified(ledger: Ledger) -> VerifiedLedger:
    """The open ledger as stored now, its chain walked (an earlier walk of the same rows reused, see
    the module). TrustaiUserError when the ledger cannot be read."""
    rows = ledger.stored_rows()
    where = ledger.path.resolve()
    with _lock:
        known = _walked.get(where)
    state = _reused(known, rows) if known is not None else None
    if state is None:
        walk = ChainWalk()
        walk.extend(rows)
        state = _Walked(walk, _by_seq(walk.records, {}))
    if not state.walk.problems:
        with _lock:
            _walked[where] = state
            _walked.move_to_end(where)
            while len(_walked) > _KEPT:
                _walked.popitem(last=False)
    run = RunLedger(run_dir_of(ledger.path), ledger.path, state.walk.records)
    return VerifiedLedger(state.walk.report(ledger.path), run, state.by_seq, state)
