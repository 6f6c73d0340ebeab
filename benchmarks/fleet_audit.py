"""Fleet audit of every checkpoint of a run: one after another in this process (inline) vs all checks
of all checkpoints as Ray tasks (``trustai audit RUN --all``), side by side in one run.

A tiny ACT run is trained under governance with ``--checkpoints`` checkpoints; three copies of it are
audited with the same pack (default: eu-ai-act-high-risk) and frames. Each wall covers ``run_audit``
from the first ledger write to the last card sealed: inline (one checkpoint after another, torch using
every core), Ray starting a local Ray on every core and GPU (what ``--all`` does), and Ray on a
cluster already up (what ``--ray-address`` pays; its workers still start and import). Planning (every
checkpoint loaded once, its files hashed once for digest and signature) is timed apart, once. The
table also gives the policy loads per checkpoint while the audits ran: inline reuses the plan's load
(0 for the last checkpoint planned, 1 for the others); on Ray each worker loads a checkpoint once
however many of its audits it runs (at most one load per worker), where each check used to load it.
``--device cuda`` trains on the GPU; Ray tasks take a GPU by themselves when the machine has one.

    .venv/bin/python -m benchmarks.fleet_audit [--checkpoints 4] [--frames 4] [--pack eu-ai-act-high-risk]
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
    parser.add_argument("--pack", default="eu-ai-act-high-risk")
    parser.add_argument("--device", default="cpu", help="where the run trains (cpu, cuda)")
    args = parser.parse_args()

    import ray
    from trustai.training_hooks.lerobot_train import governed_train

    from trustai import layout
    from trustai.attest.keys import generate_keypair
    from trustai.cli.audit import run_audit
    from trustai.cli.audit_plan import plan_audit
    from trustai.cli.demo import demo_train_flags
    from trustai.lerobot.adapter import PolicyAdapter
    from trustai.lerobot.policy_cache import isolated
    from trustai.lerobot.synthetic import make_synthetic_dataset

    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="trustai-bench-fleet-"))
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(tmp / "ds", repo_id="trustai/fleet", episodes=4, frames_per_episode=20)
    steps = 2 * args.checkpoints
    flags = demo_train_flags(dataset, tmp / "run", steps=steps, save_freq=2)
    flags = [f for f in flags if not f.startswith("--policy.device=")] + [f"--policy.device={args.device}"]
    run_dir = governed_train(flags, "default", tmp / "k.pem")

    checkpoint = layout.checkpoint_models(run_dir)[0]
    load_s, copy_s = [], []
    for _ in range(2):
        start = time.perf_counter()
        adapter = PolicyAdapter.from_checkpoint(checkpoint, device=args.device)
        load_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        isolated(adapter)
        copy_s.append(time.perf_counter() - start)

    walls, loads, plan_s = {}, {}, 0.0
    for variant in ("inline", "ray, local start", "ray, cluster up"):
        copy = Path(shutil.copytree(run_dir, tmp / f"audit-{len(walls)}", symlinks=True))
        start = time.perf_counter()
        plan = plan_audit(
            copy,
            dataset,
            args.pack,
            all_checkpoints=True,
            frames=args.frames,
            key=tmp / "k.pem",
            public_key=tmp / "k.pub",
        )
        plan_s = plan_s or time.perf_counter() - start
        if variant == "ray, cluster up":  # what --ray-address to a running cluster pays
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        result = run_audit(plan, runtime=variant.split(",")[0])
        walls[variant] = time.perf_counter() - start
        loads[variant] = sum(result.policy_loads.values()) / len(plan.targets)
        ray.shutdown()
        errors = [f.check_id for f in result.findings if f.status.value == "error"]
        if errors:  # an errored audit is cheap: its timing would flatter the runtime
            raise SystemExit(f"{variant}: audits errored: {errors}")
    jobs = len(plan.targets) * len(plan.checks)
    print(f"{len(plan.targets)} checkpoints x {len(plan.checks)} checks = {jobs} audits")
    print(f"frames per audit: {args.frames}; cores: {os.cpu_count()}; pack: {args.pack}; {args.device}")
    print(f"plan (load, digest and verify {len(plan.targets)} checkpoints): {plan_s:.1f} s")
    print(f"one checkpoint: load {min(load_s):.2f} s, an audit's isolated copy {min(copy_s):.3f} s")
    print(f"{'runtime':<18}{'wall s':>8}{'s / audit':>11}{'s / ckpt':>10}{'vs inline':>11}{'loads/ckpt':>12}")
    for variant, wall in walls.items():
        per_ckpt = wall / len(plan.targets)
        print(
            f"{variant:<18}{wall:>8.1f}{wall / jobs:>11.2f}{per_ckpt:>10.2f}"
            f"{wall / walls['inline']:>11.2f}{loads[variant]:>12.2f}"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
