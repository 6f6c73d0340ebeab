"""`trustai train --track wandb,mlflow`: each finding's metrics and verdict, each checkpoint's gate and
card digest reach LeRobot's W&B run (offline mode, read back from the run's files) and MLflow (SQLite
store) under `trustai/<check>/<metric>` at their training step; a tracker that fails is a `hook.error`
in the ledger and the run goes on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trustai.training_hooks.trackers import tracking

from trustai.attest.keys import generate_keypair
from trustai.cli.demo import demo_train_flags
from trustai.core.evidence import Evidence, InputProvenance, Stage
from trustai.core.records import RecordKind
from trustai.core.run_record import RunLedger
from trustai.governance import Governance
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import parse_pack

BIN = Path(sys.executable).parent / "trustai"
PACK = """
name: tracked
checks:
  - id: provenance
    audit: provenance.manifest
    stage: checkpoint
    thresholds: {seed_recorded: {min: 1}, train_config_recorded: {min: 1}}
    severity: block
  - id: seed-impossible
    audit: provenance.manifest
    stage: checkpoint
    thresholds: {seed_recorded: {max: -1}}
    severity: warn
"""


def record_every_check(gov: Governance, stage: Stage, step: int) -> None:
    """Record evidence for each of ``gov``'s pack checks at ``stage`` and ``step``: seed and train config
    recorded, so the pack's block check passes and its impossible warn check warns."""
    for check in gov.pack.checks:
        evidence = Evidence(
            audit=check.audit,
            audit_version="1",
            stage=stage,
            check_id=check.id,
            metrics={"seed_recorded": 1, "train_config_recorded": 1},
            inputs=InputProvenance(step=step),
        )
        gov.record(check, evidence)


def wandb_rows(run_dir: Path) -> list[dict]:
    """The history rows of the run's offline W&B run, read from its .wandb file."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    [path] = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(path))
    rows = []
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items})
    return rows


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`trustai train --track wandb,mlflow` of a tiny ACT: checkpoints at steps 2 and 4 (released)."""
    tmp = tmp_path_factory.mktemp("tracked")
    make_synthetic_dataset(tmp / "dataset", repo_id="trustai/tracked", episodes=2, frames_per_episode=12)
    (tmp / "pack.yaml").write_text(PACK, encoding="utf-8")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    run_dir, store = tmp / "run", f"sqlite:///{tmp / 'mlflow.db'}"
    demo = demo_train_flags(tmp / "dataset", run_dir, steps=4, save_freq=2)
    flags = [f for f in demo if "wandb" not in f and "log_freq" not in f] + ["--log_freq=2"]
    flags += ["--wandb.enable=true", "--wandb.mode=offline", "--wandb.disable_artifact=true"]
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp),
        "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
        "MLFLOW_TRACKING_URI": store,
    }
    command = [BIN, "train", "--pack", tmp / "pack.yaml", "--key", tmp / "k.pem", "--runtime", "inline"]
    command += ["--track", "wandb,mlflow"]
    result = subprocess.run([*command, "--", *flags], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir, store


def card_digests(run_dir: Path) -> dict[int, list[str]]:
    """The card digests the ledger holds, by step, in ledger order."""
    run = RunLedger.load(run_dir / "trustai" / "ledger.sqlite")
    found: dict[int, list[str]] = {}
    for card in run.cards:
        found.setdefault(card.payload["step"], []).append(card.payload["card_digest"])
    return found


def test_wandb_offline_run_holds_findings_gate_and_card_at_their_steps(tracked_run) -> None:
    run_dir, _ = tracked_run
    rows = [r for r in wandb_rows(run_dir) if "trustai/step" in r]
    by_step = {}
    for row in rows:
        by_step.setdefault(row["trustai/step"], {}).update(row)
    assert sorted(by_step) == [2, 4]
    digests = card_digests(run_dir)
    for step, row in by_step.items():
        assert row["_step"] == step  # inline audits land in the row LeRobot logs at that step
        assert row["trustai/provenance/seed_recorded"] == 1 and row["trustai/provenance/verdict"] == 0
        assert row["trustai/provenance/status"] == "pass"
        assert row["trustai/seed-impossible/status"] == "warn" and row["trustai/seed-impossible/verdict"] == 1
        assert row["trustai/gate/verdict"] == "warn" and row["trustai/gate"] == 1
        assert row["trustai/card/digest"] == digests[step][-1]  # step 4: the release card, sealed last
    assert all("train/loss" in by_step[step] for step in (2, 4))  # LeRobot's own logging, same rows


def test_mlflow_sqlite_run_holds_findings_gate_and_card_at_their_steps(tracked_run) -> None:
    from mlflow import MlflowClient

    run_dir, store = tracked_run
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("trustai")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.tags["trustai.run_id"] == RunLedger.load(run_dir / "trustai" / "ledger.sqlite").run_id

    def history(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))

    assert history("trustai/provenance/seed_recorded") == [(2, 1.0), (4, 1.0)]
    assert history("trustai/seed-impossible/verdict") == [(2, 1.0), (4, 1.0)]
    assert history("trustai/gate") == [(2, 1.0), (4, 1.0), (4, 1.0)]  # step 4: its card and the release card
    digests = card_digests(run_dir)
    assert run.data.tags["trustai/card/digest/step-2"] == digests[2][-1]
    assert run.data.tags["trustai/card/digest"] == digests[4][-1]
    assert run.data.tags["trustai/gate/verdict"] == "warn"


