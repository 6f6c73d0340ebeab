"""Native batched PGD vs IBM ART's PGD on the same policy, frames, ε, steps and step size, side by side.

Both attack the camera pixels of a random-weights ACT (two 64×64 cameras) on held-out frames of a
synthetic dataset, maximising the action deviation from the clean actions, without random start.
The native attack runs the whole ε sweep as one batch; ART runs one ε after another (and evaluates
the success of each, as its API does). Reports the best of ``--repeats`` wall times and the mean
deviation each reached.

    .venv/bin/python -m benchmarks.pgd_native_vs_art [--frames 8] [--steps 10] [--repeats 2]
"""

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def best_time(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """The shortest wall time of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-fraction", type=float, default=0.25)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1 / 255, 2 / 255, 4 / 255, 8 / 255])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: stable timings on a shared machine)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from trustai.audits.robustness.attacks import InputActions, sweep_art, sweep_native

    from benchmarks.tiny_policy import CAMERAS, act_with_frames
    from trustai.lerobot.frame_policy import FramePolicy

    adapter, frames, action = act_with_frames(
        Path(tempfile.mkdtemp(prefix="trustai-bench-pgd-")), args.frames
    )
    model = InputActions(FramePolicy(adapter, frames), list(CAMERAS), action.std)
    rows = len(args.epsilons) * model.rows

    def budgets(epsilons: list[float]) -> torch.Tensor:
        return torch.stack([model.budget(CAMERAS, eps) for eps in epsilons])

    runs = {
        f"sweep of {len(args.epsilons)} ε": {
            "native": lambda: sweep_native(
                model, budgets(args.epsilons), args.steps, args.step_fraction, max_rows=rows
            ),
            "art": lambda: sweep_art(model, args.epsilons, args.steps, args.step_fraction, "pgd"),
        },
        f"single ε = {args.epsilons[-1] * 255:g}/255": {
            "native": lambda: sweep_native(
                model, budgets(args.epsilons[-1:]), args.steps, args.step_fraction, rows
            ),
            "art": lambda: sweep_art(model, args.epsilons[-1:], args.steps, args.step_fraction, "pgd"),
        },
    }
    print(
        f"L∞ PGD on camera pixels: random ACT (2 cameras 64×64), {model.rows} frames, {args.steps} steps, "
        f"step {args.step_fraction:g}·ε, no random start, CPU ({args.threads} thread(s)), "
        f"best of {args.repeats}"
    )
    print(f"{'':24}{'native s':>10}{'ART s':>10}{'ART/native':>12}{'dev native':>12}{'dev ART':>10}")
    for label, pair in runs.items():
        native_s, native = best_time(pair["native"], args.repeats)
        art_s, art = best_time(pair["art"], args.repeats)
        print(
            f"{label:24}{native_s:10.2f}{art_s:10.2f}{art_s / native_s:12.2f}"
            f"{float(native.mean()):12.4f}{float(art.mean()):10.4f}"
        )


if __name__ == "__main__":
    main()
