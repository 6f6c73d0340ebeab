"""Evidence that holds against someone with the public key and write access to the run folder: a real
governed run is anchored (every record covered by a signed anchor once its stage is over), each card
binds its run, place and step, and a report reads the one ledger its cards cite. Each attack below
fails cleanly: `trustai ledger verify` / `trustai verify` exit 1 naming the record, file or checkpoint,
and `trustai report` exits 1 with the alarm on its first page. A genuine run, `trustai audit` and
`trustai monitor` after training, and a resumed run all still verify."""

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest

from tests.reliability.forgery import Entry, entries, rechain, trustai_here
from tests.reliability.runs import CORE_PACK, core_pack, governed_run, open_ledger_for_edit
from trustai.attest.anchor import AnchorSigner
from trustai.attest.keys import generate_keypair
from trustai.attest.verify import verify_checkpoint, verify_ledger
from trustai.core.canonical import digest
from trustai.core.evidence import Stage
from trustai.core.ledger import ChainWalk, Ledger
from trustai.core.records import CardRecord, RecordKind, StageEvent
from trustai.core.run_record import RunLedger
from trustai.governance import Governance
from trustai.lerobot.synthetic import make_synthetic_dataset

MONITOR_CHECK = """
  - {id: monitor-quality, audit: data.quality, stage: monitor, severity: block,
     thresholds: {nonfinite_state_values: {max: 0}}}
"""
RELEASE = "checkpoints/000004/pretrained_model"
EARLIER = "checkpoints/000002/pretrained_model"


