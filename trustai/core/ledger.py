"""The evidence ledger: an append-only, hash-chained record of every stage event, evidence and
finding of a run, in SQLite (fsync on every commit).

While a writer has it open the database is in WAL mode, so readers (the dashboard, ``trustai status``)
read a live run beside it; a writer that closes cleanly switches it back to a rollback journal, so a
finished run's ledger is one plain file that read-only commands open without SQLite adding its
``-wal``/``-shm`` side files to the run folder. A writer that crashed leaves its WAL behind: readers
still see every committed record through it, and the next writer to close cleanly folds it in.

Each record's hash covers its sequence number, time, kind, stage, the sha256 of its canonical JSON
payload and the previous record's hash, so an edited, deleted, inserted or reordered record breaks
the chain at a place ``verify`` names. ``verify`` checks internal consistency only: whoever can write
the file can recompute every hash. What holds against such a writer is the ``anchor`` records (a
signature over the head, trustai.attest.anchor), which Governance appends whenever it seals something,
and the signed cards that cite the head they saw.

What each kind of record holds: ``trustai.core.records``; reading a run back: ``trustai.core.run_record``;
where the file lives: ``trustai.layout``.
"""

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from trustai.core.canonical import canonical_json, digest, sha256_hex
from trustai.core.evidence import utc_now
from trustai.core.records import RecordKind, payload_json
from trustai.errors import TrustaiUserError

GENESIS = "0" * 64
_MAX_SEQ = 2**53  # record hashes use canonical JSON, whose integers stop here
# A damaged file fails with DatabaseError, or with UnicodeDecodeError when SQLite's own message quotes
# damaged schema bytes.
_UNREADABLE = (sqlite3.DatabaseError, UnicodeDecodeError)

_SCHEMA = """
BEGIN;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    stage TEXT,
    payload TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'ledger records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'ledger records are append-only'); END;
COMMIT;
"""


@dataclass(frozen=True)
class Record:
    """One ledger record as stored."""

    seq: int
    ts: str
    kind: str  # a RecordKind's value; an edited ledger may hold any text
    stage: str | None
    payload: dict[str, Any]
    payload_sha256: str
    prev_hash: str
    hash: str

    def cite(self) -> dict[str, Any]:
        """Return the reference a card or report uses to cite this record."""
        return {"seq": self.seq, "hash": self.hash, "kind": self.kind}


def record_hash(seq: int, ts: str, kind: str, stage: str | None, payload_sha256: str, prev_hash: str) -> str:
    """Return the chain hash of a record from its header fields."""
    return digest(
        {
            "seq": seq,
            "ts": ts,
            "kind": kind,
            "stage": stage,
            "payload_sha256": payload_sha256,
            "prev_hash": prev_hash,
        }
    )


@dataclass
class LedgerReport:
    """Result of ``Ledger.verify``: ok only when the whole chain holds."""

    path: Path
    records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _parse_payload(value: object) -> dict[str, Any]:
    """Decode a stored payload; a damaged one is returned as ``{"unreadable": ...}`` (verify names it)."""
    if not isinstance(value, str):
        return {"unreadable": repr(value)}
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return {"unreadable": value}
    return parsed if isinstance(parsed, dict) else {"unreadable": value}


_SELECT = "SELECT seq, ts, kind, stage, payload, payload_sha256, prev_hash, hash FROM records"


def _record(row: tuple) -> Record:
    """A stored row as a Record (a damaged payload is kept readable: ``_parse_payload``)."""
    return Record(row[0], row[1], row[2], row[3], _parse_payload(row[4]), row[5], row[6], row[7])


def _lenient_text(data: bytes) -> str:
    """SQLite text as str even when damaged bytes are not UTF-8 (kept as surrogates, so they re-encode
    to the stored bytes and verify names the record instead of failing on the whole table)."""
    return data.decode("utf-8", errors="surrogateescape")


