"""DP-SGD vs non-private LeRobot training of the same tiny ACT policy, side by side in one process.

Both runs use LeRobot's own ``train()`` with identical flags and a GovernedAccelerator; the only
difference is the policy pack: ``privacy.dp`` alone (DP-SGD with Opacus: per-frame gradients, clipping,
noise, Poisson sampling) against a pack with no checks. Step time is the median gap between
consecutive ``backward`` calls (the gap that holds LeRobot's final checkpoint is left out). A warm-up
pair runs first, unmeasured; then the modes alternate (plain, DP, plain, DP, ...) to spread drift.

    .venv/bin/python -m benchmarks.dp_vs_nonprivate_step [--steps 12] [--repeats 2]
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

PACKS = {
    "non-private": "name: no-checks\nchecks: []\n",
    "DP-SGD": """
name: dp-only
checks:
  - id: dp
    audit: privacy.dp
    stage: train
    params: {target_epsilon: 8.0, delta: 1.0e-5, max_grad_norm: 1.0, accountant: prv}
""",
}


def step_times(stamps: list[float]) -> list[float]:
    """Gaps between consecutive backward calls, without the last (it holds LeRobot's final checkpoint)."""
    return [b - a for a, b in itertools.pairwise(stamps)][:-1]


def main() -> None:
    """Run the warm-up pair and the measured runs, then print median step times and their ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
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

    def run(mode: str, name: str, steps: int) -> list[float]:
        cfg = parse_train_config(demo_train_flags(dataset, tmp / name, steps, save_freq=steps))
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

    plain, private = (statistics.median(times[mode]) for mode in PACKS)
    print(f"tiny ACT (ResNet-18), batch 8 (DP: Poisson, mean 8), {args.steps} steps x {args.repeats} runs")
    print(f"{'':24}{'non-private':>12}{'DP-SGD':>12}{'ratio':>10}")
    print(f"{'median step time (ms)':24}{plain * 1e3:12.1f}{private * 1e3:12.1f}{private / plain:10.2f}")


if __name__ == "__main__":
    main()
