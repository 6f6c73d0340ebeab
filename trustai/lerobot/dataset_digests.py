"""A dataset's fingerprint at start-up in time that grows with its number of files, not its bytes, and
the full re-hash that checks it later.

``claim_digests`` gives every content file of a dataset (the files ``dataset_fingerprint`` covers) a
sha256 without reading large files where a digest already exists:

- ``hashed``: read now (files under ``SMALL_FILE`` bytes, or every file when ``fast`` is off);
- ``hub-blob``: a link into a Hugging Face hub cache, ``<cache>/datasets--*/snapshots/<rev>/...`` →
  ``<cache>/datasets--*/blobs/<sha256>``: LFS blobs are stored under their sha256;
- ``hub-download``: a file ``snapshot_download(local_dir=...)`` wrote (LeRobot's ``--dataset.root``
  downloads), whose download metadata names its LFS sha256 and is not older than the file;
- ``digest-cache``: the per-user cache (``trustai.core.digest_cache``), keyed by the file's identity;
- ``pending``: none of these (a large file seen for the first time); its digest comes from the re-hash.

Every claim is a shortcut, never a verdict: ``verify_digests`` reads every byte (files in parallel) and
names each file whose claimed digest is wrong; the ``provenance.dataset`` audit runs it off the training
path and turns a mismatch into a ``fail`` finding.
"""

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustai.core.canonical import file_sha256
from trustai.core.digest_cache import DigestCache
from trustai.lerobot.datasets import INFO_PATH, content_files, fingerprint_of, open_dataset_meta

VERIFYING_AUDIT = "provenance.dataset"  # the audit that re-reads every byte (trustai.audits.provenance)
SMALL_FILE = 1 << 20  # bytes read at start-up per file at most: metadata and small frame files
CLAIM_SOURCES = ("hashed", "hub-blob", "hub-download", "digest-cache", "pending")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HUB_REPO = re.compile(r"(datasets|models|spaces)--.+")
_DOWNLOADS = Path(".cache", "huggingface", "download")  # under a snapshot_download(local_dir=...) folder


@dataclass(frozen=True)
class FileDigest:
    """One content file: its path relative to the dataset root, size, sha256 (None while pending) and
    where that digest came from (one of ``CLAIM_SOURCES``)."""

    path: str
    size: int
    sha256: str | None
    source: str