def _field_problem(values: dict[str, object]) -> str | None:
    """Say which field of a stored record is not the text it must be, or None when all are."""
    for name, value in values.items():
        if value is None and name == "stage":
            continue
        if not isinstance(value, str):
            return f"{name} is not text (stored as {type(value).__name__})"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{name} is not valid UTF-8"
    return None


@dataclass
class ChainWalk:
    """The hash chain walked record by record: the rows walked so far (as stored), their records, and
    each problem found. ``extend`` walks rows appended after them without walking the earlier ones
    again; the result is the same as walking all rows at once."""

    rows: list[tuple] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _prev: str | None = GENESIS  # the hash the next record must chain to; None: cannot be checked
    _expected_seq: int = 1

    def copy(self) -> "ChainWalk":
        """An independent copy, to be extended without changing this walk."""
        return replace(self, rows=list(self.rows), records=list(self.records), problems=list(self.problems))

    def report(self, path: Path) -> LedgerReport:
        """The verdict over the rows walked so far, of the ledger at ``path``."""
        return LedgerReport(path, len(self.rows), list(self.problems))

    def extend(self, rows: list[tuple]) -> None:
        """Re-hash each of ``rows`` (the stored rows after those walked so far, in seq order) and check
        that it chains to the record before it; name each record that does not hold."""
        for row in rows:
            self._walk(row)
        self.rows += rows
        self.records += [_record(r) for r in rows]

    def _walk(self, row: tuple) -> None:
        seq, ts, kind, stage, payload, payload_sha, prev_hash, h = row
        if not isinstance(seq, int) or not 0 < seq <= _MAX_SEQ:
            self.problems.append(f"record {seq!r}: sequence number out of range (edited or corrupt)")
            self._prev, self._expected_seq = None, self._expected_seq + 1
            return
        name = f"record {seq} ({'?' if _field_problem({'kind': kind}) else kind})"
        if seq != self._expected_seq:
            self.problems.append(
                f"{name}: expected sequence number {self._expected_seq} (deleted or reordered)"
            )
        self._expected_seq = seq + 1
        fields = {"ts": ts, "kind": kind, "stage": stage, "payload": payload}
        damaged = _field_problem(fields | {"payload_sha256": payload_sha, "prev_hash": prev_hash, "hash": h})
        if damaged:
            self.problems.append(f"{name}: {damaged} (edited or corrupt)")
            self._prev = None  # the next record cannot be checked against this one; do not blame it
            return
        if sha256_hex(payload.encode("utf-8")) != payload_sha:
            self.problems.append(f"{name}: payload was edited (sha256 mismatch)")
        if self._prev is not None and prev_hash != self._prev:
            self.problems.append(f"{name}: does not chain to the record before it (deleted or reordered)")
        if record_hash(seq, ts, kind, stage, payload_sha, prev_hash) != h:
            self.problems.append(f"{name}: header was edited (hash mismatch)")
        self._prev = h


