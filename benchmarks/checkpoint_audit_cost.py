"""What one checkpoint's audits cost, in units of the policy's own inference: the per-checkpoint term of
the cost model in docs/scale.md.

Every checkpoint check of a pack runs on one checkpoint (a random-weights ACT with two 64×64 cameras, a
6-dof state and chunks of 5: ``benchmarks.tiny_policy``) with its FLOPs counted (``CountFlops``), and
they are divided by the FLOPs of one inference call (the action chunk for one frame,
``PolicyAdapter.actions`` on one row): *inference equivalents*. Audits are built from inference calls,
forward and backward (corruptions, PGD, Integrated Gradients, membership losses, group errors), so this
count carries over to a larger policy of the same kind, whose inference costs more per call but is
called as often; multiply by that policy's inference time to get its audit time. The wall time of each
audit here and its ratio to the same number of inference calls timed alone show the overhead that is not
in the policy (decoding, statistics, ART, plots). ``--device cuda`` runs the policy on a GPU.

    .venv/bin/python -m benchmarks.checkpoint_audit_cost [--pack eu-ai-act-high-risk] [--device cpu]
"""

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

MEMBERSHIP = "privacy.membership_inference"


class CountFlops(TorchDispatchMode):
    """FLOPs of the matmuls, convolutions and attention run under it, forward and backward, by torch's
    own formulas (ops without one are decomposed first, as FlopCounterMode does). FlopCounterMode itself
    is not used: its module tracking adds backward hooks that break ``torch.autograd.grad`` on leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None and isinstance(func, torch._ops.OpOverload):
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pack", default="eu-ai-act-high-risk")
    parser.add_argument("--device", default="cpu", help="where the policy runs (cpu, cuda)")
    args = parser.parse_args()

    from benchmarks.tiny_policy import act_with_frames
    from trustai.core.audit import AuditContext, get_audit
    from trustai.core.evidence import Stage
    from trustai.lerobot.checkpoint_inputs import repeat_rows
    from trustai.lerobot.policy_cache import isolated
    from trustai.packs import load_pack

    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="trustai-bench-audit-cost-"))
    adapter, one, _ = act_with_frames(tmp, frames=1, device=args.device)
    with torch.no_grad(), CountFlops() as counter:
        adapter.actions(one)
    inference_flops = counter.flops
    batch = repeat_rows(one, 16)
    with torch.no_grad():
        adapter.actions(batch)  # warm-up
        t0 = time.perf_counter()
        for _ in range(5):
            adapter.actions(batch)
        inference_s = (time.perf_counter() - t0) / (5 * 16)  # per frame, at batch 16 as audits batch
    print(f"policy: ACT, {sum(p.numel() for p in adapter.policy.parameters()):,} parameters, {args.device}")
    print(f"one inference call: {inference_flops / 1e6:.1f} MFLOP, {inference_s * 1e3:.2f} ms per frame")
    print()

    pack = load_pack(args.pack)
    root = tmp / "dataset"  # where act_with_frames wrote the dataset
    columns = ("check", 26), ("audit", 34), ("GFLOP", 9), ("inference equiv.", 17), ("wall s", 8)
    header = " ".join(f"{name:<{width}}" for name, width in columns) + f" {'wall / equiv. time':>19}"
    print(header)
    print("-" * len(header))
    total_equivalents = total_wall = 0.0
    for check in pack.checks:
        if check.stage is not Stage.CHECKPOINT:
            continue
        audit_cls = get_audit(check.audit)
        # The benchmark's dataset records no held-out episodes; name one, or membership inference
        # (rightly) measures nothing.
        split = {"train_episodes": [0], "holdout_episodes": [1]} if check.audit == MEMBERSHIP else {}
        params = audit_cls.Params.model_validate({**check.params, **split})
        counted, timed = (
            AuditContext(Stage.CHECKPOINT, tmp / check.id / run, policy=isolated(adapter), dataset=root)
            for run in ("counted", "timed")
        )
        for ctx in (counted, timed):
            ctx.artifact_dir.mkdir(parents=True)
        with CountFlops() as counter:  # counted apart from the timed run: counting slows every op
            audit_cls().measure(counted, params)
        t0 = time.perf_counter()
        audit_cls().measure(timed, params)
        wall = time.perf_counter() - t0
        flops = counter.flops
        equivalents = flops / inference_flops
        total_equivalents += equivalents
        total_wall += wall
        ratio = wall / (equivalents * inference_s) if equivalents else float("nan")
        figures = f"{flops / 1e9:>9.2f} {equivalents:>17,.0f} {wall:>8.2f} {ratio:>19.2f}"
        print(f"{check.id:<26} {check.audit:<34} {figures}")
    print("-" * len(header))
    ratio = total_wall / (total_equivalents * inference_s)
    print(f"{'all checkpoint checks':<61} {total_equivalents:>17,.0f} {total_wall:>8.2f} {ratio:>19.2f}")


if __name__ == "__main__":
    main()
