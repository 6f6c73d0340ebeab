"""Signing and verifying model folders with the real model-signing library and its stock CLI; a sealed
card states the gate `trustai status` states and still verifies."""

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from trustai.reports.run_status import run_status

from trustai.attest.card import model_index_metrics
from trustai.attest.keys import default_key_paths, generate_keypair
from trustai.attest.signing import SIGNATURE_NAME, sign_folder, verify_folder
from trustai.attest.verify import verify_checkpoint
from trustai.core.canonical import file_sha256
from trustai.errors import TrustaiUserError
from trustai.governance import Governance
from trustai.packs import parse_pack

STOCK_CLI = Path(sys.executable).with_name("model_signing")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "keys" / "signing-key.pem", tmp_path / "keys" / "signing-key.pub"
    generate_keypair(private, public)
    return private, public


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoint" / "pretrained_model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"type": "act"}\n')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "sub" / "stats.json").write_text('{"mean": [0.5]}\n')
    return folder


def _only_problem_about(result, name: str) -> str:
    assert not result.ok
    about = [p for p in result.problems if p.startswith(f"{name}:")]
    assert len(about) == 1, result.problems
    return about[0]


def _signed_digests(folder: Path) -> dict[str, str]:
    """File -> digest as recorded in the bundle's in-toto statement (read here, not through trustai)."""
    bundle = json.loads((folder / SIGNATURE_NAME).read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}


def _stock_verify(folder: Path, public: Path, *extra: str) -> subprocess.CompletedProcess:
    assert STOCK_CLI.exists(), STOCK_CLI
    cmd = [str(STOCK_CLI), "verify", "key", "--signature", str(folder / SIGNATURE_NAME)]
    return subprocess.run(
        [*cmd, "--public_key", str(public), *extra, str(folder)], capture_output=True, text=True, timeout=60
    )


def test_sign_then_verify_ok(model: Path, keys: tuple[Path, Path]) -> None:
    signature = sign_folder(model, keys[0])
    assert signature == model.resolve() / SIGNATURE_NAME and signature.is_file()
    result = verify_folder(model, keys[1])
    assert result.ok and result.problems == []
    recorded = _signed_digests(model)
    assert set(recorded) == {"config.json", "model.safetensors", "sub/stats.json"}
    assert recorded["sub/stats.json"] == file_sha256(model / "sub" / "stats.json")


def test_flipped_byte_names_the_file(model: Path, keys: tuple[Path, Path]) -> None:
    sign_folder(model, keys[0])
    data = bytearray((model / "model.safetensors").read_bytes())
    data[1000] ^= 0x01
    (model / "model.safetensors").write_bytes(bytes(data))
    result = verify_folder(model, keys[1])
    assert "changed" in _only_problem_about(result, "model.safetensors")
    assert len(result.problems) == 1


def test_deleted_file_is_named(model: Path, keys: tuple[Path, Path]) -> None:
    sign_folder(model, keys[0])
    (model / "sub" / "stats.json").unlink()
    result = verify_folder(model, keys[1])
    assert "missing" in _only_problem_about(result, "sub/stats.json")


def test_added_file_is_named(model: Path, keys: tuple[Path, Path]) -> None:
    sign_folder(model, keys[0])
    (model / "sub" / "backdoor.py").write_text("print('hi')\n")
    result = verify_folder(model, keys[1])
    assert "added" in _only_problem_about(result, "sub/backdoor.py")