def test_a_failing_tracker_is_a_hook_error_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where MLflow's database folder would be")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocked / 'mlflow.db'}")
    pack = parse_pack(PACK.replace("stage: checkpoint", "stage: data"), "data.yaml")
    gov = Governance(tmp_path / "run", pack)
    with tracking(gov, ["mlflow"], wandb_enabled=False):
        gov.start({"seed": 1})
        record_every_check(gov, Stage.DATA, step=0)  # the tracker fails at the first finding; judging goes on
        assert gov.observers == []
    run = gov.recorded()
    gov.close()
    [error] = run.of_kind(RecordKind.HOOK_ERROR)
    assert error.payload["hook"] == "tracker.mlflow"
    assert [i.status for i in run.evidence] == ["pass", "warn"]


class KeptSink:
    """A Sink that keeps what it is sent."""

    name = "kept"

    def __init__(self) -> None:
        self.sent: list[tuple[int, dict[str, float], dict[str, str]]] = []

    def log(self, step: int, numbers: dict[str, float], texts: dict[str, str]) -> None:
        self.sent.append((step, numbers, texts))

    def close(self) -> None:
        pass


def test_the_tracked_gate_is_the_sealed_cards_gate(tmp_path: Path) -> None:
    """A checkpoint whose only non-passing check warns: the tracker sends the gate its sealed card states."""
    from trustai.training_hooks.trackers import FindingTracker

    pack = parse_pack(PACK, "tracked.yaml")
    gov = Governance(tmp_path / "run", pack)
    sink = KeptSink()
    gov.observers.append(FindingTracker(gov, sink))
    model = tmp_path / "run" / "checkpoints" / "000002" / "pretrained_model"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"type": "act"}\n')
    try:
        gov.start({"seed": 1})
        record_every_check(gov, Stage.CHECKPOINT, step=2)
        card = json.loads(gov.seal(model, step=2).read_text())
    finally:
        gov.close()
    [(step, numbers, texts)] = sink.sent
    assert card["governance"]["gate"] == "warn" and card["governance"]["warnings"] == ["seed-impossible"]
    assert (step, texts["trustai/gate/verdict"], numbers["trustai/gate"]) == (2, "warn", 1.0)
    assert texts["trustai/seed-impossible/status"] == "warn"
