"""Governance off the critical path and across processes: checkpoint audits as Ray tasks (retries,
time limits, worker death), a 2-process accelerate run, and Ray Train."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import ray
from trustai.training_hooks.lerobot_train import governed_train

from trustai.attest.keys import generate_keypair
from trustai.attest.verify import verify_checkpoint
from trustai.cli.demo import demo_train_flags
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import parse_pack

BIN = Path(sys.executable).parent


def default_pack_plus(extra: str):
    body = (resources.files("trustai.policies") / "default.yaml").read_text() + extra
    return body


def records(run_dir: Path, kind: str) -> list[dict]:
    db = sqlite3.connect(run_dir / "trustai" / "ledger.sqlite")
    return [
        json.loads(p)
        for (p,) in db.execute("SELECT payload FROM records WHERE kind = ? ORDER BY seq", (kind,))
    ]


def free_port() -> int:
    """A TCP port nothing listens on now (for the gloo rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_running(marker: str) -> list[int]:
    """Processes other than this one whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "cmdline").read_bytes() and int(entry.name) != os.getpid():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


def run_with_deadline(cmd: list, timeout_s: float, marker: str) -> subprocess.CompletedProcess:
    """Run ``cmd``; past ``timeout_s`` abort every process whose command line mentions ``marker`` (the
    launcher and the ranks it started in sessions of their own; faulthandler prints every thread's
    stack) and fail the test with what they printed."""
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_all(pids_running(marker), signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            signal_all(pids_running(marker), signal.SIGKILL)
            proc.kill()
            out, err = proc.communicate(timeout=30)
        pytest.fail(f"timed out after {timeout_s} s\nstdout: {out[-3000:]}\nstderr: {err[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(tmp / "ds", repo_id="trustai/dist", episodes=2, frames_per_episode=16)
    return tmp, dataset


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_async_ray_audits_record_every_checkpoint_and_survive_worker_death(workspace, local_ray):
    tmp, dataset = workspace
    attempts = tmp / "crash-attempts.txt"
    pack = parse_pack(
        default_pack_plus(f"""
  - id: planted-crash
    audit: chaos.crash_worker
    stage: checkpoint
    severity: warn
    params: {{attempts_file: "{attempts}"}}
  - id: planted-hang
    audit: chaos.hang
    stage: checkpoint
    severity: warn
    timeout_s: 3
"""),
        "default+chaos.yaml",
    )
    run_dir = governed_train(
        demo_train_flags(dataset, tmp / "ray-run", steps=6, save_freq=3), pack, tmp / "k.pem", runtime="ray"
    )
    findings = records(run_dir, "finding")
    by_check: dict[str, list[dict]] = {}
    for f in findings:
        by_check.setdefault(f["check_id"], []).append(f)
    assert [f["status"] for f in by_check["provenance"]] == ["pass", "pass"]  # one per checkpoint, on Ray
    assert [f["status"] for f in by_check["planted-crash"]] == ["error", "error"]
    assert "worker failed after 1 retries" in by_check["planted-crash"][0]["message"]
    assert len(attempts.read_text().split()) == 4  # each of the two checkpoints: first try + one retry
    assert all(f["status"] == "error" and "timed out" in f["message"] for f in by_check["planted-hang"])
    end = records(run_dir, "run.end")[-1]
    assert end["steps"] == 6 and end["audits_finished_in_time"] is True
    cards = records(run_dir, "card")
    assert [(c["step"], c["release"]) for c in cards][-1] == (6, True)
    assert sorted(c["step"] for c in cards if not c["release"]) == [3, 6]
    for ckpt in ("000003", "000006"):
        report = verify_checkpoint(run_dir / "checkpoints" / ckpt, tmp / "k.pub")
        assert report.ok, [(c.name, c.problems) for c in report.steps]


def test_two_process_accelerate_run_writes_one_ledger_and_one_card_per_checkpoint(workspace, tmp_path):
    tmp, dataset = workspace
    pack = tmp_path / "pack.yaml"
    pack.write_text(
        default_pack_plus("""
  - id: planted-raise
    audit: chaos.raise
    stage: checkpoint
    severity: warn
""")
    )
    run_dir = tmp_path / "run"
    cmd = [
        BIN / "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "trustai",
        "train",
        "--pack",
        pack,
        "--key",
        tmp / "k.pem",
        "--",
        *demo_train_flags(dataset, run_dir, steps=6, save_freq=3),
    ]
    done = run_with_deadline(cmd, timeout_s=300, marker=str(run_dir))
    assert done.returncode == 0, done.stderr[-4000:]
    assert list(run_dir.rglob("ledger.sqlite")) == [run_dir / "trustai" / "ledger.sqlite"]
    assert len(records(run_dir, "run.start")) == 1
    cards = records(run_dir, "card")
    assert sorted((c["step"], c["release"]) for c in cards) == [(3, False), (6, False), (6, True)]
    end = records(run_dir, "run.end")[-1]
    assert end["ranks"] == 2
    health = [e for e in records(run_dir, "evidence") if e["audit"] == "train.health"]
    assert health and all(e["metrics"]["ranks"] == 2 for e in health)
    assert [r["steps"] for r in health[-1]["tables"]["ranks"]] == [6, 6]
    assert all(
        f["status"] == "error" for f in records(run_dir, "finding") if f["check_id"] == "planted-raise"
    )
    assert verify_checkpoint(run_dir / "checkpoints" / "000006", tmp / "k.pub").ok


def test_ray_train_torchtrainer_is_governed(workspace, local_ray, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from trustai.training_hooks.ray_train import GovernanceCallback

    from tests.ray_train_loop import train_tiny_act

    tmp, dataset = workspace
    governance = GovernanceCallback(
        tmp_path / "run", "default", signing_key=tmp / "k.pem", dataset_root=dataset
    )
    trainer = TorchTrainer(
        train_tiny_act,
        train_loop_config={"dataset_root": str(dataset), "steps": 4, "report_every": 2},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=False),
        run_config=RunConfig(name="governed", storage_path=str(tmp_path / "ray"), callbacks=[governance]),
    )
    result = trainer.fit()
    card = governance.seal_release(result)
    run_dir = tmp_path / "run"
    cards = records(run_dir, "card")
    assert sorted((c["step"], c["release"]) for c in cards) == [(2, False), (4, False), (4, True)]
    assert {f["check_id"] for f in records(run_dir, "finding")} >= {
        "data-quality",
        "training-health",
        "provenance",
    }
    assert verify_checkpoint(card.parents[1], tmp / "k.pub").ok


def test_monitor_checks_on_ray_compare_against_their_reference(workspace, local_ray, tmp_path):
    from trustai.core.evidence import Stage
    from trustai.governance import Governance

    _, dataset = workspace
    governance = Governance(tmp_path / "run", "default", runtime="ray")
    landed = []
    try:
        governance.run_stage(Stage.MONITOR, step=1, dataset=dataset, reference=dataset, on_done=landed.extend)
        assert governance.drain(timeout_s=300)
    finally:
        governance.close()
    assert sorted(f.check_id for f in landed) == ["monitor-data-quality", "monitor-drift"]
    drift = next(e for e in records(tmp_path / "run", "evidence") if e["check_id"] == "monitor-drift")
    assert drift["error"] is None and drift["metrics"]["reference_frames"] > 0
    artifacts = tmp_path / "run" / "trustai" / "artifacts"
    assert (artifacts / "monitor-1-monitor-drift" / "drift_report.html").is_file()
    assert ray.is_initialized()  # a Ray the auditor did not start is left running
