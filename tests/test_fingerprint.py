"""Start-up fingerprints from claimed digests (hub cache, per-user digest cache) and the full re-hash
that checks them off the training path: a wrong claim is a `fail` finding, never a pass."""

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from trustai.core.digest_cache import DigestCache
from trustai.core.evidence import Stage
from trustai.core.records import RecordKind
from trustai.governance import Governance
from trustai.lerobot.dataset_digests import claim_digests, verify_digests
from trustai.lerobot.datasets import dataset_fingerprint
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import parse_pack

PADDING = "videos/padding/file-000.mp4"  # a large content file LeRobot never reads
SMALL = 1 << 16  # claims read files below this size (the metadata and frames here); the padding is above

INTEGRITY_PACK = """
name: integrity
version: 1
checks:
  - id: dataset-integrity
    audit: provenance.dataset
    stage: data
    thresholds: {digests_mismatched: {max: 0}}
    severity: block
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_synthetic_dataset(tmp_path_factory.mktemp("fp") / "ds", episodes=2, frames_per_episode=5)
    (root / PADDING).parent.mkdir(parents=True)
    (root / PADDING).write_bytes(os.urandom(1 << 21))  # 2 MiB: above the start-up read limit too
    return root


@pytest.fixture
def dataset(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / "ds"))


@pytest.fixture
def cache(tmp_path: Path) -> DigestCache:
    return DigestCache(tmp_path / "cache" / "digests.sqlite")


def sources(claimed) -> dict[str, str]:
    return {f.path: f.source for f in claimed.files}


def test_cold_claim_leaves_large_files_pending_and_the_rehash_fills_the_cache(dataset, cache):
    cold = claim_digests(dataset, cache=cache, small=SMALL)
    assert sources(cold)[PADDING] == "pending" and cold.fingerprint is None
    small = [f.source for f in cold.files if f.size < SMALL]
    assert small and set(small) == {"hashed"}
    check = verify_digests(dataset, cold, cache=cache, small=SMALL)
    assert check.mismatches == [] and check.fingerprint == dataset_fingerprint(dataset)
    warm = claim_digests(dataset, cache=cache, small=SMALL)
    assert sources(warm)[PADDING] == "digest-cache"
    assert warm.fingerprint == dataset_fingerprint(dataset)


@pytest.mark.parametrize("restore_mtime", [False, True])
def test_a_rewritten_file_of_the_same_size_is_not_claimed_from_the_cache(dataset, cache, restore_mtime):
    verify_digests(dataset, None, cache=cache, small=SMALL)
    padding = dataset / PADDING
    before = padding.stat()
    time.sleep(0.05)  # past the file-system clock's tick, so the rewrite gets new times
    padding.write_bytes(os.urandom(before.st_size))
    if restore_mtime:  # only ctime, which no user call can set back, still tells the rewrite apart
        os.utime(padding, ns=(before.st_atime_ns, before.st_mtime_ns))
    claimed = claim_digests(dataset, cache=cache, small=SMALL)
    assert sources(claimed)[PADDING] == "pending"
    check = verify_digests(dataset, claimed, cache=cache, small=SMALL)
    assert check.fingerprint == dataset_fingerprint(dataset)


def test_a_poisoned_cache_entry_is_claimed_and_then_caught(dataset, cache):
    padding = dataset / PADDING
    cache.store([(padding, padding.stat(), "0" * 64)])
    claimed = claim_digests(dataset, cache=cache, small=SMALL)
    assert sources(claimed)[PADDING] == "digest-cache"
    check = verify_digests(dataset, claimed, cache=cache, small=SMALL)
    actual = hashlib.sha256(padding.read_bytes()).hexdigest()
    assert check.mismatches == [
        {"path": PADDING, "source": "digest-cache", "claimed": "0" * 64, "actual": actual}
    ]
    assert claimed.fingerprint != check.fingerprint == dataset_fingerprint(dataset)


def hub_snapshot(dataset: Path, hub: Path, *, blob_name: str | None = None) -> Path:
    """``dataset`` laid out as a Hugging Face hub cache: the padding file becomes a link from
    ``snapshots/<rev>/`` to ``blobs/<sha256>`` (or ``blob_name``)."""
    repo = hub / "datasets--trustai--ds"
    snapshot = Path(shutil.copytree(dataset, repo / "snapshots" / ("a" * 40)))
    data = (snapshot / PADDING).read_bytes()
    blob = repo / "blobs" / (blob_name or hashlib.sha256(data).hexdigest())
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    (snapshot / PADDING).unlink()
    (snapshot / PADDING).symlink_to(os.path.relpath(blob, (snapshot / PADDING).parent))
    return snapshot


def test_hub_blobs_are_claimed_by_their_name_and_verified(dataset, cache, tmp_path):
    snapshot = hub_snapshot(dataset, tmp_path / "hub")
    claimed = claim_digests(snapshot, cache=cache, small=SMALL)
    assert sources(claimed)[PADDING] == "hub-blob"
    assert claimed.fingerprint == dataset_fingerprint(dataset)
    assert verify_digests(snapshot, claimed, cache=cache, small=SMALL).mismatches == []


def test_a_blob_whose_name_lies_is_caught(dataset, cache, tmp_path):
    snapshot = hub_snapshot(dataset, tmp_path / "hub", blob_name="f" * 64)
    claimed = claim_digests(snapshot, cache=cache, small=SMALL)
    assert sources(claimed)[PADDING] == "hub-blob"
    [mismatch] = verify_digests(snapshot, claimed, cache=cache, small=SMALL).mismatches
    assert (mismatch["path"], mismatch["claimed"]) == (PADDING, "f" * 64)


def test_a_link_outside_the_hub_layout_is_not_trusted(dataset, cache, tmp_path):
    elsewhere = tmp_path / "blobs" / hashlib.sha256((dataset / PADDING).read_bytes()).hexdigest()
    elsewhere.parent.mkdir()
    shutil.move(dataset / PADDING, elsewhere)
    (dataset / PADDING).symlink_to(elsewhere)
    assert sources(claim_digests(dataset, cache=cache, small=SMALL))[PADDING] == "pending"


def test_hub_download_metadata_is_claimed_only_when_not_older_than_the_file(dataset, cache):
    padding = dataset / PADDING
    meta = dataset / ".cache" / "huggingface" / "download" / f"{PADDING}.metadata"
    meta.parent.mkdir(parents=True)
    sha = hashlib.sha256(padding.read_bytes()).hexdigest()
    meta.write_text(f"{'a' * 40}\n{sha}\n{padding.stat().st_mtime + 5}\n")
    assert sources(claim_digests(dataset, cache=cache, small=SMALL))[PADDING] == "hub-download"
    meta.write_text(f"{'a' * 40}\n{sha}\n{padding.stat().st_mtime - 60}\n")
    assert sources(claim_digests(dataset, cache=cache, small=SMALL))[PADDING] == "pending"


def test_a_mismatch_found_off_the_training_path_is_a_fail_finding(dataset, tmp_path, monkeypatch):
    """Through the default training runtime: the data stage returns at once, the worker re-reads the
    dataset, and the wrong digest the cache claimed becomes a `fail`, naming the file."""
    monkeypatch.setenv("TRUSTAI_CACHE_DIR", str(tmp_path / "user-cache"))
    padding = dataset / PADDING
    DigestCache().store([(padding, padding.stat(), "0" * 64)])
    governance = Governance(tmp_path / "run", parse_pack(INTEGRITY_PACK, "integrity.yaml"), runtime="process")
    try:
        claimed = governance.claim_dataset(dataset)
        assert sources(claimed)[PADDING] == "digest-cache"  # claimed, not read: the pack verifies
        manifest = {"dataset": {"id": "ds", "fingerprint": claimed.fingerprint, "digests": claimed.record()}}
        governance.use_dataset(dataset, "ds", claimed.fingerprint)
        governance.start(manifest)
        assert governance.run_stage(Stage.DATA, step=0, dataset=dataset, manifest=manifest) == []
        assert governance.drain(600)
        [finding] = [r.payload for r in governance.ledger.records(RecordKind.FINDING)]
        [evidence] = [r.payload for r in governance.ledger.records(RecordKind.EVIDENCE)]
    finally:
        governance.close()
    assert finding["status"] == "fail", finding
    assert evidence["tables"]["mismatches"][0]["path"] == PADDING
    assert evidence["tables"]["claims"] == [
        {"source": "digest-cache", "claimed": 1, "confirmed": 0},
        {"source": "hashed", "claimed": len(claimed.files) - 1, "confirmed": len(claimed.files) - 1},
    ]
    assert evidence["metrics"]["bytes_read"] >= padding.stat().st_size


def test_without_a_verifying_check_every_byte_is_read_at_start(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("TRUSTAI_CACHE_DIR", str(tmp_path / "user-cache"))
    padding = dataset / PADDING
    DigestCache().store([(padding, padding.stat(), "0" * 64)])
    no_verification = INTEGRITY_PACK.split("  - id:")[0] + (
        "  - {id: provenance, audit: provenance.manifest, stage: checkpoint, severity: warn}\n"
    )
    governance = Governance(tmp_path / "run", parse_pack(no_verification, "no-verification.yaml"))
    claimed = governance.claim_dataset(dataset)
    assert set(sources(claimed).values()) == {"hashed"}
    assert claimed.fingerprint == dataset_fingerprint(dataset)
