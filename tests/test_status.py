"""Gates that gate: the one gate rule; `trustai train` ends with a verdict per checkpoint and exits 1
when the released checkpoint's gate is blocked (`--no-gate`: 0, verdict still shown); `trustai status`
(text and --json) reports a run's checkpoints, findings and gate, reads only, and exits 0, 1 or 2."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from trustai.attest.keys import generate_keypair
from trustai.cli.demo import demo_train_flags
from trustai.core.evidence import Stage
from trustai.core.gate import Verdict, gate
from trustai.core.records import RunEnd
from trustai.governance import Governance
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import parse_pack

BIN = Path(sys.executable).parent / "trustai"
WIDE = {**os.environ, "COLUMNS": "200"}  # check ids whole on one line, as a wide terminal shows them

# Nothing meets `seed_recorded <= -1`: every checkpoint is blocked, the release warns.
BLOCKING_PACK = """
name: gate-blocked
checks:
  - id: seed-impossible
    audit: provenance.manifest
    stage: checkpoint
    thresholds: {seed_recorded: {max: -1}}
    severity: block
  - id: config-recorded
    audit: provenance.manifest
    stage: checkpoint
    thresholds: {train_config_recorded: {min: 1}}
    severity: block
  - id: release-seed-impossible
    audit: provenance.manifest
    stage: release
    thresholds: {seed_recorded: {max: -1}}
    severity: warn
"""


def trustai(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=WIDE)


def files_and_times(run_dir: Path) -> list[tuple[Path, int]]:
    """Every file of the run with its mtime, SQLite's own -wal/-shm files of a reader aside."""
    files = (
        p
        for p in run_dir.rglob("*")
        if p.is_file() and p.name not in ("ledger.sqlite-wal", "ledger.sqlite-shm")
    )
    return sorted((p, p.stat().st_mtime_ns) for p in files)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("status")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    make_synthetic_dataset(tmp / "dataset", repo_id="trustai/status", episodes=2, frames_per_episode=12)
    (tmp / "blocking.yaml").write_text(BLOCKING_PACK, encoding="utf-8")
    return tmp


def train(workspace: Path, run_dir: Path, *extra: str, steps: int) -> subprocess.CompletedProcess:
    flags = demo_train_flags(workspace / "dataset", run_dir, steps=steps, save_freq=2)
    return trustai(
        "train", "--pack", workspace / "blocking.yaml", "--key", workspace / "k.pem", *extra, "--", *flags
    )