@pytest.fixture(autouse=True)
def no_default_keys(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's own default keys (~/.config/trustai) out of these tests."""
    monkeypatch.setenv("TRUSTAI_HOME", str(tmp_path_factory.mktemp("trustai-home")))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A governed run (checkpoints 000002 and 000004, the release) whose pack has a monitor check."""
    tmp = tmp_path_factory.mktemp("anchor")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    generate_keypair(tmp / "other.pem", tmp / "other.pub")
    dataset = make_synthetic_dataset(
        tmp / "dataset", repo_id="trustai/anchor", episodes=2, frames_per_episode=12, image_size=(24, 32)
    )
    run_dir = governed_run(tmp / "run", dataset, core_pack(MONITOR_CHECK), tmp / "k.pem")
    return {
        "run": run_dir,
        "key": tmp / "k.pem",
        "pub": tmp / "k.pub",
        "other": tmp / "other.pem",
        "dataset": dataset,
    }


def trustai(*args: object) -> tuple[int, str]:
    """The `trustai` command line in this process: exit code, and everything printed with the console's
    line wrapping undone (no whitespace at all)."""
    code, out = trustai_here(*args)
    return code, re.sub(r"\s+", "", out)


def said(text: str) -> str:
    """``text`` as ``trustai`` gives it back: without whitespace."""
    return re.sub(r"\s+", "", text)


def copy_run(run: dict[str, Path], dest: Path) -> Path:
    shutil.copytree(run["run"], dest, ignore=shutil.ignore_patterns("training_state"), symlinks=True)
    return dest


def ledger_of(run_dir: Path) -> Path:
    return run_dir / "trustai" / "ledger.sqlite"


def report(target: Path, pub: Path, out: Path) -> tuple[int, str, str]:
    """`trustai report` as markdown: exit code, what it printed, and the report's first page."""
    code, printed = trustai("report", target, "--format", "md", "-o", out, "--public-key", pub)
    return code, printed, out.read_text(encoding="utf-8")[:6000] if out.is_file() else ""


def assert_refused(run_dir: Path, pub: Path, tmp_path: Path, *names: str, target: Path | None = None) -> None:
    """`trustai report` exits 1, writing the report with the alarm on its first page, naming ``names``."""
    code, printed, page = report(target or run_dir, pub, tmp_path / "report.md")
    assert code == 1, printed
    assert "INTEGRITY FAILURE" in page and said("INTEGRITY FAILURE") in printed
    for name in names:
        assert name in page and said(name) in printed, (name, printed)


# -- what holds ---------------------------------------------------------------------------------------


def test_a_genuine_run_is_anchored_and_verifies(run: dict[str, Path], tmp_path: Path) -> None:
    recorded = RunLedger.load(ledger_of(run["run"]))
    kinds = [r.kind for r in recorded.records]
    assert kinds[-1] == "anchor" and kinds[-2] == "run.end"
    assert all(kinds[i + 1] == "anchor" for i, k in enumerate(kinds) if k == "card")
    uuid.UUID(recorded.run_id)  # a real uuid, and the cards bind it
    for folder in (RELEASE, EARLIER):
        card = json.loads((run["run"] / folder / "trustai" / "card.json").read_text())
        assert card["run"] == {
            "id": recorded.run_id,
            "checkpoint": folder,
            "step": int(folder.split("/")[1]),
            "release": card["model_details"]["release"],
        }
        code, out = trustai("verify", run["run"] / folder, "--public-key", run["pub"])
        assert code == 0, out
    code, out = trustai("ledger", "verify", run["run"], "--public-key", run["pub"])
    assert code == 0 and said("ledger verified") in out, out
    code, printed, page = report(run["run"], run["pub"], tmp_path / "report.md")
    assert code == 0 and "INTEGRITY FAILURE" not in page, printed
    assert f"{RELEASE[: -len('/pretrained_model')]}" in page


def test_without_a_key_ledger_verify_says_it_proves_nothing_against_a_writer(run: dict[str, Path]) -> None:
    code, out = trustai("ledger", "verify", run["run"])
    assert code == 0
    assert said("only the ledger's internal consistency was checked") in out and said("proves nothing") in out


def test_an_unanchored_ledger_reads_but_does_not_verify(run: dict[str, Path], tmp_path: Path) -> None:
    """A ledger written without a signing key (or before anchors) renders, and says it is unanchored."""
    keyless = Governance(tmp_path / "keyless", core_pack(MONITOR_CHECK))
    keyless.start({"seed": 0})
    keyless.run_stage(Stage.MONITOR, dataset=run["dataset"], reference=run["dataset"])
    keyless.close()
    code, out = trustai("ledger", "verify", tmp_path / "keyless", "--public-key", run["pub"])
    assert code == 1 and said("unanchored: none of the ledger's") in out, out
    code, printed, page = report(tmp_path / "keyless", run["pub"], tmp_path / "report.md")
    assert code == 1 and "unanchored" in page, printed


def test_a_resumed_run_keeps_its_run_id_and_anchors_with_one_key(
    run: dict[str, Path], tmp_path: Path
) -> None:
    first = Governance(tmp_path / "resumed", core_pack(), signing_key=run["key"])
    first.start({"seed": 0})
    first.close()  # as a crash would leave it, anchored at close
    resumed = Governance(tmp_path / "resumed", core_pack(), signing_key=run["key"])
    resumed.start({"seed": 0, "resume": {}})
    resumed.close()
    recorded = RunLedger.load(ledger_of(tmp_path / "resumed"))
    assert [s.payload["run_id"] for s in recorded.starts] == [recorded.run_id] * 2
    code, out = trustai("ledger", "verify", tmp_path / "resumed", "--public-key", run["pub"])
    assert code == 0, out


def test_audit_and_monitor_after_training_are_anchored_and_verify(
    run: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    pack = tmp_path / "pack.yaml"
    pack.write_text(CORE_PACK + MONITOR_CHECK)
    code, out = trustai(
        "audit",
        run_dir / "checkpoints" / "000004",
        "--dataset",
        run["dataset"],
        "--pack",
        pack,
        "--key",
        run["key"],
        "--public-key",
        run["pub"],
    )
    assert code == 0, out
    code, out = trustai("monitor", run_dir, "--current", run["dataset"], "--key", run["key"])
    assert code == 0, out
    kinds = [r.kind for r in RunLedger.load(ledger_of(run_dir)).records]
    assert kinds[-1] == "anchor" and kinds.count("stage") > 5
    for folder in (RELEASE, EARLIER):
        code, out = trustai("verify", run_dir / folder, "--public-key", run["pub"])
        assert code == 0, out
    code, out = trustai("ledger", "verify", run_dir, "--public-key", run["pub"])
    assert code == 0, out


def test_monitoring_an_anchored_run_without_its_key_is_refused_before_writing(
    run: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    before = ledger_of(run_dir).read_bytes()
    code, out = trustai("monitor", run_dir, "--current", run["dataset"])
    assert code == 2 and said("without its signing key") in out, out
    code, out = trustai("monitor", run_dir, "--current", run["dataset"], "--key", run["other"])
    assert code == 2 and said("did not sign the run's ledger anchors") in out, out
    assert ledger_of(run_dir).read_bytes() == before


# -- 1: the ledger's tail ------------------------------------------------------------------------------


def _without_last_anchor(chain: list[Entry]) -> list[Entry]:
    assert chain[-1].kind == "anchor"
    return chain[:-1]


@pytest.mark.parametrize("attack", ["edit run.end", "append a passing finding", "append after the anchor"])
def test_an_edited_or_extended_tail_is_an_unanchored_tail(
    run: dict[str, Path], tmp_path: Path, attack: str
) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    chain = entries(ledger_of(run_dir))
    if attack == "edit run.end":
        chain = _without_last_anchor(chain)
        chain[-1] = chain[-1].edit(steps=100_000)
    elif attack == "append a passing finding":
        finding = next(e for e in chain if e.kind == "finding")
        chain = [*_without_last_anchor(chain), finding.edit(status="pass", message="no drift")]
    else:
        chain = [*chain, chain[-2]]  # run.end again, after the last anchor
    rechain(ledger_of(run_dir), chain)
    first, last = max(i for i, e in enumerate(chain) if e.kind == "anchor") + 2, len(chain)
    tail = f"records {first}-{last}" if first < last else f"record {last}"
    code, out = trustai("ledger", "verify", run_dir, "--public-key", run["pub"])
    assert code == 1 and said(f"unanchored tail: {tail} (") in out, out
    code, out = trustai("verify", run_dir / RELEASE, "--public-key", run["pub"])
    assert code == 1 and said(f"unanchored tail: {tail} (") in out, out
    assert_refused(run_dir, run["pub"], tmp_path, "unanchored tail")


def test_truncating_back_to_an_earlier_card_is_named_by_the_later_card(
    run: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    chain = entries(ledger_of(run_dir))
    cut = next(i for i, e in enumerate(chain) if e.kind == "card") + 2  # the first card and its anchor
    rechain(ledger_of(run_dir), chain[:cut])
    code, out = trustai("ledger", "verify", run_dir, "--public-key", run["pub"])
    assert code == 1 and said(f"{RELEASE}/trustai/card.json: cites ledger record") in out, out
    assert said("records after a signed head were removed") in out
    assert_refused(run_dir, run["pub"], tmp_path, f"{RELEASE}: on disk, but no anchored card record")


def test_a_rewritten_chain_no_longer_matches_its_anchors(run: dict[str, Path], tmp_path: Path) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    chain = entries(ledger_of(run_dir))
    at = next(i for i, e in enumerate(chain) if e.kind == "finding")
    chain[at] = chain[at].edit(message="rewritten")
    rechain(ledger_of(run_dir), chain)
    code, out = trustai("ledger", "verify", run_dir)
    assert code == 1 and said("the chain was rewritten") in out, out  # the anchors contradict it, key or not
    code, out = trustai("verify", run_dir / RELEASE, "--public-key", run["pub"])
    assert code == 1 and said("the chain was rewritten") in out, out
    assert_refused(run_dir, run["pub"], tmp_path, "the chain was rewritten")


def test_anchors_re_signed_with_another_key_are_named(run: dict[str, Path], tmp_path: Path) -> None:
    """The forger edits a record and signs fresh anchors over the rewritten chain with a key of their own."""
    run_dir = copy_run(run, tmp_path / "run")
    with Ledger(ledger_of(run_dir), create=False) as ledger:
        records = ledger.records()
    run_id = RunLedger(run_dir, ledger_of(run_dir), records).run_id
    chain = [e for e in entries(ledger_of(run_dir)) if e.kind != "anchor"]
    at = next(i for i, e in enumerate(chain) if e.kind == "finding")
    chain[at] = chain[at].edit(message="forged")
    rechain(ledger_of(run_dir), chain)
    forger = Governance(run_dir, core_pack(), signing_key=run["other"])
    assert forger.run_id == run_id  # read from the rewritten ledger, which stays open for the anchor
    assert forger.anchor("forged") is not None
    forger.close()
    code, out = trustai("ledger", "verify", run_dir, "--public-key", run["pub"])
    fingerprint = AnchorSigner(run["other"]).fingerprint[:16]
    assert code == 1 and said(f"signed by key {fingerprint}") in out, out


# -- 2: rollback and replay ------------------------------------------------------------------------------


def test_an_earlier_checkpoint_copied_over_a_later_one_is_named(run: dict[str, Path], tmp_path: Path) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    shutil.rmtree(run_dir / RELEASE)
    shutil.copytree(run_dir / EARLIER, run_dir / RELEASE)
    code, out = trustai("verify", run_dir / "checkpoints" / "000004", "--public-key", run["pub"])
    assert code == 1, out
    assert said(f"{RELEASE}: holds the card of {EARLIER} (step 2)") in out
    assert said(f"{RELEASE}: rolled back") in out
    assert_refused(run_dir, run["pub"], tmp_path, f"{RELEASE}: holds the card of {EARLIER}")


def test_deleting_the_released_checkpoint_is_named_by_the_report(
    run: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    shutil.rmtree(run_dir / RELEASE)
    code, out = trustai("ledger", "verify", run_dir, "--public-key", run["pub"])
    assert code == 0, out  # the ledger itself is intact; what is missing is on disk
    assert_refused(
        run_dir, run["pub"], tmp_path, f"{RELEASE}: signature and file digests: sealed in the ledger"
    )


def test_a_card_record_appended_without_a_key_does_not_move_the_release(
    run: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    card = json.loads((run_dir / EARLIER / "trustai" / "card.json").read_text())
    with Ledger(ledger_of(run_dir)) as ledger:
        ledger.append(
            RecordKind.CARD,
            CardRecord(checkpoint=EARLIER, step=2, release=True, card_digest=digest(card), signed=True),
            stage="release",
        )
    recorded = RunLedger.load(ledger_of(run_dir))
    assert recorded.release_card is not None and recorded.release_card.payload["checkpoint"] == RELEASE
    code, printed, page = report(run_dir, run["pub"], tmp_path / "report.md")
    assert code == 1 and "unanchored tail" in page, printed
    assert "checkpoints/000004/pretrained_model (step 4, release)" in page


# -- 3: one ledger per report ----------------------------------------------------------------------------


def _forged_ledger(at: Path, checkpoints: dict[str, Path]) -> None:
    """A ledger with no key behind it whose release card records name each checkpoint (name -> folder)."""
    forged = Governance(at, core_pack())
    forged.start({"seed": 0})
    for name, folder in checkpoints.items():
        card = json.loads((folder / "trustai" / "card.json").read_text())
        forged.ledger.append(
            RecordKind.CARD,
            CardRecord(checkpoint=name, step=4, release=True, card_digest=digest(card), signed=True),
            stage="release",
        )
    forged.close()


def test_a_ledger_planted_inside_a_checkpoint_is_refused(run: dict[str, Path], tmp_path: Path) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    planted = run_dir / "checkpoints" / "000004"
    _forged_ledger(planted, {str(run_dir / RELEASE): run_dir / RELEASE})
    assert_refused(run_dir, run["pub"], tmp_path, "(refused, not read)", target=planted)


def test_a_separate_folder_naming_the_genuine_checkpoints_is_refused(
    run: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(run, tmp_path / "run")
    fake = tmp_path / "fake"
    _forged_ledger(fake, {str(run_dir / RELEASE): run_dir / RELEASE})
    assert_refused(fake, run["pub"], tmp_path, "its card cites the ledger", "unanchored")
    fake_relative = tmp_path / "fake-relative"
    _forged_ledger(fake_relative, {f"../run/{RELEASE}": run_dir / RELEASE})
    assert_refused(fake_relative, run["pub"], tmp_path, "outside the run (refused, not read)")


# -- 4: a run verified once, and again after every change --------------------------------------------


def _walked_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, how many ledger rows each walk of the hash chain re-hashes."""
    walked: list[int] = []
    extend = ChainWalk.extend

    def counted(self: ChainWalk, rows: list[tuple]) -> None:
        walked.append(len(rows))
        extend(self, rows)

    monkeypatch.setattr(ChainWalk, "extend", counted)
    return walked


def _append_sealed_stage(run_dir: Path, key: Path) -> None:
    """What a live run does next: a stage record, then a signed anchor over it."""
    with Ledger(ledger_of(run_dir)) as ledger:
        ledger.append(RecordKind.STAGE, StageEvent(stage=Stage.MONITOR, step=5), stage="monitor")
        run_id = RunLedger.read(ledger).run_id
        assert run_id is not None
        ledger.append_on_head(RecordKind.ANCHOR, lambda head: AnchorSigner(key).anchor(run_id, head, "test"))


def test_every_checkpoint_of_a_run_is_verified_with_one_walk_of_its_chain(
    run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verifying each checkpoint and the ledger (what a report and the dashboard do) hashes every record
    once; after a live run appends, only the new records are hashed."""
    run_dir = copy_run(run, tmp_path / "run")
    records = len(RunLedger.load(ledger_of(run_dir)).records)
    walked = _walked_rows(monkeypatch)
    for folder in (EARLIER, RELEASE):
        report = verify_checkpoint(run_dir / folder, run["pub"])
        assert report.ok, [s.problems for s in report.steps]
    assert verify_ledger(ledger_of(run_dir), run["pub"]).ok
    assert sum(walked) == records
    _append_sealed_stage(run_dir, run["key"])
    assert verify_checkpoint(run_dir / RELEASE, run["pub"]).ok
    assert verify_ledger(ledger_of(run_dir), run["pub"]).ok
    assert sum(walked) == records + 2


@pytest.mark.parametrize(
    "edit", ["payload edited in place", "payload edited, then an append", "chain rewritten", "seq as reals"]
)
def test_a_ledger_edited_after_it_was_verified_fails_the_next_verification(
    run: dict[str, Path], tmp_path: Path, edit: str
) -> None:
    """A walk is reused only for the very rows it walked: an edit between two verifications in one
    process (a dashboard watching a run) fails the second, whether its head, its length or the records
    after it changed or not, and even when every stored value still compares equal in Python."""
    run_dir = copy_run(run, tmp_path / "run")
    path = ledger_of(run_dir)
    assert verify_checkpoint(run_dir / RELEASE, run["pub"]).ok
    finding = next(r for r in RunLedger.load(path).records if r.kind == "finding")
    if edit == "chain rewritten":
        chain = entries(path)
        chain[finding.seq - 1] = chain[finding.seq - 1].edit(message="rewritten")
        rechain(path, chain)
        expected = "the chain was rewritten"
    else:
        db = open_ledger_for_edit(path)
        if edit == "seq as reals":  # the same rows, 1.0 == 1 in Python, but no sequence number
            db.executescript(
                "BEGIN; CREATE TABLE copied AS SELECT CAST(seq AS REAL) AS seq, ts, kind, stage, payload, "
                "payload_sha256, prev_hash, hash FROM records; DROP TABLE records; "
                "ALTER TABLE copied RENAME TO records; COMMIT;"
            )
            expected = "sequence number out of range"
        else:
            passing = json.dumps({**finding.payload, "status": "pass"})
            db.execute("UPDATE records SET payload = ? WHERE seq = ?", (passing, finding.seq))
            expected = f"record {finding.seq} (finding): payload was edited"
        db.close()
        if edit.endswith("append"):
            _append_sealed_stage(run_dir, run["key"])
    report = verify_checkpoint(run_dir / RELEASE, run["pub"])
    problems = [p for step in report.steps for p in step.problems]
    assert not report.ok and any(expected in p for p in problems), problems
    verdict = verify_ledger(path, run["pub"])
    assert any(expected in p for p in verdict.problems), verdict.problems
