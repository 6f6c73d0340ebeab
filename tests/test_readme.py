"""The README's promises, run: its "In your own training script" example trains a governed run that
records the seed LeRobot used and the training config, and ``trustai train`` offline ends a failed
weight download with one message (exit 2), without torchcodec's FFmpeg load tracebacks."""

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from trustai.attest.keys import default_key_paths, generate_keypair
from trustai.attest.verify import verify_checkpoint
from trustai.cli.demo import demo_train_flags
from trustai.lerobot.synthetic import make_synthetic_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent


def readme_block(section: str) -> str:
    """The first ```python block under the README heading ``section``."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", body, re.DOTALL)
    assert match, f"no python block under '## {section}'"
    return match.group(1)


def records(run_dir: Path, kind: str) -> list[dict]:
    db = sqlite3.connect(run_dir / "trustai" / "ledger.sqlite")
    try:
        return [
            json.loads(p)
            for (p,) in db.execute("SELECT payload FROM records WHERE kind = ? ORDER BY seq", (kind,))
        ]
    finally:
        db.close()


def test_readme_training_script_records_the_real_seed_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "train_governed.py"
    script.write_text(readme_block("In your own training script"), encoding="utf-8")
    monkeypatch.setenv("TRUSTAI_HOME", str(tmp_path / "trustai-home"))  # the block signs with its key
    private, public = default_key_paths()
    generate_keypair(private, public)
    dataset = make_synthetic_dataset(tmp_path / "dataset", repo_id="trustai/readme", episodes=2)
    flags = [
        f for f in demo_train_flags(dataset, tmp_path / "run", steps=2, save_freq=2) if "--seed" not in f
    ]
    done = subprocess.run(
        [sys.executable, script, *flags, "--seed=3"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]

    run_dir = tmp_path / "run"
    (start,) = records(run_dir, "run.start")
    manifest = start["manifest"]
    assert manifest["seed"] == 3
    config = manifest["train_config"]
    assert (config["seed"], config["steps"], config["policy"]["type"]) == (3, 2, "act")
    assert config["dataset"]["root"] == str(dataset)
    provenance = [e for e in records(run_dir, "evidence") if e["audit"] == "provenance.manifest"]
    assert provenance and all(
        e["metrics"]["seed_recorded"] and e["metrics"]["train_config_recorded"] for e in provenance
    )
    report = verify_checkpoint(run_dir / "checkpoints" / "000002", public)
    assert report.ok, [(s.name, s.problems) for s in report.steps]


def test_train_offline_without_backbone_weights_flag_says_how_to_fix_and_exits_2(tmp_path: Path) -> None:
    """Diffusion's default ResNet backbone weights come from download.pytorch.org: with no way out
    (a proxy nothing answers) and an empty torch hub cache, that download fails."""
    key = tmp_path / "k.pem"
    generate_keypair(key, tmp_path / "k.pub")
    dataset = make_synthetic_dataset(
        tmp_path / "dataset", repo_id="trustai/offline", episodes=2, image_size=(96, 96), use_videos=True
    )
    nowhere = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "TORCH_HOME": str(tmp_path / "torch"),
        **{name: nowhere for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
    }
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    flags = [
        "--dataset.repo_id=trustai/offline",
        f"--dataset.root={dataset}",
        "--policy.type=diffusion",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        f"--output_dir={tmp_path / 'run'}",
        "--steps=1",
        "--batch_size=2",
        "--num_workers=0",
        "--wandb.enable=false",
    ]
    done = subprocess.run(
        [BIN / "trustai", "train", "--key", key, "--", *flags], env=env, capture_output=True, text=True
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-4000:]
    assert "could not download the pretrained backbone weights" in done.stderr, output[-4000:]
    assert "--policy.pretrained_backbone_weights=null" in done.stderr
    assert "Traceback" not in output, output[-4000:]
    assert "libtorchcodec" not in output  # the video dataset was opened with pyav, quietly
