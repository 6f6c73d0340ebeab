"""Governed vs plain LeRobot training of the same tiny ACT policy, side by side in one process.

Both runs use LeRobot's own ``train()`` with identical flags; the only difference is the Accelerator.

- step time: the median gap between consecutive ``backward`` calls, leaving out the gaps that hold
  a checkpoint (LeRobot's own saving);
- loop time: first to last ``backward`` — the training loop, checkpoints and governance included;
- blocked: the time the loop spent inside trustai code (GovernedAccelerator.blocked_s), as a share
  of the governed loop time.

Without ``--runtime`` the governed run uses ``trustai train``'s default (``process``: data, checkpoint and
release audits in low-priority worker processes beside the loop). ``--runtime inline`` runs them in the
loop's time; ``--runtime ray`` sends them to a local Ray. ``--pin`` puts the trainer on core 0 and the
audit workers (or Ray) on the other cores. Runs alternate to spread drift.

    .venv/bin/python -m benchmarks.governed_vs_plain_training [--steps 60] [--repeats 2] [--runtime R] [--pin]
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


def step_times(stamps: list[float], skip: set[int]) -> list[float]:
    """Gaps between consecutive backward calls, leaving out the gaps that contain a checkpoint."""
    return [b - a for i, (a, b) in enumerate(itertools.pairwise(stamps), start=1) if i not in skip]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-freq", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pack", default="default")
    parser.add_argument("--runtime", choices=["inline", "process", "ray"], default=None)
    parser.add_argument("--pin", action="store_true", help="trainer on core 0, audits on the other cores")
    args = parser.parse_args()

    import torch
    from accelerate import Accelerator
    from lerobot.scripts.lerobot_train import train
    from trustai.training_hooks.lerobot import GovernedAccelerator
    from trustai.training_hooks.lerobot_train import accelerator_kwargs, parse_train_config

    from trustai.attest.keys import generate_keypair
    from trustai.cli.demo import demo_train_flags
    from trustai.governance import TRAINING_RUNTIME, Governance
    from trustai.lerobot.synthetic import make_synthetic_dataset

    logging.disable(logging.INFO)
    runtime = args.runtime or TRAINING_RUNTIME
    cores = sorted(os.sched_getaffinity(0))
    if runtime == "ray":
        import ray

        if args.pin and len(cores) > 1:
            os.sched_setaffinity(0, set(cores[1:]))  # Ray's processes inherit this: the audit cores
        ray.init(num_cpus=max(1, len(cores) - 1), include_dashboard=False, log_to_driver=False)
    if args.pin:
        os.sched_setaffinity(0, {cores[0]})
        torch.set_num_threads(1)

    def timed(cls: type) -> type:
        class Timed(cls):
            def backward(self, loss, **kwargs):
                super().backward(loss, **kwargs)
                self.stamps.append(time.perf_counter())

        return Timed

    tmp = Path(tempfile.mkdtemp(prefix="trustai-bench-"))
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(tmp / "ds", repo_id="trustai/bench", episodes=6, frames_per_episode=30)
    results = {m: {"step": [], "loop": [], "blocked": [], "setup": []} for m in ("plain", "governed")}
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
                gov = Governance(
                    Path(cfg.output_dir),
                    args.pack,
                    signing_key=tmp / "k.pem",
                    seed=cfg.seed,
                    runtime=runtime,
                )
                if args.pin and len(cores) > 1:  # workers inherit the affinity they start with
                    os.sched_setaffinity(0, set(cores[1:]))
                gov.executor.start()  # as trustai train does, before the loop
                if args.pin:
                    os.sched_setaffinity(0, {cores[0]})
                acc = timed(GovernedAccelerator)(governance=gov, train_config={"bench": True}, **kwargs)
            acc.stamps = []
            train(cfg, accelerator=acc)
            loop = acc.stamps[-1] - acc.stamps[0]
            results[mode]["loop"].append(loop)
            results[mode]["step"] += step_times(acc.stamps, checkpoint_steps)
            if mode == "governed":
                # blocked time inside the loop: everything but the end-of-training wait
                results[mode]["blocked"].append(acc.blocked_loop_s / loop)
                results[mode]["setup"].append(acc.setup_s)
                gov.close()

    med = {m: {k: statistics.median(v) for k, v in r.items() if v} for m, r in results.items()}
    print(
        f"tiny ACT, {args.steps} steps, checkpoint every {args.save_freq}, {args.repeats} runs each, "
        f"pack {args.pack}, audits {runtime}{', pinned' if args.pin else ''}, CPU, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'':28}{'plain':>10}{'governed':>10}{'ratio':>8}")
    for label, key, scale in (("median step time (ms)", "step", 1e3), ("training loop wall (s)", "loop", 1)):
        p, g = med["plain"][key], med["governed"][key]
        print(f"{label:28}{p * scale:10.2f}{g * scale:10.2f}{g / p:8.3f}")
    print(f"{'loop blocked in trustai':28}{'':10}{med['governed']['blocked'] * 100:9.2f}%")
    print(f"{'set-up in prepare (s)':28}{'':10}{med['governed']['setup']:10.3f}")


if __name__ == "__main__":
    main()
