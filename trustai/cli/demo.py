"""``trustai demo``: the whole path on a laptop — a synthetic LeRobot dataset (two tasks, one camera,
6-dof state), governed LeRobot training of a tiny ACT policy on CPU with two checkpoints, signed
cards, their verification, and the run's EU AI Act technical documentation (HTML). Everything it
writes stays inside its output folder."""

import os
from dataclasses import dataclass
from pathlib import Path

from trustai import layout
from trustai.errors import TrustaiUserError


@dataclass
class DemoResult:
    """Where the demo put things, and the verification of each checkpoint."""

    out: Path
    dataset: Path
    run_dir: Path
    public_key: Path
    checkpoints: list[Path]
    reports: list  # trustai.attest.verify.VerifyReport per checkpoint
    compliance_report: Path  # the EU AI Act technical documentation of the run (HTML)


def demo_train_flags(dataset: Path, run_dir: Path, steps: int = 40, save_freq: int = 20) -> list[str]:
    """Return the lerobot-train flags of the demo: a tiny ACT on CPU with random weights."""
    return [
        "--dataset.repo_id=trustai/demo",
        f"--dataset.root={dataset}",
        "--policy.type=act",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--policy.pretrained_backbone_weights=null",
        "--policy.dim_model=64",
        "--policy.dim_feedforward=128",
        "--policy.n_heads=2",
        "--policy.n_encoder_layers=1",
        "--policy.n_decoder_layers=1",
        "--policy.chunk_size=5",
        "--policy.n_action_steps=5",
        "--policy.use_vae=false",
        f"--output_dir={run_dir}",
        f"--steps={steps}",
        f"--save_freq={save_freq}",
        "--batch_size=8",
        "--log_freq=10",
        "--num_workers=0",
        "--wandb.enable=false",
        "--seed=1000",
    ]


def run_demo(out: Path, pack: str = "default") -> DemoResult:
    """Run the demo into ``out`` (which must not exist yet) and return what it produced."""
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise TrustaiUserError(
            "output folder already exists and is not empty",
            where=str(out),
            fix="pass --out with a new folder, or delete this one",
        )
    out.mkdir(parents=True, exist_ok=True)
    # Keep every cache LeRobot or Hugging Face might write inside the demo folder, and stay offline.
    os.environ.update(
        {
            "HF_HOME": str(out / ".cache" / "huggingface"),
            "HF_HUB_OFFLINE": "1",
            "HF_LEROBOT_HOME": str(out / ".cache" / "lerobot"),
            "WANDB_MODE": "disabled",
            "MPLCONFIGDIR": str(out / ".cache" / "matplotlib"),
        }
    )
    # Imported only now: `datasets` and LeRobot read their cache locations at import time.
    from trustai.attest.keys import generate_keypair
    from trustai.attest.verify import verify_checkpoint
    from trustai.lerobot.synthetic import make_synthetic_dataset
    from trustai.reports.build import write_report
    from trustai.training_hooks.lerobot_train import governed_train

    private, public = out / "keys" / "signing-key.pem", out / "keys" / "signing-key.pub"
    generate_keypair(private, public)
    dataset = make_synthetic_dataset(
        out / "dataset", repo_id="trustai/demo", episodes=6, frames_per_episode=30
    )
    run_dir = governed_train(demo_train_flags(dataset, out / "run"), pack, private)
    checkpoints = layout.checkpoint_models(run_dir)
    reports = [verify_checkpoint(c, public) for c in checkpoints]
    compliance = write_report(run_dir, "eu-ai-act", "html", out / "report-eu-ai-act.html", public_key=public)
    return DemoResult(out, dataset, run_dir, public, checkpoints, reports, compliance[0])
