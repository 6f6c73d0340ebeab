"""Integrated Gradients wall time against its lower bound: n_steps × one forward+backward pass of the
policy on the same frames (IG evaluates the gradient at n_steps points of the path).

A random-weights ACT (two 64×64 cameras, 6-dof state) on held-out frames of a synthetic dataset,
attributing the standardised action chunk's L2 norm to both cameras and the state, as
``explainability.attributions`` does. Reports the best of ``--repeats`` wall times.

    .venv/bin/python -m benchmarks.integrated_gradients_cost [--frames 4] [--steps 8 16 32]
"""

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def best_time(run: Callable[[], object], repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--max-rows", type=int, default=64, help="rows per policy call inside IG")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: stable timings on a shared machine)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from trustai.audits.explainability.attribution import (
        attribute,
        attribution_inputs,
        forward_function,
        target_function,
    )

    from benchmarks.tiny_policy import act_with_frames
    from trustai.lerobot.checkpoint_inputs import feature_stats
    from trustai.lerobot.frame_policy import FramePolicy

    folder = Path(tempfile.mkdtemp(prefix="trustai-bench-ig-"))
    adapter, frames, action = act_with_frames(folder, args.frames)
    policy = FramePolicy(adapter, frames, args.max_rows)
    inputs = attribution_inputs(policy, feature_stats(folder / "dataset", adapter, "observation.state"))
    forward = forward_function(policy, inputs.keys, target_function(action, "chunk_norm", adapter.action_dim))

    def forward_backward() -> None:
        leaves = [value.detach().clone().requires_grad_(True) for value in inputs.inputs]
        torch.autograd.grad(forward(*leaves).sum(), leaves)

    one = best_time(forward_backward, args.repeats)
    print(
        f"Integrated Gradients: random ACT (2 cameras 64×64, 6-dof state), {policy.rows} frames, "
        f"up to {args.max_rows} rows per policy call, CPU ({args.threads} thread(s)), best of {args.repeats}"
    )
    print(f"one forward+backward on {policy.rows} frames: {one * 1e3:.1f} ms")
    print(f"{'n_steps':>8}{'IG s':>10}{'n·fwd+bwd s':>14}{'ratio':>8}")
    for steps in args.steps:

        def integrated_gradients(steps: int = steps) -> None:
            attribute(
                "integrated_gradients",
                forward,
                inputs,
                policy.rows,
                ig_steps=steps,
                occlusion_fraction=0.125,
                max_rows=args.max_rows,
            )

        ig = best_time(integrated_gradients, args.repeats)
        print(f"{steps:8d}{ig:10.2f}{steps * one:14.2f}{ig / (steps * one):8.2f}")


if __name__ == "__main__":
    main()
