import hashlib
import math
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest
from pydantic import ValidationError

from trustai.core.canonical import canonical_json
from trustai.core.evidence import Evidence, Finding, Severity, Stage, Status, ThresholdResult
from trustai.core.ledger import ChainWalk, Ledger
from trustai.core.records import (
    CardRecord,
    FindingRecord,
    HookError,
    PackDigest,
    PackRecord,
    PrivacyStop,
    RecordKind,
    RunEnd,
    RunStart,
    StageEvent,
)
from trustai.errors import TrustaiUserError


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "trustai" / "ledger.sqlite")
    for i in range(5):
        led.append(RecordKind.STAGE, StageEvent(stage=Stage.DATA, step=i), stage="data")
    yield led
    led.close()


def raw(led):
    """A second connection without the append-only triggers, as an attacker with file access has."""
    db = sqlite3.connect(led.path, isolation_level=None)
    db.execute("DROP TRIGGER records_no_update")
    db.execute("DROP TRIGGER records_no_delete")
    return db


def test_intact_chain_verifies(ledger):
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.records == 5
    assert ledger.head().seq == 5
    assert [r.payload["step"] for r in ledger.records()] == [0, 1, 2, 3, 4]


def test_append_only_triggers_refuse_update_and_delete(ledger):
    db = sqlite3.connect(ledger.path, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE records SET payload = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM records WHERE seq = 2")


def test_edited_payload_is_named(ledger):
    raw(ledger).execute("""UPDATE records SET payload = '{"i":99,"metrics":{"x":0}}' WHERE seq = 3""")
    problems = ledger.verify().problems
    assert any(p.startswith("record 3 ") and "edited" in p for p in problems), problems


def test_single_byte_flip_in_payload_is_named(ledger):
    db = raw(ledger)
    payload = db.execute("SELECT payload FROM records WHERE seq = 4").fetchone()[0]
    flipped = payload.replace("3", "4", 1)
    assert flipped != payload
    db.execute("UPDATE records SET payload = ? WHERE seq = 4", (flipped,))
    assert any(p.startswith("record 4 ") for p in ledger.verify().problems)


def test_deleted_record_is_named(ledger):
    raw(ledger).execute("DELETE FROM records WHERE seq = 2")
    problems = ledger.verify().problems
    assert any("record 3 " in p and ("deleted" in p or "chain" in p) for p in problems), problems


def test_reordered_records_are_named(ledger):
    db = raw(ledger)
    rows = {r[0]: r[1:] for r in db.execute("SELECT seq, payload, payload_sha256 FROM records")}
    db.execute("UPDATE records SET payload = ?, payload_sha256 = ? WHERE seq = 2", rows[3])
    db.execute("UPDATE records SET payload = ?, payload_sha256 = ? WHERE seq = 3", rows[2])
    problems = ledger.verify().problems
    assert any(p.startswith("record 2 ") for p in problems) and any(
        p.startswith("record 3 ") for p in problems
    )


def test_missing_ledger_is_a_user_error(tmp_path):
    with pytest.raises(TrustaiUserError, match="no ledger"):
        Ledger(tmp_path / "nope.sqlite", create=False)


def test_corrupt_file_is_reported_not_raised(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(TrustaiUserError, match="not a readable SQLite"):
        Ledger(path, create=False).verify()


def test_a_chain_walked_in_pieces_names_what_one_walk_names(ledger):
    """A walk extended by the rows appended since (how a live run is verified again) says exactly what
    walking every row at once says, wherever the cut falls, on a chain with an edit and a gap."""
    db = raw(ledger)
    db.execute("""UPDATE records SET payload = '{"edited":1}' WHERE seq = 2""")
    db.execute("DELETE FROM records WHERE seq = 4")
    whole = ledger.verify()
    assert len(whole.problems) >= 2, whole.problems
    rows = ledger.stored_rows()
    for cut in range(len(rows) + 1):
        walk = ChainWalk()
        walk.extend(rows[:cut])
        extended = walk.copy()
        extended.extend(rows[cut:])
        assert extended.report(ledger.path) == whole
        assert [r.seq for r in extended.records] == [r.seq for r in ledger.records()]
        assert len(walk.rows) == cut  # the copy was extended, not the walk it came from


def _beside(path):
    """The files in the ledger's folder: the ledger and whatever SQLite put next to it."""
    return sorted(p.name for p in path.parent.iterdir())


def _stage(led, step):
    return led.append(RecordKind.STAGE, StageEvent(stage=Stage.DATA, step=step), stage="data")


def test_a_closed_ledger_is_one_file_that_readers_add_nothing_to(tmp_path):
    """While written the ledger is WAL (readers read beside the writer); once its writer closed it is a
    plain database: a read-only open, read, verify and close, ours or SQLite's own, leave it alone."""
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        _stage(led, 0)
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        with Ledger(path, create=False) as reader:  # a dashboard reading a live run
            assert [r.seq for r in reader.records()] == [1]
        _stage(led, 1)
    assert _beside(path) == ["ledger.sqlite"]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with Ledger(path, create=False) as reader:
        assert [r.seq for r in reader.records()] == [1, 2] and reader.verify().ok
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT count(*) FROM records").fetchone() == (2,)
    assert _beside(path) == ["ledger.sqlite"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_the_last_of_two_writers_to_close_makes_it_one_file(tmp_path):
    path = tmp_path / "ledger.sqlite"
    first, second = Ledger(path), Ledger(path)
    _stage(first, 0)
    first.close()  # the other writer still has it open: it stays WAL, and closing does not fail
    _stage(second, 1)
    second.close()
    assert _beside(path) == ["ledger.sqlite"]
    with Ledger(path, create=False) as reader:
        assert [r.payload["step"] for r in reader.records()] == [0, 1] and reader.verify().ok


CRASHING_WRITER = """
import os, sys
from trustai.core.evidence import Stage
from trustai.core.ledger import Ledger
from trustai.core.records import RecordKind, StageEvent
led = Ledger(sys.argv[1])
for step in range(3):
    led.append(RecordKind.STAGE, StageEvent(stage=Stage.DATA, step=step), stage="data")
os._exit(9)  # killed: never closed
"""


def test_a_crashed_writers_records_are_all_read_and_the_next_writer_folds_them_in(tmp_path):
    path = tmp_path / "ledger.sqlite"
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], check=False, timeout=120)
    assert "ledger.sqlite-wal" in _beside(path)  # the committed records sit in the WAL it left
    with Ledger(path, create=False) as reader:
        assert [r.payload["step"] for r in reader.records()] == [0, 1, 2] and reader.verify().ok
    with Ledger(path) as resumed:
        _stage(resumed, 3)
    assert _beside(path) == ["ledger.sqlite"]
    with Ledger(path, create=False) as reader:
        assert [r.payload["step"] for r in reader.records()] == [0, 1, 2, 3] and reader.verify().ok


EVIDENCE = Evidence(
    audit="testing.curves",
    audit_version="1",
    stage=Stage.CHECKPOINT,
    check_id="curves",
    metrics={"accuracy": 0.75, "worst": math.inf},
    tables={"curve": [{"severity": 1, "accuracy": math.nan}]},
)
FINDING = Finding(
    check_id="curves",
    audit="testing.curves",
    stage=Stage.CHECKPOINT,
    status=Status.WARN,
    severity=Severity.WARN,
    message="accuracy 0.75 < 0.9",
    thresholds=[ThresholdResult(metric="accuracy", op="min", limit=0.9, value=0.75, held=False)],
    evidence_digest=EVIDENCE.digest(),
)
CITED = {"seq": 3, "hash": "ab" * 32, "kind": "evidence"}
CHECKS = [{"id": "curves", "stage": "checkpoint", "thresholds": {"accuracy": {"min": 0.9, "max": None}}}]
PACK = {"name": "p", "version": 2, "digest": "cd" * 32, "source": "p.yaml", "checks": CHECKS}
MANIFEST = {"seed": 7, "train_config": {"lr": math.nan, "steps": [1, 2]}, "resume": {"sealed_steps": [2]}}
CARD = {"checkpoint": "checkpoints/000004/pretrained_model", "step": 4, "release": True, "card_digest": "f"}
STOP = {
    "step": 3,
    "steps_planned": 10,
    "epsilon": 7.9,
    "target_epsilon": 8.0,
    "delta": 1e-5,
    "checkpoint": "c",
}
END = {"steps": 8, "ranks": 1, "audits_finished_in_time": True, "setup_s": 0.5, "loop_blocked_s": 0.0}
AUDIT = {"trigger": "trustai audit", "policy_pack": {"name": "p", "digest": "e"}}
# (kind, the typed payload, the dict the writers stored before the payloads were typed)
WRITTEN_BEFORE = [
    (
        RecordKind.RUN_START,
        RunStart(policy_pack=PackRecord(**PACK), manifest=MANIFEST),
        {"policy_pack": PACK, "manifest": MANIFEST},
    ),
    (RecordKind.STAGE, StageEvent(stage=Stage.DATA, step=0), {"stage": "data", "step": 0}),
    (RecordKind.STAGE, StageEvent(stage=Stage.RELEASE, step=None), {"stage": "release", "step": None}),
    (
        RecordKind.STAGE,
        StageEvent(
            stage=Stage.CHECKPOINT,
            step=4,
            trigger="trustai audit",
            policy_pack=PackDigest(name="p", digest="e"),
        ),
        {"stage": "checkpoint", "step": 4, **AUDIT},
    ),
    (RecordKind.EVIDENCE, EVIDENCE, EVIDENCE.canonical()),
    (
        RecordKind.FINDING,
        FindingRecord(**FINDING.model_dump(), evidence_record=CITED),
        {**FINDING.canonical(), "evidence_record": CITED},
    ),
    (RecordKind.CARD, CardRecord(**CARD, signed=False), {**CARD, "signed": False}),
    (RecordKind.PRIVACY_STOP, PrivacyStop(**STOP), STOP),
    (
        RecordKind.HOOK_ERROR,
        HookError(hook="_on_barrier", error="OSError('disk full')"),
        {"hook": "_on_barrier", "error": "OSError('disk full')"},
    ),
    (
        RecordKind.RUN_END,
        RunEnd(**END, release_wait_s=1.25, release_checkpoint=None),
        {**END, "release_wait_s": 1.25, "release_checkpoint": None},
    ),
    (
        RecordKind.RUN_END,
        RunEnd(trainer="ray", release_checkpoint="/r/c"),
        {"trainer": "ray", "release_checkpoint": "/r/c"},
    ),
]


@pytest.mark.parametrize(("kind", "typed", "before"), WRITTEN_BEFORE)
def test_typed_records_store_the_bytes_their_writers_stored_before(tmp_path, kind, typed, before):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        from_model = ledger.append(kind, typed)
        from_dict = ledger.append(kind, before)
        assert ledger.verify().ok
    stored = sqlite3.connect(tmp_path / "ledger.sqlite").execute("SELECT payload FROM records ORDER BY seq")
    assert [row[0] for row in stored] == [canonical_json(before).decode()] * 2
    assert from_model.payload_sha256 == from_dict.payload_sha256


def test_append_refuses_a_payload_its_kind_does_not_hold(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        with pytest.raises(ValueError, match=r"'run\.begin' is not a valid RecordKind"):
            ledger.append("run.begin", {"manifest": {}})
        with pytest.raises(ValidationError, match="step"):
            ledger.append(RecordKind.STAGE, {"stage": "data"})
        with pytest.raises(ValidationError, match="extra"):
            ledger.append(RecordKind.HOOK_ERROR, {"hook": "h", "error": "e", "when": "now"})
        with pytest.raises(TypeError, match="a finding record takes a FindingRecord, not a Finding"):
            ledger.append(RecordKind.FINDING, FINDING)
        opened = {"policy_pack": PACK, "manifest": {"anything": {"a trainer": ["records"]}}}
        assert ledger.append(RecordKind.RUN_START, opened).payload == opened  # the manifest is open
        assert [r.kind for r in ledger.records()] == ["run.start"]
