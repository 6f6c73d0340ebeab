import sqlite3

import pytest

from trustai.errors import TrustaiUserError
from trustai.ledger import Ledger


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "trustai" / "ledger.sqlite")
    for i in range(5):
        led.append("evidence", {"i": i, "metrics": {"x": i / 3}}, stage="data")
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
    assert [r.payload["i"] for r in ledger.records()] == [0, 1, 2, 3, 4]


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
