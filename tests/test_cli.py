"""The CLI as a user meets it: the demo, `trustai train` with LeRobot flags, keys, and bad input."""

import os
import stat
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "trustai"


def trustai(*args, **kwargs):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, **kwargs)


def test_demo_runs_verifies_and_writes_only_inside_its_folder(tmp_path):
    home, cwd, out = tmp_path / "home", tmp_path / "cwd", tmp_path / "out"
    home.mkdir(), cwd.mkdir()
    result = trustai("demo", "--out", out, cwd=cwd, env={**os.environ, "HOME": str(home)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verified" in result.stdout and result.stdout.count("yes") == 2
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []
    checkpoints = sorted(out.glob("run/checkpoints/[0-9]*/pretrained_model"))
    assert len(checkpoints) == 2
    check = trustai("verify", checkpoints[-1], "--public-key", out / "keys" / "signing-key.pub")
    assert check.returncode == 0, check.stdout
    again = trustai("demo", "--out", out)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_train_passes_lerobot_flags_through(tmp_path):
    from trustai.demo import demo_train_flags
    from trustai.synthetic import make_synthetic_dataset

    dataset = make_synthetic_dataset(
        tmp_path / "ds", repo_id="trustai/cli", episodes=2, frames_per_episode=12
    )
    assert trustai("keys", "generate", "--private", tmp_path / "k.pem").returncode == 0
    flags = demo_train_flags(dataset, tmp_path / "run", steps=4, save_freq=2)
    result = trustai("train", "--policy", "default", "--key", tmp_path / "k.pem", "--", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "000004" / "pretrained_model" / "model.sig").is_file()
    assert trustai("ledger", "verify", tmp_path / "run").returncode == 0
    assert (
        trustai(
            "verify", tmp_path / "run" / "checkpoints" / "000002", "--public-key", tmp_path / "k.pub"
        ).returncode
        == 0
    )


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
        (["policy", "show", "no-such-pack"], "no policy pack named"),
        (["train", "--key", tmp_path / "nokey.pem", "--", "--policy.type=act"], "signing key not found"),
    ]
    for args, message in cases:
        result = trustai(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
