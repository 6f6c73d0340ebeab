"""`trustai audit` on checkpoints of a real governed LeRobot run: it appends evidence to the run's
ledger, re-signs a card that verifies, gates on block findings (exit 1), starts a ledger in --out for
a checkpoint no run owns, and refuses bad input (exit 2) or a tampered checkpoint (exit 1) before
writing anything; a checkpoint the ledger records as signed is never re-signed once its model.sig is
gone or its weights differ from the recorded digest, and pickle files are never signed. The run's own
checkpoint stage ran the same audits from the training hook.
`--all` audits every checkpoint of the run in parallel on Ray (local, or a cluster's address) into
the run's one ledger, with progress bars over checkpoints and audits."""

import hashlib
import io
import itertools
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import ray
import torch
from rich.console import Console
from rich.progress import Progress
from trustai.training_hooks.lerobot_train import governed_train

from tests.reliability.forgery import nudge_weights
from trustai.attest.keys import generate_keypair
from trustai.attest.signing import sign_folder
from trustai.attest.verify import verify_checkpoint
from trustai.cli import main
from trustai.cli.audit import run_audit
from trustai.cli.audit_plan import plan_audit
from trustai.cli.demo import demo_train_flags
from trustai.core.ledger import Ledger
from trustai.errors import TrustaiUserError
from trustai.lerobot.synthetic import make_synthetic_dataset

LIGHT_PACK = """
name: audit-light
checks:
  - id: cli-corruptions
    audit: robustness.corruptions
    stage: checkpoint
    params: {{frames: 2, corruptions: [gaussian_noise, state_noise], severities: [1, 5]}}
    thresholds: {{worst_action_deviation: {{max: {limit}}}}}
    severity: block
    references: [eu-ai-act:art15]
  - id: cli-adversarial
    audit: robustness.adversarial
    stage: checkpoint
    params: {{frames: 2, steps: 1, epsilons: [0.0, 0.0157]}}
    severity: warn
  - id: cli-explanations
    audit: explainability.attributions
    stage: checkpoint
    params: {{frames: 1, ig_steps: 2, occlusion_fraction: 0.5, deletion_fractions: [0.2]}}
    severity: info
"""
DATA_ONLY_PACK = """
name: data-only
checks:
  - {id: quality, audit: data.quality, stage: data}
"""
CHECKS = ["cli-corruptions", "cli-adversarial", "cli-explanations"]


