"""A per-user cache of file sha256 digests, so a start-up can claim a large file's digest without
reading it.

An entry is keyed by the file's absolute path and its identity as ``stat`` reports it (device, inode,
size, mtime_ns, ctime_ns): any write to the file, a replacement, or a restored mtime (which moves
ctime) misses. The cache lives under the user's cache folder (``$TRUSTAI_CACHE_DIR``, else
``$XDG_CACHE_HOME/trustai``, else ``~/.cache/trustai``), never in a run or dataset folder, so a writer of
those cannot plant entries. It is only a shortcut: what it claims is recorded as claimed and re-hashed
off the training path (``provenance.dataset``). A cache that cannot be read or written behaves as empty.
"""

import os
import sqlite3
from pathlib import Path

CACHE_ENV = "TRUSTAI_CACHE_DIR"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER,"
    " mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT)"
)


def cache_dir() -> Path:
    """The user's trustai cache folder (not created)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trustai"


def _key(path: Path) -> str:
    # os.path, not Path.absolute(): a start-up looks up every large file of the dataset.
    return os.path.abspath(path)


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestCache:
    """sha256 digests of files, valid only while the file's stat identity is unchanged."""

    def __init__(self, path: Path | None = None):
        """The cache in the SQLite file ``path`` (default: ``file-digests.sqlite`` in ``cache_dir()``)."""
        self.path = Path(path) if path is not None else cache_dir() / "file-digests.sqlite"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        db.execute(_SCHEMA)
        return db

    def lookup(self, files: list[tuple[Path, os.stat_result]]) -> dict[Path, str]:
        """The cached digest of each ``(path, stat)`` whose entry matches that stat exactly; files
        without a matching entry are left out (and all of them when the cache cannot be read)."""
        if not files:
            return {}
        found: dict[Path, str] = {}
        try:
            db = self._connect()
            try:
                for path, st in files:
                    row = db.execute(
                        "SELECT dev, ino, size, mtime_ns, ctime_ns, sha256 FROM digests WHERE path = ?",
                        (_key(path),),
                    ).fetchone()
                    if row is not None and tuple(row[:5]) == _identity(st):
                        found[path] = row[5]
            finally:
                db.close()
        except (sqlite3.Error, OSError):
            return {}
        return found

    def store(self, entries: list[tuple[Path, os.stat_result, str]]) -> bool:
        """Remember ``(path, stat, sha256)`` for each file hashed while its stat was ``stat``; False when
        the cache could not be written (nothing else happens)."""
        if not entries:
            return True
        rows = [(_key(p), *_identity(st), sha) for p, st, sha in entries]
        try:
            db = self._connect()
            try:
                db.execute("BEGIN")
                db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            finally:
                db.close()
        except (sqlite3.Error, OSError):
            return False
        return True
