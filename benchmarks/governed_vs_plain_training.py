"""Governed vs plain LeRobot training of the same tiny ACT policy, side by side in one process.

Both runs use LeRobot's own ``train()`` with identical flags; the only difference is the Accelerator.
Step time is the median gap between consecutive ``backward`` calls (checkpoint steps excluded, since
they include LeRobot's own saving); wall time is the whole ``train()`` call, checkpoint audits and
signed cards included. Runs alternate (plain, governed, plain, governed, ...) to spread drift.

    .venv/bin/python benchmarks/governed_vs_plain_training.py [--steps 60] [--repeats 2]
"""

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def step_times(stamps: list[float], skip: set[int]) -> list[float]:
    """Gaps between consecutive backward calls, leaving out the gaps that contain a checkpoint."""
    return [b - a for i, (a, b) in enumerate(itertools.pairwise(stamps), start=1) if i not in skip]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-freq", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import logging

    from accelerate import Accelerator
    from lerobot.scripts.lerobot_train import train
    from trustai.training_hooks.lerobot import GovernedAccelerator

    from trustai.demo import demo_train_flags
    from trustai.governance import Governance
    from trustai.keys import generate_keypair
    from trustai.lerobot_train import accelerator_kwargs, parse_train_config
    from trustai.synthetic import make_synthetic_dataset

    logging.disable(logging.INFO)

    def timed(cls: type) -> type:
        class Timed(cls):
            def backward(self, loss, **kwargs):
                super().backward(loss, **kwargs)
                self.stamps.append(time.perf_counter())

        return Timed

    tmp = Path(tempfile.mkdtemp(prefix="trustai-bench-"))
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(tmp / "ds", repo_id="trustai/bench", episodes=6, frames_per_episode=30)
    results: dict[str, dict[str, list[float]]] = {
        "plain": {"step": [], "wall": []},
        "governed": {"step": [], "wall": []},
    }
    checkpoint_steps = set(range(args.save_freq, args.steps + 1, args.save_freq))
    # Warm-up (not measured): first-time imports, dataset caching and allocator growth.
    warm = parse_train_config(demo_train_flags(dataset, tmp / "warmup", 10, 10))
    train(warm, accelerator=Accelerator(**accelerator_kwargs(warm)))
    for rep in range(args.repeats):
        for mode in ("plain", "governed"):
            cfg = parse_train_config(
                demo_train_flags(dataset, tmp / f"{mode}-{rep}", args.steps, args.save_freq)
            )
            kwargs = accelerator_kwargs(cfg)
            if mode == "plain":
                acc = timed(Accelerator)(**kwargs)
            else:
                gov = Governance(Path(cfg.output_dir), "default", signing_key=tmp / "k.pem", seed=cfg.seed)
                acc = timed(GovernedAccelerator)(governance=gov, train_config={"bench": True}, **kwargs)
            acc.stamps = []
            t0 = time.perf_counter()
            train(cfg, accelerator=acc)
            results[mode]["wall"].append(time.perf_counter() - t0)
            results[mode]["step"] += step_times(acc.stamps, checkpoint_steps)

    plain_step, gov_step = (statistics.median(results[m]["step"]) for m in ("plain", "governed"))
    plain_wall, gov_wall = (statistics.median(results[m]["wall"]) for m in ("plain", "governed"))
    print(f"tiny ACT, {args.steps} steps, checkpoint every {args.save_freq}, {args.repeats} runs each, CPU")
    print(f"{'':24}{'plain':>12}{'governed':>12}{'ratio':>10}")
    ratio = gov_step / plain_step
    print(f"{'median step time (ms)':24}{plain_step * 1e3:12.1f}{gov_step * 1e3:12.1f}{ratio:10.3f}")
    print(f"{'train() wall time (s)':24}{plain_wall:12.2f}{gov_wall:12.2f}{gov_wall / plain_wall:10.3f}")


if __name__ == "__main__":
    main()