def test_other_key_is_rejected(model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    sign_folder(model, keys[0])
    other_private, other_public = tmp_path / "other.pem", tmp_path / "other.pub"
    generate_keypair(other_private, other_public)
    result = verify_folder(model, other_public)
    assert "different key" in _only_problem_about(result, SIGNATURE_NAME)


def test_forged_signature_is_rejected(model: Path, keys: tuple[Path, Path]) -> None:
    sign_folder(model, keys[0])
    signature = model / SIGNATURE_NAME
    bundle = json.loads(signature.read_text())
    sig = bundle["dsseEnvelope"]["signatures"][0]["sig"]
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    signature.write_text(json.dumps(bundle))
    result = verify_folder(model, keys[1])
    assert "not a valid signature" in _only_problem_about(result, SIGNATURE_NAME)


def test_missing_and_garbage_signature(model: Path, keys: tuple[Path, Path]) -> None:
    assert "missing" in _only_problem_about(verify_folder(model, keys[1]), SIGNATURE_NAME)
    (model / SIGNATURE_NAME).write_text("not json")
    assert "not a valid signature" in _only_problem_about(verify_folder(model, keys[1]), SIGNATURE_NAME)


def test_symlinks_refused_and_reported(model: Path, keys: tuple[Path, Path]) -> None:
    (model / "sub" / "link.json").symlink_to(model / "config.json")
    with pytest.raises(TrustaiUserError, match=r"sub/link\.json"):
        sign_folder(model, keys[0])
    (model / "sub" / "link.json").unlink()
    sign_folder(model, keys[0])
    (model / "sub" / "link.json").symlink_to(model / "config.json")
    assert "symbolic link" in _only_problem_about(verify_folder(model, keys[1]), "sub/link.json")


def test_unusable_input_raises(model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TrustaiUserError):
        sign_folder(tmp_path / "nope", keys[0])
    with pytest.raises(TrustaiUserError):
        sign_folder(model, tmp_path / "missing.pem")
    with pytest.raises(TrustaiUserError):
        sign_folder(model, keys[1])  # a public key is not a signing key
    sign_folder(model, keys[0])
    with pytest.raises(TrustaiUserError):
        verify_folder(tmp_path / "nope", keys[1])
    with pytest.raises(TrustaiUserError):
        verify_folder(model, keys[0])  # the private key is not a public key


def test_stock_cli_accepts_and_then_rejects(model: Path, keys: tuple[Path, Path]) -> None:
    sign_folder(model, keys[0])
    good = _stock_verify(model, keys[1])
    assert good.returncode == 0, good.stderr
    (model / "config.json").write_text('{"type": "diffusion"}\n')
    bad = _stock_verify(model, keys[1])
    assert bad.returncode != 0
    assert "config.json" in bad.stderr


def test_stock_cli_needs_flag_for_git_metadata(model: Path, keys: tuple[Path, Path]) -> None:
    (model / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    sign_folder(model, keys[0])
    assert "gitattributes" in " ".join(_signed_digests(model))
    assert _stock_verify(model, keys[1], "--no-ignore-git-paths").returncode == 0
    assert _stock_verify(model, keys[1]).returncode != 0  # the CLI skips git files unless told not to
    (model / ".gitattributes").write_text("changed\n")
    assert "changed" in _only_problem_about(verify_folder(model, keys[1]), ".gitattributes")


def test_generate_keypair_modes_and_no_overwrite(tmp_path: Path) -> None:
    private, public = tmp_path / "k" / "signing-key.pem", tmp_path / "k" / "signing-key.pub"
    generate_keypair(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    before = private.read_bytes()
    with pytest.raises(TrustaiUserError, match="overwrite"):
        generate_keypair(private, tmp_path / "k" / "fresh.pub")
    with pytest.raises(TrustaiUserError, match="overwrite"):
        generate_keypair(tmp_path / "k" / "fresh.pem", public)
    assert private.read_bytes() == before
    assert not (tmp_path / "k" / "fresh.pem").exists() and not (tmp_path / "k" / "fresh.pub").exists()


def test_default_key_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRUSTAI_HOME", str(tmp_path / "th"))
    assert default_key_paths() == (tmp_path / "th" / "signing-key.pem", tmp_path / "th" / "signing-key.pub")
    monkeypatch.delenv("TRUSTAI_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    base = tmp_path / ".config" / "trustai"
    assert default_key_paths() == (base / "signing-key.pem", base / "signing-key.pub")


# Every check passes but one `warn` check: the checkpoint's gate is `warn`, wherever it is stated.
WARN_ONLY_PACK = """
name: warn-only
checks:
  - id: config-recorded
    audit: provenance.manifest
    stage: checkpoint
    thresholds: {train_config_recorded: {min: 1}}
    severity: block
  - id: seed-impossible
    audit: provenance.manifest
    stage: checkpoint
    thresholds: {seed_recorded: {max: -1}}
    severity: warn
"""


def test_a_warn_only_checkpoint_card_states_the_gate_trustai_status_states(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    model = run_dir / "checkpoints" / "000002" / "pretrained_model"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 16)
    manifest = {"seed": 0, "train_config": {"steps": 2}, "dataset": {"id": "d", "fingerprint": "f"}}
    governance = Governance(run_dir, parse_pack(WARN_ONLY_PACK, "warn-only.yaml"), signing_key=keys[0])
    try:
        governance.start(manifest)
        governance.checkpoint_stages(model, 2, training={}, manifest=manifest)
    finally:
        governance.close()
    card = json.loads((model / "trustai" / "card.json").read_text())
    [checkpoint] = run_status(run_dir).checkpoints
    assert checkpoint.gate.as_json() == {"verdict": "warn", "blocking": [], "warnings": ["seed-impossible"]}
    stated = card["governance"]
    assert (stated["gate"], stated["blocking"], stated["warnings"]) == ("warn", [], ["seed-impossible"])
    assert "Governance gate: **warn**" in (model / "README.md").read_text()
    assert {"type": "trustai/gate", "name": "trustai governance gate", "value": "warn"} in (
        model_index_metrics(card)
    )
    assert verify_checkpoint(model, keys[1]).ok