@pytest.fixture(scope="module")
def blocked_run(workspace: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """`trustai train` under the blocking pack: checkpoints at steps 2 and 4, step 4 released."""
    run_dir = workspace / "run"
    return train(workspace, run_dir, steps=4), run_dir


def test_train_exits_1_with_the_verdict_when_the_released_checkpoint_is_blocked(blocked_run) -> None:
    result, run_dir = blocked_run
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "verdict: gate-blocked v1" in out
    assert "seed-impossible" in out and "config-recorded" in out and "release-seed-impossible" in out
    rows = [line for line in out.splitlines() if line.startswith("│ 0000")]
    assert [row.split("│")[1].strip() for row in rows] == ["000002", "000004 (release)"]
    assert all("blocked" in row and "signed" in row and "fail" in row for row in rows)
    assert "gate: blocked (released checkpoint 000004: seed-impossible)" in out
    # The gate never stopped training: both checkpoints sealed, the release card written, training ended.
    status = json.loads(trustai("status", run_dir, "--json").stdout)
    assert status["training"] == {"ended": True, "steps": 4}
    assert [(c["step"], c["card"], c["release"]) for c in status["checkpoints"]] == [
        (2, True, False),
        (4, True, True),
    ]


def test_no_gate_exits_0_and_still_shows_the_blocked_verdict(workspace: Path) -> None:
    result = train(workspace, workspace / "no-gate-run", "--no-gate", steps=2)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "000002 (release)" in result.stdout
    assert "gate: blocked (released checkpoint 000002: seed-impossible)" in result.stdout


def test_status_prints_checkpoints_findings_and_gate_and_reads_only(blocked_run) -> None:
    _, run_dir = blocked_run
    ledger = run_dir / "trustai" / "ledger.sqlite"
    before = ledger.read_bytes(), files_and_times(run_dir)
    result = trustai("status", run_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"run:      {run_dir.resolve()}" in out and "pack:     gate-blocked v1" in out
    assert "dataset:  trustai/demo" in out and "training: ended after 4 steps" in out
    assert "findings (the latest of each check)" in out
    assert out.count("seed_recorded=True violates max -1.0") == 3  # two checkpoints and the release
    assert "train_config_recorded=True" in out  # a pass shows its key metric
    assert out.rstrip().endswith("gate: blocked (released checkpoint 000004: seed-impossible)")
    after = ledger.read_bytes(), files_and_times(run_dir)
    assert after == before


def test_status_json_is_one_document_with_stable_keys(blocked_run) -> None:
    _, run_dir = blocked_run
    result = trustai("status", run_dir, "--json")
    assert result.returncode == 1
    status = json.loads(result.stdout)
    assert list(status) == [
        "schema",
        "run",
        "pack",
        "dataset",
        "training",
        "run_findings",
        "checkpoints",
        "stages_after_training",
        "gate",
    ]
    assert status["schema"] == "trustai.status/v1" and status["pack"]["name"] == "gate-blocked"
    assert status["gate"] == {
        "verdict": "blocked",
        "blocking": ["seed-impossible"],
        "warnings": ["release-seed-impossible"],
        "checkpoint": "checkpoints/000004/pretrained_model",
    }
    first, released = status["checkpoints"]
    assert first["gate"] == {"verdict": "blocked", "blocking": ["seed-impossible"], "warnings": []}
    assert [(f["check"], f["status"]) for f in first["findings"]] == [
        ("seed-impossible", "fail"),
        ("config-recorded", "pass"),
    ]
    assert {(f["check"], f["stage"], f["status"]) for f in released["findings"]} == {
        ("seed-impossible", "checkpoint", "fail"),
        ("config-recorded", "checkpoint", "pass"),
        ("release-seed-impossible", "release", "warn"),
    }
    assert released["signed"] is True and status["stages_after_training"] == []


def test_status_of_a_folder_that_is_not_a_run_exits_2(blocked_run, tmp_path: Path) -> None:
    _, run_dir = blocked_run
    empty = trustai("status", tmp_path)
    assert empty.returncode == 2 and "not a governed run" in empty.stderr and "Traceback" not in empty.stderr
    inside = trustai("status", run_dir / "checkpoints")
    assert inside.returncode == 2 and f"pass the run folder {run_dir.resolve()}" in inside.stderr


def test_a_passing_re_audit_supersedes_the_block_and_status_exits_0(tmp_path: Path) -> None:
    """A ledger written through Governance: a blocked checkpoint, training ends, a later audit of the
    same check passes; the latest finding counts and the audit is a stage after training."""
    run_dir, model = tmp_path / "run", tmp_path / "run" / "checkpoints" / "000002" / "pretrained_model"
    model.mkdir(parents=True)
    manifest = {"seed": 0, "train_config": {"steps": 2}, "dataset": {"id": "d", "fingerprint": "f"}}
    strict = parse_pack(BLOCKING_PACK, "blocking.yaml")
    training = Governance(run_dir, strict)
    try:
        training.start(manifest)
        training.run_stage(Stage.CHECKPOINT, step=2, manifest=manifest)
        training.seal(model, step=2)
        training.end(RunEnd(release_checkpoint=None, steps=2))
    finally:
        training.close()
    assert trustai("status", run_dir).returncode == 1

    lenient = parse_pack(BLOCKING_PACK.replace("{max: -1}", "{min: 1}"), "lenient.yaml")
    audit = Governance(run_dir, lenient)
    try:
        audit.run_stage(
            Stage.CHECKPOINT, step=2, manifest=manifest, checks=lenient.checks[:1], trigger="trustai audit"
        )
    finally:
        audit.close()
    result = trustai("status", run_dir, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["gate"] == {
        "verdict": "pass",
        "blocking": [],
        "warnings": [],
        "checkpoint": "checkpoints/000002/pretrained_model",
    }
    (checkpoint,) = status["checkpoints"]
    assert (checkpoint["card"], checkpoint["signed"], checkpoint["release"]) == (True, False, False)
    assert [(s["stage"], s["step"], s["trigger"]) for s in status["stages_after_training"]] == [
        ("checkpoint", 2, "trustai audit")
    ]
    text = trustai("status", run_dir)
    assert text.returncode == 0 and "stages after training" in text.stdout
    assert text.stdout.rstrip().endswith("gate: pass (newest checkpoint 000002)")


@dataclass(frozen=True)
class Judged:
    check_id: str
    severity: str
    status: str


@pytest.mark.parametrize(
    ("findings", "verdict", "blocking", "warnings"),
    [
        ([], Verdict.PASS, (), ()),
        ([Judged("a", "block", "pass"), Judged("b", "info", "warn")], Verdict.PASS, (), ()),
        ([Judged("a", "block", "pass"), Judged("b", "warn", "warn")], Verdict.WARN, (), ("b",)),
        ([Judged("b", "warn", "error")], Verdict.WARN, (), ("b",)),
        ([Judged("a", "block", "fail"), Judged("b", "warn", "warn")], Verdict.BLOCKED, ("a",), ("b",)),
        ([Judged("a", "block", "error")], Verdict.BLOCKED, ("a",), ()),
        ([Judged("a", "block", "inconclusive")], Verdict.BLOCKED, ("a",), ()),
        ([Judged("a", "warn", "inconclusive")], Verdict.WARN, (), ("a",)),
        ([Judged("a", "block", "fail"), Judged("a", "block", "pass")], Verdict.PASS, (), ()),  # re-audit
        ([Judged("a", "block", "pass"), Judged("a", "block", "error")], Verdict.BLOCKED, ("a",), ()),
    ],
)
def test_the_gate_rule(findings, verdict, blocking, warnings) -> None:
    found = gate(findings)
    assert (found.verdict, found.blocking, found.warnings) == (verdict, blocking, warnings)
    assert found.blocked == (verdict == Verdict.BLOCKED)


def test_the_gate_states_each_block_and_warn_check_of_the_pack() -> None:
    pack = parse_pack(
        BLOCKING_PACK + "  - {id: info-only, audit: data.quality, stage: data, severity: info}\n", "p.yaml"
    )
    found = gate([Judged("seed-impossible", "block", "fail")], pack.checks)
    assert found.statuses == {
        "seed-impossible": "fail",
        "config-recorded": None,
        "release-seed-impossible": None,
    }
    assert found.verdict == Verdict.BLOCKED and found.blocking == ("seed-impossible",)
