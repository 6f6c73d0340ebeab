"""DP-SGD vs non-private LeRobot training of the same tiny ACT policy, side by side in one process.

All runs use LeRobot's own ``train()`` with identical flags and a GovernedAccelerator; the only
difference is the policy pack: a pack with no checks, ``privacy.dp`` with per-frame gradients in every
layer (vanilla DP-SGD with Opacus: per-frame gradients, clipping, noise, Poisson sampling), and
``privacy.dp`` with ghost clipping where the layers allow it (the default; same mechanism and ε).
Step time is the median gap between consecutive ``backward`` calls (the gap that holds LeRobot's final
checkpoint is left out). A warm-up round runs first, unmeasured; then the modes alternate to spread
drift.

    .venv/bin/python -m benchmarks.dp_vs_nonprivate_step [--steps 12] [--repeats 2] [--device cuda]
"""

import argparse
import itertools
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

DP_PACK = """
name: dp-only
checks:
  - id: dp
    audit: privacy.dp
    stage: train
    params: {{target_epsilon: 8.0, delta: 1.0e-5, max_grad_norm: 1.0, accountant: prv, clipping: {clipping}}}
"""
PACKS = {
    "non-private": "name: no-checks\nchecks: []\n",
    "DP per-frame": DP_PACK.format(clipping="per-frame"),
    "DP ghost": DP_PACK.format(clipping="ghost"),
}


def step_times(stamps: list[float]) -> list[float]:
    """Gaps between consecutive backward calls, without the last (it holds LeRobot's final checkpoint)."""
    return [b - a for a, b in itertools.pairwise(stamps)][:-1]


def main() -> None:
    """Run the warm-up round and the measured runs, then print median step times and their ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the policy trains (cpu, cuda)")
    args = parser.parse_args()

    from lerobot.scripts.lerobot_train import train
    from trustai.training_hooks.lerobot import GovernedAccelerator
    from trustai.training_hooks.lerobot_train import accelerator_kwargs, parse_train_config

    from trustai.cli.demo import demo_train_flags
    from trustai.governance import Governance
    from trustai.lerobot.synthetic import make_synthetic_dataset
    from trustai.packs import parse_pack

    logging.disable(logging.WARNING)

    class Timed(GovernedAccelerator):
        def backward(self, loss, **kwargs):
            super().backward(loss, **kwargs)
            self.stamps.append(time.perf_counter())

    tmp = Path(tempfile.mkdtemp(prefix="trustai-dp-bench-"))
    dataset = make_synthetic_dataset(tmp / "ds", repo_id="trustai/bench", episodes=6, frames_per_episode=30)
    packs = {mode: parse_pack(text, f"{mode}.yaml") for mode, text in PACKS.items()}
    device_flag = [f"--policy.device={args.device}"]

    def run(mode: str, name: str, steps: int) -> list[float]:
        flags = demo_train_flags(dataset, tmp / name, steps, save_freq=steps)
        cfg = parse_train_config([f for f in flags if not f.startswith("--policy.device=")] + device_flag)
        acc = Timed(governance=Governance(Path(cfg.output_dir), packs[mode]), **accelerator_kwargs(cfg))
        acc.stamps = []
        train(cfg, accelerator=acc)
        acc.governance.close()
        return step_times(acc.stamps)

    for mode in PACKS:  # warm-up: imports, dataset caching, allocator growth
        run(mode, f"warmup-{mode}", 3)
    times: dict[str, list[float]] = {mode: [] for mode in PACKS}
    for rep in range(args.repeats):
        for mode in PACKS:
            times[mode] += run(mode, f"{mode}-{rep}", args.steps)

    medians = {mode: statistics.median(times[mode]) for mode in PACKS}
    plain = medians["non-private"]
    print(
        f"tiny ACT (ResNet-18), batch 8 (DP: Poisson, mean 8), {args.steps} steps x {args.repeats} runs, "
        f"{args.device}"
    )
    print(f"{'':16}{'median step (ms)':>18}{'vs non-private':>16}")
    for mode, median in medians.items():
        print(f"{mode:16}{median * 1e3:18.1f}{median / plain:16.2f}")
    ghost, per_frame = medians["DP ghost"], medians["DP per-frame"]
    print(f"ghost / per-frame: {ghost / per_frame:.2f}")


if __name__ == "__main__":
    main()