@pytest.fixture(autouse=True)
def no_default_keys(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's own default keys (~/.config/trustai) out of these tests."""
    monkeypatch.setenv("TRUSTAI_HOME", str(tmp_path_factory.mktemp("trustai-home")))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A governed run with checkpoints at steps 2 and 4 (default pack, whose checkpoint stage runs
    robustness and explainability)."""
    tmp = tmp_path_factory.mktemp("audit-cli")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(
        tmp / "dataset", repo_id="trustai/audit", episodes=2, frames_per_episode=12
    )
    run_dir = governed_train(
        demo_train_flags(dataset, tmp / "run", steps=4, save_freq=2), "default", tmp / "k.pem"
    )
    for name, limit in (("light", 1000), ("blocking", 0)):
        (tmp / f"{name}.yaml").write_text(LIGHT_PACK.format(limit=limit))
    (tmp / "data-only.yaml").write_text(DATA_ONLY_PACK)
    return {
        "tmp": tmp,
        "dataset": dataset,
        "run": run_dir,
        "checkpoint": run_dir / "checkpoints" / "000004",
        "key": tmp / "k.pem",
        "public": tmp / "k.pub",
    }


def trustai(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: object
) -> tuple[int, str, str]:
    """Run the CLI in this process (imports stay warm); return exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["trustai", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


def copy_run(run: dict[str, Path], dest: Path) -> Path:
    """A copy of the run folder (without training state); returns the copied checkpoint."""
    shutil.copytree(run["run"], dest, ignore=shutil.ignore_patterns("training_state"), symlinks=True)
    return dest / "checkpoints" / "000004"


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``: what 'nothing was written' is checked against."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def evidence_of(ledger_path: Path, check_id: str) -> list[dict]:
    with Ledger(ledger_path, create=False) as ledger:
        return [r.payload for r in ledger.records("evidence") if r.payload["check_id"] == check_id]


def test_training_hook_ran_robustness_and_explainability_at_the_checkpoint(run: dict[str, Path]) -> None:
    ledger = run["run"] / "trustai" / "ledger.sqlite"
    for check_id in ("robustness-corruptions", "explanations"):
        at_2, at_4 = evidence_of(ledger, check_id)
        for evidence, step in ((at_2, 2), (at_4, 4)):
            assert evidence["error"] is None, evidence["error"]
            assert evidence["stage"] == "checkpoint" and evidence["inputs"]["step"] == step
            assert evidence["metrics"]["frames"] > 0 and evidence["artifacts"]


def test_audit_appends_evidence_and_re_signs_a_card_that_verifies(run: dict[str, Path]) -> None:
    ledger = run["run"] / "trustai" / "ledger.sqlite"
    before = len(Ledger(ledger, create=False).records())
    args = ["audit", run["checkpoint"], "--dataset", run["dataset"], "--pack", run["tmp"] / "light.yaml"]
    args += ["--frames", 1, "--key", run["key"], "--public-key", run["public"]]
    result = subprocess.run(
        [Path(sys.executable).parent / "trustai", *map(str, args)], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert all(check in result.stdout for check in CHECKS) and "gate:   pass" in result.stdout
    assert len(Ledger(ledger, create=False).records()) > before
    for check in CHECKS:
        (evidence,) = evidence_of(ledger, check)
        assert evidence["error"] is None and evidence["params"]["frames"] == 1
        assert evidence["inputs"]["step"] == 4 and evidence["inputs"]["checkpoint_digest"]
    assert verify_checkpoint(run["checkpoint"], run["public"]).ok
    card = json.loads((run["checkpoint"] / "pretrained_model" / "trustai" / "card.json").read_text())
    assert set(CHECKS) <= {f["check_id"] for f in card["governance"]["findings"]}
    assert {"robustness-corruptions", "explanations"} <= {
        f["check_id"] for f in card["governance"]["findings"]
    }


def test_a_failing_block_check_exits_1_and_the_card_says_blocked(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = copy_run(run, tmp_path / "run")
    code, out, _ = trustai(
        capsys, monkeypatch, "audit", checkpoint, "--dataset", run["dataset"], "--pack",
        run["tmp"] / "blocking.yaml", "--key", run["key"], "--public-key", run["public"],
    )  # fmt: skip
    assert code == 1 and "gate:   blocked" in out
    assert verify_checkpoint(checkpoint, run["public"]).ok
    card = json.loads((checkpoint / "pretrained_model" / "trustai" / "card.json").read_text())
    assert card["governance"]["gate"] == "blocked" and "cli-corruptions" in card["governance"]["blocking"]


def test_a_checkpoint_no_run_owns_gets_a_new_ledger_in_out(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = Path(shutil.copytree(run["checkpoint"] / "pretrained_model", tmp_path / "model"))
    for leftover in ("trustai", "README.md", "model.sig"):  # as LeRobot itself saved it
        path = checkpoint / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    args = ["audit", checkpoint, "--dataset", run["dataset"], "--pack", run["tmp"] / "light.yaml"]
    args += ["--key", run["key"]]
    missing_out = trustai(capsys, monkeypatch, *args)
    assert missing_out[0] == 2 and "--out" in missing_out[2]
    assert not (checkpoint / "trustai").exists()

    code, _, _ = trustai(capsys, monkeypatch, *args, "--out", tmp_path / "audits")
    assert code == 0
    assert (tmp_path / "audits" / "trustai" / "ledger.sqlite").is_file()
    assert verify_checkpoint(checkpoint, run["public"]).ok


def _corrupt_weights(checkpoint: Path) -> None:
    weights = checkpoint / "pretrained_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _pickle_weights(checkpoint: Path) -> None:
    (checkpoint / "pretrained_model" / "model.safetensors").unlink()
    torch.save({"weights": torch.zeros(1)}, checkpoint / "pretrained_model" / "model.bin")


def _drop_config(checkpoint: Path) -> None:
    (checkpoint / "pretrained_model" / "config.json").unlink()


@pytest.mark.parametrize(
    ("damage", "extra", "message"),
    [
        (_corrupt_weights, [], "corrupt safetensors file"),
        (_pickle_weights, [], "pickle format"),
        (_drop_config, [], "config.json is missing"),
        (None, ["--dataset", "{mismatched}"], "does not match the act policy's inputs"),
        (None, ["--pack", "{tmp}/data-only.yaml"], "has no checkpoint-stage checks"),
        (None, ["--key", "{tmp}/missing.pem"], "signing key not found"),
        (None, ["--out", "{tmp}/elsewhere"], "belongs to the governed run"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    run: dict[str, Path],
    mismatched: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    damage: Callable[[Path], None] | None,
    extra: list[str],
    message: str,
) -> None:
    checkpoint = copy_run(run, tmp_path / "run")
    if damage is not None:
        damage(checkpoint)
    before = snapshot(tmp_path)
    options = {
        "--dataset": str(run["dataset"]),
        "--pack": str(run["tmp"] / "light.yaml"),
        "--key": str(run["key"]),
    }
    options |= dict(
        zip(extra[::2], (v.format(tmp=run["tmp"], mismatched=mismatched) for v in extra[1::2]), strict=True)
    )
    code, out, err = trustai(
        capsys, monkeypatch, "audit", checkpoint, *[x for kv in options.items() for x in kv]
    )

    assert code == 2, out + err
    assert message in err and "How to fix" in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before


def test_a_missing_checkpoint_exits_2(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = trustai(capsys, monkeypatch, "audit", tmp_path / "nothing", "--dataset", run["dataset"])
    assert code == 2 and "not found" in err


def test_the_deprecated_policy_option_still_selects_the_pack(
    run: dict[str, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = trustai(
        capsys, monkeypatch, "audit", run["checkpoint"], "--dataset", run["dataset"], "--policy",
        run["tmp"] / "data-only.yaml", "--key", run["key"],
    )  # fmt: skip
    assert code == 2 and "'data-only' has no checkpoint-stage checks" in err, err
    assert "--policy is deprecated: use --pack" in err


def test_a_tampered_checkpoint_is_not_audited_or_re_signed(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = copy_run(run, tmp_path / "run")
    readme = checkpoint / "pretrained_model" / "README.md"
    readme.write_text(readme.read_text() + "\nAll checks passed.\n")
    before = snapshot(tmp_path)
    code, out, _ = trustai(
        capsys, monkeypatch, "audit", checkpoint, "--dataset", run["dataset"], "--pack",
        run["tmp"] / "light.yaml", "--key", run["key"], "--public-key", run["public"],
    )  # fmt: skip
    assert code == 1 and "README.md" in out and "refusing" in out
    assert snapshot(tmp_path) == before


def _drop_signature(model: Path) -> None:
    (model / "model.sig").unlink()


def _drop_signature_and_card(model: Path) -> None:  # as LeRobot itself saved it
    (model / "model.sig").unlink()
    shutil.rmtree(model / "trustai")
    (model / "README.md").unlink()


@pytest.mark.parametrize("strip", [_drop_signature, _drop_signature_and_card])
def test_deleting_the_signature_never_launders_changed_weights(
    run: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    strip: Callable[[Path], None],
) -> None:
    checkpoint = copy_run(run, tmp_path / "run")
    model = checkpoint / "pretrained_model"
    nudge_weights(model)
    strip(model)
    before = snapshot(tmp_path)
    code, out, err = trustai(
        capsys, monkeypatch, "audit", checkpoint, "--dataset", run["dataset"], "--pack",
        run["tmp"] / "light.yaml", "--key", run["key"], "--public-key", run["public"],
    )  # fmt: skip
    said = " ".join(out.split())
    assert code == 1, out + err
    assert str(model) in "".join(out.split())  # the folder is named, however the console wrapped it
    assert "signed before" in said and "signature missing" in said and "refusing" in said
    assert snapshot(tmp_path) == before and not (model / "model.sig").exists()


def test_a_re_signed_folder_whose_weights_differ_from_the_recorded_digest_is_refused(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = copy_run(run, tmp_path / "run")
    model = checkpoint / "pretrained_model"
    args = ["audit", checkpoint, "--dataset", run["dataset"], "--pack", run["tmp"] / "light.yaml"]
    args += ["--frames", 1, "--key", run["key"], "--public-key", run["public"]]
    assert trustai(capsys, monkeypatch, *args)[0] == 0  # records the weights digest it signed
    nudge_weights(model)
    sign_folder(model, run["key"])  # whoever holds the key signs other weights outside trustai
    assert verify_checkpoint(checkpoint, run["public"]).ok
    before = snapshot(tmp_path)

    code, out, err = trustai(capsys, monkeypatch, *args)

    said = " ".join(out.split())
    assert code == 1, out + err
    assert "weights digest differs from the recorded one" in said and "refusing" in said
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "extra.pth", "state.pkl", "last.ckpt"])
def test_signing_refuses_pickle_files_beside_the_weights(
    run: dict[str, Path], tmp_path: Path, name: str
) -> None:
    model = Path(shutil.copytree(run["checkpoint"] / "pretrained_model", tmp_path / "model"))
    (model / "model.sig").unlink()
    (model / "trustai" / name).write_bytes(b"not weights")
    with pytest.raises(TrustaiUserError, match=f"refusing to sign pickle-format files: trustai/{name}"):
        sign_folder(model, run["key"])
    assert not (model / "model.sig").exists()


def test_audit_refuses_pickle_files_beside_safetensors_before_writing(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = Path(shutil.copytree(run["checkpoint"] / "pretrained_model", tmp_path / "model"))
    for leftover in ("trustai", "README.md", "model.sig"):  # as LeRobot itself saved it
        path = checkpoint / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    torch.save({"weights": torch.zeros(1)}, checkpoint / "pytorch_model.bin")
    before = snapshot(tmp_path)
    code, out, err = trustai(
        capsys, monkeypatch, "audit", checkpoint, "--dataset", run["dataset"], "--pack",
        run["tmp"] / "light.yaml", "--key", run["key"], "--out", tmp_path / "audits",
    )  # fmt: skip
    assert code == 2, out + err
    assert "refusing to sign pickle-format files: pytorch_model.bin" in " ".join(err.split())
    assert snapshot(tmp_path) == before and not (tmp_path / "audits").exists()


@pytest.fixture(scope="module")
def mismatched(run: dict[str, Path]) -> Path:
    """A dataset whose state and action have 4 dims, not the policy's 6."""
    return make_synthetic_dataset(
        run["tmp"] / "mismatched", episodes=1, frames_per_episode=4, state_dim=4, action_dim=4
    )


def records_after(ledger_path: Path, seq: int, kind: str) -> list[dict]:
    """Payloads of the ``kind`` records appended after record ``seq``."""
    with Ledger(ledger_path, create=False) as ledger:
        return [r.payload for r in ledger.records(kind) if r.seq > seq]


def last_seq(ledger_path: Path) -> int:
    with Ledger(ledger_path, create=False) as ledger:
        return ledger.records()[-1].seq


def test_audit_all_runs_every_checkpoint_in_parallel_on_local_ray_into_one_ledger(
    run: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(run, tmp_path / "run").parent.parent
    ledger = run_dir / "trustai" / "ledger.sqlite"
    before = last_seq(ledger)
    artifacts = run_dir / "trustai" / "artifacts"
    audited_before = len(list(artifacts.glob("audit-*-cli-explanations")))
    plan = plan_audit(
        run_dir,
        run["dataset"],
        run["tmp"] / "light.yaml",
        all_checkpoints=True,
        frames=1,
        key=run["key"],
        public_key=run["public"],
    )
    assert [t.step for t in plan.targets] == [2, 4]
    progress = Progress(console=Console(file=io.StringIO()))

    result = run_audit(plan, progress, runtime="ray")

    assert result.exit_code == 0 and not ray.is_initialized()  # the local Ray it started is gone
    bars = {task.description.split()[0]: task for task in progress.tasks}
    assert (bars["checkpoints"].completed, bars["checkpoints"].total) == (2, 2)
    assert (bars["audits"].completed, bars["audits"].total) == (6, 6)
    assert Ledger(ledger, create=False).verify().ok
    stages = records_after(ledger, before, "stage")
    assert [(s["step"], s["trigger"]) for s in stages] == [(2, "trustai audit"), (4, "trustai audit")]
    evidence = records_after(ledger, before, "evidence")
    assert sorted((e["check_id"], e["inputs"]["step"]) for e in evidence) == sorted(
        itertools.product(CHECKS, [2, 4])
    )
    assert all(e["error"] is None and e["params"]["frames"] == 1 for e in evidence), evidence
    spans = [(datetime.fromisoformat(e["started_at"]).timestamp(), e["duration_s"]) for e in evidence]
    assert any(  # two audits ran at the same time
        a < b + b_len and b < a + a_len for (a, a_len), (b, b_len) in itertools.combinations(spans, 2)
    )
    assert sorted(c["step"] for c in records_after(ledger, before, "card")) == [2, 4]
    for audit in result.audits:
        assert verify_checkpoint(audit.target.folder, run["public"]).ok
        card = json.loads((audit.target.folder / "trustai" / "card.json").read_text())
        step_findings = {f["check_id"] for f in card["governance"]["findings"]}
        assert set(CHECKS) | {"robustness-corruptions", "explanations"} <= step_findings
    assert (artifacts / "checkpoint-2-explanations").is_dir()  # the training-time artifacts stay
    assert len(list(artifacts.glob("audit-*-cli-explanations"))) == audited_before + 2


def test_audit_all_on_a_ray_cluster_address_gates_every_checkpoint(
    run: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = copy_run(run, tmp_path / "run").parent.parent
    args = ["audit", run_dir, "--all", "--dataset", run["dataset"], "--pack", run["tmp"] / "blocking.yaml"]
    args += ["--frames", 1, "--key", run["key"], "--public-key", run["public"]]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        result = subprocess.run(
            [Path(sys.executable).parent / "trustai", *map(str, args), "--ray-address", address],
            capture_output=True,
            text=True,
        )
        assert ray.cluster_resources()["CPU"] == 2  # the audit left the cluster it joined running
    finally:
        ray.shutdown()

    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 checkpoints of" in result.stdout and "gate:   blocked (000002, 000004)" in result.stdout
    for name in ("000002", "000004"):
        assert verify_checkpoint(run_dir / "checkpoints" / name, run["public"]).ok
        card = json.loads(
            (run_dir / "checkpoints" / name / "pretrained_model" / "trustai" / "card.json").read_text()
        )
        assert card["governance"]["gate"] == "blocked"


@pytest.mark.parametrize(
    ("where", "extra", "message"),
    [
        ("checkpoint", [], "no checkpoints/*/pretrained_model in this run"),
        ("run", ["--ray-address", "127.0.0.1:1"], "no Ray cluster answers there"),
        ("run", ["--ray-address", "head-node"], "not a Ray cluster address"),
    ],
)
def test_audit_all_with_bad_input_exits_2_and_writes_nothing(
    run: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    extra: list[str],
    message: str,
) -> None:
    checkpoint = copy_run(run, tmp_path / "run")
    before = snapshot(tmp_path)
    target = checkpoint if where == "checkpoint" else checkpoint.parent.parent
    code, out, err = trustai(
        capsys, monkeypatch, "audit", target, "--all", "--dataset", run["dataset"], "--pack",
        run["tmp"] / "light.yaml", "--key", run["key"], *extra,
    )  # fmt: skip
    assert code == 2, out + err
    assert message in err and "How to fix" in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before


def test_audit_all_refuses_the_whole_run_when_one_checkpoint_was_tampered(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = copy_run(run, tmp_path / "run").parent.parent
    readme = run_dir / "checkpoints" / "000002" / "pretrained_model" / "README.md"
    readme.write_text(readme.read_text() + "\nAll checks passed.\n")
    before = snapshot(tmp_path)
    code, out, _ = trustai(
        capsys, monkeypatch, "audit", run_dir, "--all", "--dataset", run["dataset"], "--pack",
        run["tmp"] / "light.yaml", "--key", run["key"], "--public-key", run["public"],
    )  # fmt: skip
    assert code == 1 and "000002: " in out and "README.md" in out and "refusing" in out
    assert "000004: " not in out
    assert snapshot(tmp_path) == before
