"""The CLI as a user meets it: the demo, `trustai train --pack` with LeRobot flags, keys and which
key `verify` checked against, the deprecated `--policy` and `trustai policy` names, and bad input."""

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import typer

from trustai.cli import app
from trustai.core.ledger import Ledger

BIN = Path(sys.executable).parent / "trustai"


def trustai(*args, **kwargs):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, **kwargs)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_runs_verifies_and_writes_only_inside_its_folder(tmp_path):
    home, cwd, out = tmp_path / "home", tmp_path / "cwd", tmp_path / "out"
    home.mkdir(), cwd.mkdir()
    result = trustai("demo", "--out", out, cwd=cwd, env={**os.environ, "HOME": str(home)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verified" in result.stdout and result.stdout.count("yes") == 2
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []
    checkpoints = sorted(out.glob("run/checkpoints/[0-9]*/pretrained_model"))
    assert len(checkpoints) == 2
    public = out / "keys" / "signing-key.pub"
    check = trustai("verify", checkpoints[-1], "--public-key", public)
    assert check.returncode == 0, check.stdout
    assert f"public key: {public} (given, sha256:{sha256_of(public)})" in check.stdout
    again = trustai("demo", "--out", out)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_train_with_a_pack_passes_lerobot_flags_through_and_signs_with_the_default_key(tmp_path):
    from trustai.cli.demo import demo_train_flags
    from trustai.lerobot.synthetic import make_synthetic_dataset

    dataset = make_synthetic_dataset(
        tmp_path / "ds", repo_id="trustai/cli", episodes=2, frames_per_episode=12
    )
    home = {**os.environ, "TRUSTAI_HOME": str(tmp_path / "home")}
    assert trustai("keys", "generate", env=home).returncode == 0
    flags = demo_train_flags(dataset, tmp_path / "run", steps=4, save_freq=2)
    assert "--policy.type=act" in flags and "--policy.dim_model=64" in flags
    result = trustai("train", "--pack", "default", "--", *flags, env=home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--policy is deprecated" not in result.stderr  # LeRobot's --policy.* are not trustai's alias
    model = tmp_path / "run" / "checkpoints" / "000004" / "pretrained_model"
    config = json.loads((model / "config.json").read_text())
    assert (config["type"], config["dim_model"]) == ("act", 64)  # LeRobot got its --policy.* flags
    assert (model / "model.sig").is_file()
    with Ledger(tmp_path / "run" / "trustai" / "ledger.sqlite", create=False) as ledger:
        assert ledger.records("run.start")[-1].payload["policy_pack"]["name"] == "default"
    assert trustai("ledger", "verify", tmp_path / "run").returncode == 0

    public = tmp_path / "home" / "signing-key.pub"
    checkpoint = tmp_path / "run" / "checkpoints" / "000002"
    by_default = trustai("verify", checkpoint, env=home)
    assert by_default.returncode == 0, by_default.stdout
    assert f"public key: {public} ($TRUSTAI_HOME, sha256:{sha256_of(public)})" in by_default.stdout
    elsewhere = {**os.environ, "TRUSTAI_HOME": str(tmp_path / "empty")}
    unchecked = trustai("verify", checkpoint, env=elsewhere)
    assert unchecked.returncode == 1 and "signature not checked" in unchecked.stdout
    assert f"none at {tmp_path / 'empty' / 'signing-key.pub'}" in unchecked.stdout


def test_the_deprecated_policy_names_still_work_with_a_note(tmp_path):
    listed = trustai("policy", "list")
    assert listed.returncode == 0 and "eu-ai-act-high-risk" in listed.stdout, listed.stderr
    assert "`trustai policy` is deprecated: use `trustai pack`" in listed.stderr
    commands = typer.main.get_command(app).commands
    assert commands["policy"].hidden and not commands["pack"].hidden

    no_key = ["--key", tmp_path / "nokey.pem", "--", "--policy.type=act"]
    aliased = trustai("train", "--policy", "no-such-pack", *no_key)
    assert aliased.returncode == 2 and "no policy pack named 'no-such-pack'" in aliased.stderr
    assert "--policy is deprecated: use --pack" in aliased.stderr
    lerobot_flag = trustai("train", "--key", tmp_path / "nokey.pem", "--policy.type=act")  # without --
    assert lerobot_flag.returncode == 2 and "signing key not found" in lerobot_flag.stderr
    assert "--policy is deprecated" not in lerobot_flag.stderr
    both = trustai("train", "--pack", "default", "--policy", "default", *no_key)
    assert both.returncode == 2 and "both --pack and --policy given" in both.stderr


def test_keys_are_private_and_never_overwritten(tmp_path):
    private = tmp_path / "keys" / "signing.pem"
    assert trustai("keys", "generate", "--private", private).returncode == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    before = private.read_bytes()
    again = trustai("keys", "generate", "--private", private)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert private.read_bytes() == before


def test_bad_input_exits_2_with_a_clear_message(tmp_path):
    cases = [
        (["verify", tmp_path / "missing"], "not found"),
        (["ledger", "verify", tmp_path], "no trustai ledger"),
        (["pack", "show", "no-such-pack"], "no policy pack named"),
        (["train", "--key", tmp_path / "nokey.pem", "--", "--policy.type=act"], "signing key not found"),
    ]
    for args, message in cases:
        result = trustai(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