@dataclass(frozen=True)
class DatasetDigests:
    """Every content file's claimed digest and the fingerprint they make (None while any is pending)."""

    fingerprint: str | None
    files: tuple[FileDigest, ...]

    def record(self) -> dict[str, Any]:
        """JSON for the run manifest: fingerprint, how many digests came from each source, and per file
        ``[path, size, sha256 or None, source]``."""
        return {
            "fingerprint": self.fingerprint,
            "sources": dict(sorted(Counter(f.source for f in self.files).items())),
            "files": [[f.path, f.size, f.sha256, f.source] for f in self.files],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "DatasetDigests":
        """The claims a manifest recorded (``record`` as ``record()`` wrote it)."""
        files = tuple(FileDigest(str(p), int(n), s, str(src)) for p, n, s, src in record.get("files", []))
        return cls(fingerprint=record.get("fingerprint"), files=files)


@dataclass(frozen=True)
class DigestCheck:
    """What re-hashing every byte found: the fingerprint, the bytes read, and each file whose claim was
    wrong (``{path, source, claimed, actual}``; ``claimed`` None for a file added since the claim,
    ``actual`` None for one gone or changed while it was read)."""

    fingerprint: str | None
    files: int
    bytes_read: int
    verified: dict[str, int]  # claims confirmed, per source
    mismatches: list[dict[str, Any]]


def _content_files(root: Path) -> list[tuple[str, Path]]:
    """The files ``dataset_fingerprint`` asks digests for, in its order: every content file but the
    info.json it reads itself (the dataset's metadata is checked first)."""
    open_dataset_meta(root)
    return [(rel, path) for rel, path in content_files(root) if rel != INFO_PATH]


def hub_blob_sha256(path: Path) -> str | None:
    """The sha256 a Hugging Face hub cache stores ``path`` under, when ``path`` is a link from a repo's
    ``snapshots/`` tree to a file in the same repo's ``blobs/`` named by a sha256 (LFS files); else None."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    blobs = target.parent
    repo = blobs.parent
    if blobs.name != "blobs" or not _HUB_REPO.fullmatch(repo.name) or not _SHA256.fullmatch(target.name):
        return None
    if (repo / "snapshots") not in path.parent.resolve().parents or not target.is_file():
        return None
    return target.name


def hub_download_sha256(root: Path, rel: str, st: os.stat_result) -> str | None:
    """The LFS sha256 that ``snapshot_download(local_dir=root)`` recorded for the file at ``rel`` (its
    path under ``root``), when its metadata (``root/.cache/huggingface/download/<rel>.metadata``: commit,
    etag, time) is no older than the file (huggingface_hub's own rule); else None."""
    meta = root / _DOWNLOADS / f"{rel}.metadata"
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
        etag, timestamp = lines[1].strip(), float(lines[2])
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None
    if not _SHA256.fullmatch(etag) or st.st_mtime - 1 > timestamp:
        return None
    return etag


def claim_digests(
    root: Path | str, *, fast: bool = True, cache: DigestCache | None = None, small: int = SMALL_FILE
) -> DatasetDigests:
    """Every content file's digest as cheaply as it can be claimed (see the module docstring); with
    ``fast`` off every file is read, as ``dataset_fingerprint`` does. Reads at most ``small`` bytes
    per file when ``fast``."""
    root = Path(root)
    files = [(rel, p, p.stat()) for rel, p in _content_files(root)]
    large = [(p, st) for _, p, st in files if st.st_size >= small]
    cached = (cache or DigestCache()).lookup(large) if fast else {}
    downloaded = (root / _DOWNLOADS).is_dir()
    claims: dict[Path, FileDigest] = {}
    for rel, path, st in files:
        found: tuple[str | None, str]
        if not fast or st.st_size < small:
            found = (file_sha256(path), "hashed")
        elif sha := hub_blob_sha256(path):
            found = (sha, "hub-blob")
        elif downloaded and (sha := hub_download_sha256(root, rel, st)):
            found = (sha, "hub-download")
        elif path in cached:
            found = (cached[path], "digest-cache")
        else:
            found = (None, "pending")
        claims[path] = FileDigest(rel, st.st_size, *found)
    held = [(c.path, c.sha256) for c in claims.values() if c.sha256 is not None]
    fingerprint = fingerprint_of(root, held) if len(held) == len(claims) else None
    return DatasetDigests(fingerprint=fingerprint, files=tuple(claims.values()))


def _hash_stable(path: Path) -> tuple[os.stat_result | None, str | None]:
    """The file's stat and sha256; sha256 None when the file changed (or vanished) while it was read."""
    try:
        before = path.stat()
        sha = file_sha256(path)
        after = path.stat()
    except OSError:
        return None, None
    changed = (before.st_ino, before.st_size, before.st_mtime_ns) != (
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
    )
    return before, None if changed else sha


def verify_digests(
    root: Path | str,
    claimed: DatasetDigests | None,
    *,
    threads: int | None = None,
    cache: DigestCache | None = None,
    small: int = SMALL_FILE,
) -> DigestCheck:
    """Read every byte of every content file (``threads`` files at a time: sha256 releases the GIL),
    compare each file with its claim in ``claimed``, and remember the digests of files of at least
    ``small`` bytes in ``cache`` (default: the user's), so the next start can claim them."""
    root = Path(root)
    listed = _content_files(root)
    paths = [path for _, path in listed]
    workers = max(1, threads or min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trustai-rehash") as pool:
        hashed = dict(zip(paths, pool.map(_hash_stable, paths), strict=True))
    claims = {f.path: f for f in (claimed.files if claimed else ())}
    mismatches: list[dict[str, Any]] = []
    verified: Counter[str] = Counter()
    for rel, path in listed:
        sha = hashed[path][1]
        claim = claims.get(rel)
        if claimed is not None and (claim is None or sha is None or claim.sha256 not in (None, sha)):
            source, digest = (claim.source, claim.sha256) if claim else (None, None)
            mismatches.append({"path": rel, "source": source, "claimed": digest, "actual": sha})
        elif claim is not None:
            verified[claim.source] += 1
    for rel in sorted(set(claims) - {rel for rel, _ in listed}):
        gone = claims[rel]
        mismatches.append({"path": rel, "source": gone.source, "claimed": gone.sha256, "actual": None})
    read = {p: (st, sha) for p, (st, sha) in hashed.items() if st is not None and sha is not None}
    (cache or DigestCache()).store([(p, st, sha) for p, (st, sha) in read.items() if st.st_size >= small])
    complete = len(read) == len(paths)
    return DigestCheck(
        fingerprint=fingerprint_of(root, [(rel, read[p][1]) for rel, p in listed]) if complete else None,
        files=len(paths),
        bytes_read=sum(st.st_size for st, _ in read.values()),
        verified=dict(sorted(verified.items())),
        mismatches=mismatches,
    )
