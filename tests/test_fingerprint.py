"""Start-up fingerprints from claimed digests (hub cache, per-user digest cache) and the full re-hash
that checks them off the training path: a wrong claim is a `fail` finding, never a pass. A cold start
(a large file pending) through Ray Train's callback: the datasheet names the check that verifies the
fingerprint, and the card states the verified fingerprint, or says it is pending."""

import hashlib
import json
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


VERIFYING_PACK = (
    INTEGRITY_PACK
    + """  - {id: datasheet, audit: data.datasheet, stage: data, params: {audits: []}, severity: info}
  - {id: provenance, audit: provenance.manifest, stage: checkpoint, severity: warn}
"""
)


def tiny_model(folder: Path) -> Path:
    """A model folder to seal: a config and a weights file."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"type": "act"}\n')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 16)
    return folder


@pytest.fixture
def cold(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dataset with a sparse 3 MiB file no digest source knows (an empty digest cache)."""
    monkeypatch.setenv("TRUSTAI_CACHE_DIR", str(tmp_path / "user-cache"))
    (dataset / PADDING).unlink()
    with open(dataset / PADDING, "wb") as sparse:
        sparse.truncate(3 << 20)
    return dataset


def test_ray_train_starts_without_reading_a_large_file_and_its_card_carries_the_verified_fingerprint(
    cold, tmp_path
):
    """Ray Train's callback claims digests as `trustai train` does: the large file is `pending` in the
    manifest, the data stage's provenance.dataset verifies it, the datasheet names that check instead
    of re-reading, and the signed card states the verified fingerprint, citing that evidence."""
    import ray.train
    from trustai.training_hooks.ray_train import GovernanceCallback

    from trustai.attest.keys import generate_keypair
    from trustai.attest.verify import verify_checkpoint

    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    (tmp_path / "pack.yaml").write_text(VERIFYING_PACK)
    run_dir = tmp_path / "run"
    callback = GovernanceCallback(
        run_dir, str(tmp_path / "pack.yaml"), signing_key=tmp_path / "k.pem", dataset_root=cold
    )
    model = tiny_model(tmp_path / "ray" / "checkpoint_000000" / "pretrained_model")
    callback.after_report(None, [{"loss": 1.0, "step": 2}], ray.train.Checkpoint.from_directory(model.parent))
    governance = callback._governance()
    try:
        [start] = governance.ledger.records(RecordKind.RUN_START)
        evidence = {r.payload["audit"]: r for r in governance.ledger.records(RecordKind.EVIDENCE)}
        assert governance.ledger.records(RecordKind.HOOK_ERROR) == []
    finally:
        governance.close()
    recorded = start.payload["manifest"]["dataset"]
    files = {path: (sha, source) for path, _, sha, source in recorded["digests"]["files"]}
    assert files[PADDING] == (None, "pending") and recorded["fingerprint"] is None
    truth = dataset_fingerprint(cold)
    verified = evidence["provenance.dataset"]
    assert verified.payload["tables"]["fingerprint"] == [{"claimed": None, "verified": truth}]

    sheet = run_dir / "trustai" / "artifacts" / "data-0-datasheet" / "datasheet.md"
    answer = sheet.read_text().split("How can a copy be checked")[1]
    assert "pending when this datasheet was written (1 of" in answer and "provenance.dataset" in answer
    assert truth not in answer

    card = json.loads((model / "trustai" / "card.json").read_text())
    assert card["training_data"]["fingerprint"] == truth
    assert card["training_data"]["fingerprint_record"] == verified.cite()
    assert f"fingerprint `{truth}` (ledger record {verified.seq})" in (model / "README.md").read_text()
    assert verify_checkpoint(model, tmp_path / "k.pub").ok


def test_a_card_sealed_before_the_data_stage_says_the_fingerprint_is_pending(cold, tmp_path):
    governance = Governance(tmp_path / "run", parse_pack(VERIFYING_PACK, "verifying.yaml"))
    try:
        manifest = governance.training_manifest(cold, "ds", train_config={"steps": 2}, seed=0)
        governance.start(manifest)
        model = tiny_model(tmp_path / "run" / "checkpoints" / "000002" / "pretrained_model")
        card = json.loads(governance.seal(model, step=2).read_text())
    finally:
        governance.close()
    assert manifest["dataset"]["digests"]["sources"]["pending"] == 1
    assert card["training_data"]["fingerprint"] == "pending: verified by provenance.dataset"
    assert "fingerprint `pending: verified by provenance.dataset`" in (model / "README.md").read_text()


# -- the verified fingerprint in reports and monitoring --------------------------------------------------

FINGERPRINT = "Data set fingerprint (content sha256)"
MONITORED_PACK = INTEGRITY_PACK + (
    "  - {id: field-quality, audit: data.quality, stage: monitor, severity: warn}\n"
)