class Ledger:
    """An append-only hash chain in one SQLite file. Safe to share between threads and processes."""

    def __init__(self, path: Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise TrustaiUserError(
                "no ledger here",
                where=str(self.path),
                fix="point at a run folder written by a governed training run or trustai audit",
            )
        self._lock = threading.Lock()
        self._writer = create
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    self.path, check_same_thread=False, isolation_level=None, timeout=30
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
            else:
                # Read-only: verifying must never change the file it was pointed at (a card can name any
                # path as its ledger).
                self._db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    check_same_thread=False,
                    isolation_level=None,
                    timeout=30,
                )
                self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            self._db.text_factory = _lenient_text
        except _UNREADABLE as exc:
            raise TrustaiUserError(
                f"ledger file is not a readable SQLite database ({exc})",
                where=str(self.path),
                fix="restore it from a backup; it cannot be trusted",
            ) from None

    def close(self) -> None:
        """Close the database connection. A writer first switches the database out of WAL mode when no
        other connection has it open (else the last writer to close does), so readers of the finished
        ledger add no side files; with another connection open it stays WAL, which readers read too."""
        with self._lock:
            if self._writer:
                try:
                    self._db.execute("PRAGMA busy_timeout=0")  # another connection open: leave it WAL now
                    self._db.execute("PRAGMA journal_mode=DELETE")
                except sqlite3.Error:
                    pass  # still a consistent WAL database; closing must not fail a run over it
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(
        self, kind: RecordKind, payload: BaseModel | dict[str, Any], stage: str | None = None
    ) -> Record:
        """Append one record of ``kind`` atomically (fsynced on commit) and return it. ``payload`` is
        the kind's model (trustai.core.records) or a dict validated against it (ValidationError)."""
        appended = self.append_on_head(kind, lambda _head: payload, stage)
        assert appended is not None  # the builder above always gives a payload
        return appended

    def append_on_head(
        self,
        kind: RecordKind,
        build: Callable[[Record | None], BaseModel | dict[str, Any] | None],
        stage: str | None = None,
    ) -> Record | None:
        """Append one record whose payload ``build(head)`` makes from the current last record, inside
        the same write transaction, so no other writer (thread or process) appends in between; nothing
        is appended when ``build`` returns None. Returns the record appended, or None."""
        kind = RecordKind(kind)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(f"{_SELECT} ORDER BY seq DESC LIMIT 1").fetchone()
                head = _record(row) if row else None
                payload = build(head)
                if payload is None:
                    self._db.execute("ROLLBACK")
                    return None
                body = canonical_json(payload_json(kind, payload))
                payload_sha = sha256_hex(body)
                seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
                ts = utc_now()
                h = record_hash(seq, ts, kind.value, stage, payload_sha, prev)
                self._db.execute(
                    "INSERT INTO records (seq, ts, kind, stage, payload, payload_sha256, prev_hash, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, ts, kind.value, stage, body.decode(), payload_sha, prev, h),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Record(seq, ts, kind.value, stage, json.loads(body), payload_sha, prev, h)

    def _fetch(self, where: str = "", args: tuple = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(f"{_SELECT} {where} ORDER BY seq", args).fetchall()
        except (*_UNREADABLE, OverflowError) as exc:
            raise TrustaiUserError(
                f"ledger cannot be read ({exc})",
                where=str(self.path),
                fix="run `trustai ledger verify` on the run; a damaged ledger cannot be trusted",
            ) from None

    def _rows(self, where: str = "", args: tuple = ()) -> list[Record]:
        return [_record(r) for r in self._fetch(where, args)]

    def records(self, kind: RecordKind | None = None) -> list[Record]:
        """Return all records in order, or only those of ``kind``."""
        return self._rows("WHERE kind = ?", (RecordKind(kind).value,)) if kind else self._rows()

    def get(self, seq: int) -> Record | None:
        """Return the record with sequence number ``seq``, or None."""
        rows = self._rows("WHERE seq = ?", (seq,))
        return rows[0] if rows else None

    def head(self) -> Record | None:
        """Return the last record, or None for an empty ledger."""
        rows = self._rows("WHERE seq = (SELECT MAX(seq) FROM records)")
        return rows[0] if rows else None

    def stored_rows(self) -> list[tuple]:
        """Every record as stored (its raw column values, in seq order), read in one statement: one
        consistent state of the ledger. TrustaiUserError when the file cannot be read."""
        return self._fetch()

    def verify(self) -> LedgerReport:
        """Re-hash every record and walk the chain; name each record that does not hold."""
        try:
            with self._lock:
                rows = self._db.execute(f"{_SELECT} ORDER BY seq").fetchall()
        except _UNREADABLE as exc:
            return LedgerReport(self.path, problems=[f"ledger file is corrupt: {exc}"])
        walk = ChainWalk()
        walk.extend(rows)
        return walk.report(self.path)
