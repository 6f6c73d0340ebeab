"""Fleet audit of every checkpoint of a run: one after another in this process (inline) vs all checks
of all checkpoints as Ray tasks (``trustai audit RUN --all``), side by side in one run.

A tiny ACT run is trained under governance with ``--checkpoints`` checkpoints; three copies of it are
audited with the same pack and frames. Each wall covers ``run_audit`` from the first ledger write to
the last card sealed: inline (one checkpoint after another, torch using every core), Ray starting a
local Ray on every core (what ``--all`` does), and Ray on a cluster already up (what
``--ray-address`` pays; its workers still start and import). Planning (every checkpoint loaded and
verified) is outside the timed part, the same for all three.

    .venv/bin/python -m benchmarks.fleet_audit [--checkpoints 4] [--frames 4] [--pack default]
"""

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--pack", default="default")
    args = parser.parse_args()

    import ray
    from trustai.training_hooks.lerobot_train import governed_train

    from trustai.attest.keys import generate_keypair
    from trustai.cli.audit import run_audit
    from trustai.cli.audit_plan import plan_audit
    from trustai.cli.demo import demo_train_flags
    from trustai.lerobot.synthetic import make_synthetic_dataset

    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="trustai-bench-fleet-"))
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(tmp / "ds", repo_id="trustai/fleet", episodes=4, frames_per_episode=20)
    steps = 2 * args.checkpoints
    flags = demo_train_flags(dataset, tmp / "run", steps=steps, save_freq=2)
    run_dir = governed_train(flags, "default", tmp / "k.pem")

    walls = {}
    for variant in ("inline", "ray, local start", "ray, cluster up"):
        copy = Path(shutil.copytree(run_dir, tmp / f"audit-{len(walls)}", symlinks=True))
        plan = plan_audit(
            copy,
            dataset,
            args.pack,
            all_checkpoints=True,
            frames=args.frames,
            key=tmp / "k.pem",
            public_key=tmp / "k.pub",
        )
        if variant == "ray, cluster up":  # what --ray-address to a running cluster pays
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        result = run_audit(plan, runtime=variant.split(",")[0])
        walls[variant] = time.perf_counter() - start
        ray.shutdown()
        errors = [f.check_id for f in result.findings if f.status.value == "error"]
        if errors:  # an errored audit is cheap: its timing would flatter the runtime
            raise SystemExit(f"{variant}: audits errored: {errors}")
    jobs = len(plan.targets) * len(plan.checks)
    print(f"{len(plan.targets)} checkpoints x {len(plan.checks)} checks = {jobs} audits")
    print(f"frames per audit: {args.frames}; cores: {os.cpu_count()}")
    print(f"{'runtime':<18}{'wall s':>8}{'s / audit':>11}{'vs inline':>11}")
    for variant, wall in walls.items():
        print(f"{variant:<18}{wall:>8.1f}{wall / jobs:>11.2f}{wall / walls['inline']:>11.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
