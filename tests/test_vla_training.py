"""SmolVLA and GR00T N1.7 governed end to end with LeRobot's real classes on tiny local backbones
(tests/vla_backbones.py; nothing downloaded): `trustai train` runs LeRobot's trainer for a few steps
on a synthetic dataset with tasks, its checkpoint stage runs the robustness, explainability (with
the language instruction attributed), fairness and membership-inference audits and signs a card
that verifies; `trustai audit` then runs the same checks on the saved checkpoint.

Both train from scratch: ``--policy.type=smolvla`` on the local SmolVLM folder, ``--policy.type=groot``
on the local raw GR00T base, whose config names the local Qwen3-VL folder. Every pipeline LeRobot 0.6.1
*makes* for GR00T names the hub's Cosmos-Reason2 processor; `trustai train` points it at the base's
Qwen3-VL folder, and the saved pipeline must keep that folder."""

import json
import sys
from pathlib import Path

import pytest

from tests.policies_fixtures import features_dataset
from tests.vla_backbones import write_groot_base, write_qwen3vl_backbone, write_smolvlm_backbone
from trustai.attest.keys import generate_keypair
from trustai.cli import main
from trustai.core.ledger import Ledger

VLA_PACK = """
name: vla-checkpoint
checks:
  - id: corruptions
    audit: robustness.corruptions
    stage: checkpoint
    params: {frames: 2, corruptions: [gaussian_noise, camera_dropout, state_noise], severities: [3]}
    severity: warn
  - id: adversarial
    audit: robustness.adversarial
    stage: checkpoint
    params: {frames: 2, steps: 1, epsilons: [0.0, 0.0157]}
    severity: warn
  - id: explanations
    audit: explainability.attributions
    stage: checkpoint
    params: {frames: 1, ig_steps: 2, occlusion_fraction: 0.5, deletion_fractions: [0.2], heatmap_frames: 1}
    severity: info
  - id: group-parity
    audit: fairness.group_parity
    stage: checkpoint
    params: {min_group_size: 1}
    severity: info
  - id: membership
    audit: privacy.membership_inference
    stage: checkpoint
    params: {max_samples: 4, batch_size: 4}
    severity: info
"""
CHECKS = ("corruptions", "adversarial", "explanations", "group-parity", "membership")
SMOLVLA_FLAGS = [
    "--policy.type=smolvla",
    "--policy.load_vlm_weights=false",
    "--policy.chunk_size=5",
    "--policy.n_action_steps=5",
    "--policy.max_state_dim=16",
    "--policy.max_action_dim=16",
    "--policy.num_steps=2",
    "--policy.resize_imgs_with_padding=[64,64]",
    "--policy.num_vlm_layers=2",
    "--policy.expert_width_multiplier=0.5",
    "--policy.tokenizer_max_length=16",
]
GROOT_FLAGS = [  # the sizes of tests/vla_backbones.py's tiny_groot
    "--policy.type=groot",
    "--policy.chunk_size=5",
    "--policy.n_action_steps=5",
    "--policy.max_state_dim=16",
    "--policy.max_action_dim=16",
    "--policy.use_bf16=false",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Backbones (SmolVLM; Qwen3-VL under a raw GR00T base), a dataset of two episodes (one task each),
    a pack and a key."""
    tmp = tmp_path_factory.mktemp("vla-training")
    qwen = write_qwen3vl_backbone(tmp / "qwen3vl")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    (tmp / "vla.yaml").write_text(VLA_PACK)
    return {
        "tmp": tmp,
        "smolvlm": write_smolvlm_backbone(tmp / "smolvlm"),
        "qwen3vl": qwen,
        "groot-base": write_groot_base(tmp / "groot-base", qwen),
        "dataset": features_dataset(tmp / "dataset"),
        "pack": tmp / "vla.yaml",
        "key": tmp / "k.pem",
        "public": tmp / "k.pub",
    }


def trustai(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: object) -> tuple[int, str]:
    """Run the CLI in this process; return its exit code and everything it printed."""
    monkeypatch.setattr(sys, "argv", ["trustai", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out + out.err


def _evidence(run: Path) -> dict[str, list[dict]]:
    with Ledger(run / "trustai" / "ledger.sqlite", create=False) as ledger:
        found: dict[str, list[dict]] = {}
        for record in ledger.records("evidence"):
            found.setdefault(record.payload["check_id"], []).append(record.payload)
    return found


@pytest.mark.parametrize("policy", ["smolvla", "groot"])
def test_trained_audited_and_signed_with_language_attributed(
    policy: str, setup: dict[str, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = setup["tmp"] / f"run-{policy}"
    policy_flags = (
        [*SMOLVLA_FLAGS, f"--policy.vlm_model_name={setup['smolvlm']}"]
        if policy == "smolvla"
        else [*GROOT_FLAGS, f"--policy.base_model_path={setup['groot-base']}"]
    )
    flags = [
        "--dataset.repo_id=trustai/vla",
        f"--dataset.root={setup['dataset']}",
        "--dataset.episodes=[0]",  # episode 1 stays held out (membership inference)
        *policy_flags,
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        f"--output_dir={run}",
        "--steps=2",
        "--save_freq=2",
        "--batch_size=2",
        "--log_freq=1",
        "--num_workers=0",
        "--wandb.enable=false",
        "--seed=1000",
    ]
    code, printed = trustai(
        capsys, monkeypatch, "train", "--pack", setup["pack"], "--key", setup["key"], "--", *flags
    )
    assert code == 0, printed[-3000:]
    checkpoint = run / "checkpoints" / "000002"
    assert json.loads((checkpoint / "pretrained_model" / "config.json").read_text())["type"] == policy
    if policy == "groot":  # the saved pipeline loads its Qwen3-VL processor from the local folder
        pipeline = json.loads((checkpoint / "pretrained_model" / "policy_preprocessor.json").read_text())
        steps = pipeline["steps"]
        names = [s["config"]["model_name"] for s in steps if s["registry_name"] == "groot_n1_7_vlm_encode_v1"]
        assert names == [str(setup["qwen3vl"])]

    trained = _evidence(run)
    for check in CHECKS:
        assert [e["error"] for e in trained[check]] == [None], (check, trained[check])
    shares = trained["explanations"][0]["metrics"]
    for method in ("integrated_gradients", "saliency", "occlusion"):
        assert shares[f"share_{method}_language"] > 0, method
        assert shares[f"share_{method}_top"] > 0 and shares[f"share_{method}_wrist"] > 0, method
    card = json.loads((checkpoint / "pretrained_model" / "trustai" / "card.json").read_text())
    assert {f["check_id"] for f in card["governance"]["findings"]} >= set(CHECKS)

    verified, printed = trustai(capsys, monkeypatch, "verify", checkpoint, "--public-key", setup["public"])
    assert verified == 0, printed

    audited, printed = trustai(
        capsys,
        monkeypatch,
        "audit",
        checkpoint,
        "--dataset",
        setup["dataset"],
        "--pack",
        setup["pack"],
        "--key",
        setup["key"],
    )
    assert audited == 0, printed[-3000:]
    after = _evidence(run)
    for check in CHECKS:
        assert len(after[check]) == 2 and after[check][-1]["error"] is None, (check, after[check][-1])
    assert trustai(capsys, monkeypatch, "verify", checkpoint, "--public-key", setup["public"])[0] == 0