def cold_run(dataset: Path, run_dir: Path, *, verified: bool) -> Path:
    """A run started on ``dataset`` as the training hooks start one (a large file pending), its data stage
    run when ``verified``, and a checkpoint sealed at step 2."""
    governance = Governance(run_dir, parse_pack(MONITORED_PACK, "monitored.yaml"))
    try:
        config = {"dataset": {"repo_id": "ds", "root": str(dataset)}}
        manifest = governance.training_manifest(dataset, "ds", train_config=config, seed=0)
        assert manifest["dataset"]["fingerprint"] is None
        governance.start(manifest)
        if verified:
            governance.run_stage(Stage.DATA, step=0, dataset=dataset, manifest=manifest)
        governance.seal(tiny_model(run_dir / "checkpoints" / "000002" / "pretrained_model"), step=2)
        found = [r for r in governance.ledger.records(RecordKind.EVIDENCE) if r.payload["stage"] == "data"]
    finally:
        governance.close()
    assert [r.payload["audit"] for r in found] == (["provenance.dataset"] if verified else [])
    return run_dir


def dataset_check(run_dir: Path):
    """The run's provenance.dataset evidence record."""
    from trustai.core.run_record import RunLedger

    run = RunLedger.load(run_dir / "trustai" / "ledger.sqlite")
    [item] = [i for i in run.evidence if i.payload["audit"] == "provenance.dataset"]
    return item.record


def test_a_report_on_a_cold_start_states_the_verified_fingerprint_and_the_record_that_verified_it(
    cold, tmp_path
):
    from trustai.reports.build import build_report

    def facts(run_dir: Path) -> dict:
        doc = build_report(run_dir, "eu-ai-act")
        return {f.label: f for s in doc.sections for f in s.content.facts}

    pending = facts(cold_run(cold, tmp_path / "pending", verified=False))  # before the cache knows it
    assert pending[FINGERPRINT].value.startswith("pending: 1 of ")
    assert "no provenance.dataset evidence has verified it yet" in pending[FINGERPRINT].value
    assert "Fingerprint verified by" not in pending

    run_dir = cold_run(cold, tmp_path / "run", verified=True)
    verified, stated = dataset_check(run_dir), facts(run_dir)
    assert stated[FINGERPRINT].value == dataset_fingerprint(cold)
    assert [c.seq for c in stated[FINGERPRINT].cites] == [verified.seq]
    assert stated["Fingerprint verified by"].value.startswith("provenance.dataset (data stage) re-read")
    assert stated["Fingerprint verified by"].cites[0].hash == verified.hash


def test_monitoring_a_cold_start_compares_the_training_data_with_the_verified_fingerprint(
    cold, tmp_path, monkeypatch
):
    from trustai.cli.monitor import monitor_run
    from trustai.errors import TrustaiUserError

    monkeypatch.setenv("TRUSTAI_HOME", str(tmp_path / "home"))  # no default key: the runs stay unanchored
    current = Path(shutil.copytree(cold, tmp_path / "field"))
    unverified = monitor_run(cold_run(cold, tmp_path / "pending", verified=False), current)
    reason = "pending at start-up and no provenance.dataset evidence verified it"
    assert unverified.reference.status == "inconclusive" and reason in unverified.reference.message

    run_dir = cold_run(cold, tmp_path / "run", verified=True)
    done = monitor_run(run_dir, current)
    assert done.reference.status == "pass" and done.reference.record == dataset_check(run_dir)
    assert [f.check_id for f in done.findings] == ["field-quality"]
    with open(cold / PADDING, "r+b") as padding:
        padding.write(b"changed")  # the training data changed since the run, in the file read only later
    with pytest.raises(TrustaiUserError, match=r"changed since the run.*verified by provenance\.dataset"):
        monitor_run(run_dir, current)


def test_a_forged_verified_fingerprint_appended_by_a_writer_fails_verify_and_the_report(cold, tmp_path):
    """A writer without the private key chains a provenance.dataset record with another dataset's
    fingerprint after the run closed, so that the card lookup, the report and monitor would take it as
    the verified one: the ledger's unanchored tail fails `trustai ledger verify` and marks the report
    tampered."""
    from trustai.reports.build import build_report

    from trustai.attest.card import training_fingerprint
    from trustai.attest.keys import generate_keypair
    from trustai.attest.verify import verify_ledger
    from trustai.core.ledger import Ledger
    from trustai.core.run_record import RunLedger

    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    run_dir = tmp_path / "run"
    governance = Governance(run_dir, parse_pack(MONITORED_PACK, "p.yaml"), signing_key=tmp_path / "k.pem")
    try:
        manifest = governance.training_manifest(cold, "ds", train_config={}, seed=0)
        governance.start(manifest)
        governance.run_stage(Stage.DATA, step=0, dataset=cold, manifest=manifest)
    finally:
        governance.close()
    ledger_path = run_dir / "trustai" / "ledger.sqlite"
    assert not verify_ledger(ledger_path, tmp_path / "k.pub").problems

    genuine = dataset_check(run_dir)
    forged = json.loads(json.dumps(genuine.payload).replace(dataset_fingerprint(cold), "0" * 64))
    assert forged != genuine.payload
    with Ledger(ledger_path) as ledger:  # the writer uses trustai's own code: the chain stays intact
        ledger.append(RecordKind.EVIDENCE, forged, stage="data")
    run = RunLedger.load(ledger_path)
    taken = training_fingerprint(run.manifest, run.start, run.evidence, "provenance.dataset")
    assert taken.value == "0" * 64  # the lookup alone would take the forgery: integrity must stop it

    verdict = verify_ledger(ledger_path, tmp_path / "k.pub")
    assert any("anchor" in p or "unanchored" in p for p in verdict.problems), verdict.problems
    assert build_report(run_dir, "eu-ai-act", public_key=tmp_path / "k.pub").tampered
