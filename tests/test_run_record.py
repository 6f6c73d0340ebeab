"""A resumed run (two run.start records, each with its own pack and manifest) is read the same way by
every reader: the card, the audit plan, monitoring and the report all take the latest start. The ledger
is built with Governance directly, around a tiny ACT checkpoint; nothing is trained."""

import json
from pathlib import Path

import pytest
from trustai.reports.build import build_report

from tests.policies_fixtures import features_dataset, save_checkpoint, tiny_act
from trustai import layout
from trustai.attest.keys import generate_keypair
from trustai.cli.audit_plan import plan_audit
from trustai.cli.monitor import monitor_run
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError
from trustai.governance import Governance
from trustai.packs import parse_pack

FIRST = """
name: first-pack
checks:
  - {id: drift, audit: drift.features, stage: monitor}
"""
RESUMED = """
name: resumed-pack
version: 2
checks:
  - id: corruptions
    audit: robustness.corruptions
    stage: checkpoint
    params: {frames: 2, corruptions: [state_noise], severities: [1]}
"""


def manifest(seed: int, fingerprint: str, **extra: object) -> dict:
    return {"seed": seed, "dataset": {"id": "trustai/test", "fingerprint": fingerprint}, **extra}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run started under ``first-pack``, resumed under ``resumed-pack``, whose checkpoint at step 2
    was sealed after the resume."""
    tmp = tmp_path_factory.mktemp("resumed")
    run_dir = tmp / "run"
    model = save_checkpoint(tiny_act(), run_dir / layout.CHECKPOINTS_DIR / "000002")
    first = Governance(run_dir, parse_pack(FIRST, "first.yaml"))
    first.start(manifest(1, "aaaa"))
    first.close()
    second = Governance(run_dir, parse_pack(RESUMED, "resumed.yaml"))
    latest = second.start(manifest(2, "bbbb", resume={"after_record": None, "sealed_steps": []}))
    card = second.seal(model, step=2, release=True)
    second.close()
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    return {"run": run_dir, "model": model, "card": card, "latest": latest, "tmp": tmp}


@pytest.fixture(autouse=True)
def no_default_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTAI_HOME", str(tmp_path))


def test_the_run_ledger_reads_every_start_and_governs_by_the_latest(resumed):
    run = RunLedger.load(layout.ledger_path(resumed["run"]))
    assert [s.payload["policy_pack"]["name"] for s in run.starts] == ["first-pack", "resumed-pack"]
    assert run.start == resumed["latest"]
    assert run.manifest["seed"] == 2 and run.policy_pack["version"] == 2
    assert [c.payload["step"] for c in run.cards_of(resumed["model"])] == [2]
    assert run.release_card == run.cards[-1] and run.end is None


def test_the_card_states_the_latest_start(resumed):
    card = json.loads(resumed["card"].read_text())
    assert card["governance"]["policy_pack"]["name"] == "resumed-pack"
    assert card["training"]["seed"] == 2
    assert card["training_data"] == {
        "dataset": "trustai/test",
        "fingerprint": "bbbb",
        "record": resumed["latest"].cite(),
    }


def test_the_audit_plan_takes_the_latest_manifest(resumed):
    dataset = features_dataset(resumed["tmp"] / "dataset")
    plan = plan_audit(resumed["model"], dataset, "default", key=resumed["tmp"] / "k.pem")
    assert plan.seed == 2 and plan.manifest["dataset"]["fingerprint"] == "bbbb"
    assert [(t.step, t.release) for t in plan.targets] == [(2, True)]


def test_monitoring_takes_the_latest_pack(resumed):
    # The first pack had a monitor check; the one the run resumed under has none.
    with pytest.raises(TrustaiUserError, match="'resumed-pack' has no monitor-stage checks"):
        monitor_run(resumed["run"], resumed["tmp"])


def test_the_report_states_the_latest_start(resumed):
    doc = build_report(resumed["run"], "eu-ai-act")
    facts = {f.label: f for s in doc.sections for f in s.content.facts}
    assert facts["Policy pack"].value.startswith("resumed-pack v2")
    assert facts["Data set fingerprint (content sha256)"].value == "bbbb"
    assert [c.seq for c in facts["Policy pack"].cites] == [resumed["latest"].seq]
    timeline = next(t for s in doc.sections for t in s.content.tables if t.title == "Run timeline")
    assert [row[3] for row in timeline.rows if row[3].startswith("run ")] == ["run started", "run resumed"]
