"""A real LeRobot training run (tiny ACT, CPU) under governance: ledger, signed cards, verification,
tamper detection, and audits that raise or hang without stopping training."""

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from trustai.training_hooks.lerobot_train import governed_train

from trustai.attest.keys import generate_keypair
from trustai.attest.verify import verify_checkpoint
from trustai.cli.demo import demo_train_flags
from trustai.core.audit import Audit, Measurement, register
from trustai.core.evidence import Stage
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import parse_pack

BIN = Path(sys.executable).parent


@register
class RaisingAudit(Audit):
    name = "testing.raises"
    stages = frozenset(Stage)

    def measure(self, ctx, params):
        raise RuntimeError("planted failure")


@register
class HangingAudit(Audit):
    name = "testing.hangs"
    stages = frozenset(Stage)

    def measure(self, ctx, params):
        time.sleep(30)
        return Measurement()


PLANTED = """
  - id: planted-raise
    audit: testing.raises
    stage: checkpoint
    severity: warn
  - id: planted-hang
    audit: testing.hangs
    stage: data
    severity: warn
    timeout_s: 1
"""


def governed_pack():
    """The shipped default pack plus one audit that raises and one that hangs past its limit."""
    body = (resources.files("trustai.policies") / "default.yaml").read_text() + PLANTED
    return parse_pack(body, "default+planted.yaml")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("governed")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(
        tmp / "dataset", repo_id="trustai/test", episodes=4, frames_per_episode=20
    )
    run_dir = governed_train(
        demo_train_flags(dataset, tmp / "run", steps=12, save_freq=6), governed_pack(), tmp / "k.pem"
    )
    return run_dir, tmp / "k.pub"


def copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("training_state"), symlinks=True)
    return dest


def test_training_completes_with_ledger_and_signed_cards(run):
    run_dir, pub = run
    checkpoints = sorted(run_dir.glob("checkpoints/[0-9]*/pretrained_model"))
    assert [c.parent.name for c in checkpoints] == ["000006", "000012"]
    for ckpt in checkpoints:
        assert (ckpt / "model.sig").is_file() and (ckpt / "trustai" / "card.json").is_file()
        report = verify_checkpoint(ckpt, pub)
        assert report.ok, [(c.name, c.problems) for c in report.steps]
        stock = subprocess.run(
            [
                BIN / "model_signing",
                "verify",
                "key",
                "--signature",
                ckpt / "model.sig",
                "--public_key",
                pub,
                ckpt,
            ],
            capture_output=True,
            text=True,
        )
        assert stock.returncode == 0, stock.stdout + stock.stderr


def test_ledger_holds_every_stage_and_finding(run):
    run_dir, _ = run
    db = sqlite3.connect(run_dir / "trustai" / "ledger.sqlite")
    kinds = [r[0] for r in db.execute("SELECT kind FROM records ORDER BY seq")]
    stages = {r[0] for r in db.execute("SELECT stage FROM records WHERE kind = 'finding'")}
    assert kinds[0] == "run.start" and kinds[-2:] == ["run.end", "anchor"]
    assert stages == {"data", "train", "checkpoint", "release"}
    assert kinds.count("card") == 3  # two checkpoint cards and the release card


def test_data_stage_runs_beside_training_and_lands_before_the_first_card(run):
    run_dir, _ = run
    db = sqlite3.connect(run_dir / "trustai" / "ledger.sqlite")
    rows = [
        (kind, stage, json.loads(payload))
        for kind, stage, payload in db.execute("SELECT kind, stage, payload FROM records ORDER BY seq")
    ]
    first_card = next(i for i, (kind, _, _) in enumerate(rows) if kind == "card")
    data = [p for kind, stage, p in rows if kind == "finding" and stage == "data"]
    assert len(data) == 6 and all(i < first_card for i, r in enumerate(rows) if r[2] in data)
    assert {f["check_id"]: f["status"] for f in data}["dataset-integrity"] == "pass"
    digests = rows[0][2]["manifest"]["dataset"]["digests"]
    assert set(digests["sources"]) == {"hashed"}  # a small dataset: every file read at start-up
    assert digests["fingerprint"] == rows[0][2]["manifest"]["dataset"]["fingerprint"]


def test_raising_and_hanging_audits_become_error_findings(run):
    run_dir, _ = run
    db = sqlite3.connect(run_dir / "trustai" / "ledger.sqlite")
    findings = [json.loads(r[0]) for r in db.execute("SELECT payload FROM records WHERE kind = 'finding'")]
    by_id = {}
    for f in findings:
        by_id.setdefault(f["check_id"], []).append(f)
    assert [f["status"] for f in by_id["planted-raise"]] == ["error", "error"]
    assert "planted failure" in by_id["planted-raise"][0]["message"]
    assert (
        by_id["planted-hang"][0]["status"] == "error" and "timed out" in by_id["planted-hang"][0]["message"]
    )
    assert all(f["status"] == "pass" for f in by_id["training-health"]), by_id["training-health"]
    assert all(f["status"] == "pass" for f in by_id["data-quality"]), by_id["data-quality"]


def test_card_renders_for_hugging_face_and_cites_records(run):
    run_dir, _ = run
    ckpt = run_dir / "checkpoints" / "000012" / "pretrained_model"
    card = json.loads((ckpt / "trustai" / "card.json").read_text())
    assert card["model_details"]["policy"]["type"] == "act"
    assert card["model_details"]["release"] is True
    assert card["training_data"]["fingerprint"]
    hf = ModelCard.load(ckpt / "README.md")
    results = {r.metric_type: r.metric_value for r in hf.data.eval_results}
    assert results["training-health/steps"] == 12
    assert all(m["record"]["hash"] for m in card["quantitative_analysis"]["performance_metrics"])


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("model.safetensors", "model.safetensors"),
        ("trustai/card.json", "trustai/card.json"),
        ("EVIDENCE", "trustai/evidence/"),
        ("README.md", "README.md"),
    ],
)
def test_flipping_one_byte_fails_verification_and_names_the_file(run, tmp_path, target, named):
    run_dir, pub = run
    copy = copy_run(run_dir, tmp_path / "run")
    ckpt = copy / "checkpoints" / "000012" / "pretrained_model"
    path = next((ckpt / "trustai" / "evidence").glob("*.json")) if target == "EVIDENCE" else ckpt / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify_checkpoint(ckpt, pub)
    assert not report.ok
    problems = [p for c in report.steps for p in c.problems]
    assert any(named in p for p in problems), problems
    cli = subprocess.run(
        [BIN / "trustai", "verify", ckpt, "--public-key", pub], capture_output=True, text=True
    )
    assert cli.returncode == 1 and named in cli.stdout


def test_flipping_one_byte_in_a_ledger_record_is_named(run, tmp_path):
    run_dir, pub = run
    copy = copy_run(run_dir, tmp_path / "run")
    db = sqlite3.connect(copy / "trustai" / "ledger.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER records_no_update")
    payload = db.execute("SELECT payload FROM records WHERE seq = 5").fetchone()[0]
    i = payload.index(":") + 2
    db.execute(
        "UPDATE records SET payload = ? WHERE seq = 5",
        (payload[:i] + chr(ord(payload[i]) ^ 1) + payload[i + 1 :],),
    )
    db.close()
    cli = subprocess.run([BIN / "trustai", "ledger", "verify", copy], capture_output=True, text=True)
    assert cli.returncode == 1 and "record 5 " in cli.stdout
    report = verify_checkpoint(copy / "checkpoints" / "000012", pub)
    assert not report.ok
    assert any("record 5 " in p for c in report.steps for p in c.problems)


def test_truncated_ledger_tail_is_caught_by_the_card_anchor(run, tmp_path):
    run_dir, pub = run
    copy = copy_run(run_dir, tmp_path / "run")
    db = sqlite3.connect(copy / "trustai" / "ledger.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER records_no_delete")
    db.execute("DELETE FROM records WHERE seq >= (SELECT MAX(seq) - 6 FROM records)")
    db.close()
    report = verify_checkpoint(copy / "checkpoints" / "000012", pub)
    assert not report.ok
    assert any("missing" in p for c in report.steps for p in c.problems)
