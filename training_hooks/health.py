"""Cheap per-step training health: losses and gradient norms are kept as device tensors and copied
to the host in one batch at flush time (checkpoints, end of training), so the training step gains no
host sync of its own."""

import math
from typing import Any

import torch

MAX_HISTORY = 4096


class TrainingHealth:
    """Collects loss and grad-norm per step; ``summary()`` gives the numbers train.health judges."""

    def __init__(self) -> None:
        self._pending_loss: list[torch.Tensor] = []
        self._pending_grad: list[torch.Tensor] = []
        self.steps = 0
        self._own_nonfinite_loss = 0
        self._own_nonfinite_grad = 0
        self._own_grad_max = 0.0
        self.nonfinite_loss_steps = 0
        self.nonfinite_grad_steps = 0
        self.loss_history: list[tuple[int, float]] = []
        self.grad_norm_max = 0.0
        self.ranks: list[dict[str, float]] = []  # per-rank counters after reduce_across_ranks
        self._stride = 1

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Record one step's loss (kept on its device; no sync)."""
        self._pending_loss.append(loss.detach().float().reshape(()))
        if len(self._pending_loss) >= 1024:
            self.flush()

    def observe_grad_norm(self, norm: torch.Tensor | float) -> None:
        """Record one step's gradient norm (kept on its device; no sync)."""
        self._pending_grad.append(torch.as_tensor(norm).detach().float().reshape(()))

    def flush(self) -> None:
        """Copy pending values to the host in one transfer and fold them into the running stats."""
        if self._pending_loss:
            losses = torch.stack(self._pending_loss).cpu().tolist()
            self._pending_loss.clear()
            for value in losses:
                self.steps += 1
                if not math.isfinite(value):
                    self._own_nonfinite_loss += 1
                if self.steps % self._stride == 0:
                    self.loss_history.append((self.steps, value))
            if len(self.loss_history) > MAX_HISTORY:  # keep memory bounded on long runs
                self.loss_history = self.loss_history[::2]
                self._stride *= 2
        if self._pending_grad:
            norms = torch.stack(self._pending_grad).cpu().tolist()
            self._pending_grad.clear()
            self._own_nonfinite_grad += sum(not math.isfinite(n) for n in norms)
            finite = [n for n in norms if math.isfinite(n)]
            if finite:
                self._own_grad_max = max(self._own_grad_max, *finite)
        if not self.ranks:  # single process: this rank's counters are the run's
            self.nonfinite_loss_steps = self._own_nonfinite_loss
            self.nonfinite_grad_steps = self._own_nonfinite_grad
            self.grad_norm_max = self._own_grad_max

    def reduce_across_ranks(self, accelerator: Any) -> None:
        """Gather every rank's counters (one small all-gather; call it on all ranks at a barrier).

        Afterwards ``steps`` is the main rank's, the non-finite counts are summed over ranks, the
        grad-norm maximum is the largest on any rank, and ``ranks`` keeps the per-rank values.
        """
        self.flush()
        local = torch.tensor(
            [[self.steps, self._own_nonfinite_loss, self._own_nonfinite_grad, self._own_grad_max]],
            dtype=torch.float64,
            device=accelerator.device,
        )
        rows = accelerator.gather(local).cpu().tolist()
        keys = ("steps", "nonfinite_loss_steps", "nonfinite_grad_steps", "grad_norm_max")
        self.ranks = [dict(zip(keys, row, strict=True)) for row in rows]
        self.nonfinite_loss_steps = int(sum(r["nonfinite_loss_steps"] for r in self.ranks))
        self.nonfinite_grad_steps = int(sum(r["nonfinite_grad_steps"] for r in self.ranks))
        self.grad_norm_max = max(r["grad_norm_max"] for r in self.ranks)

    def summary(self) -> dict[str, Any]:
        """Flush and return steps, non-finite counts, grad-norm max and the (decimated) loss history."""
        self.flush()
        return {
            "steps": self.steps,
            "nonfinite_loss_steps": self.nonfinite_loss_steps,
            "nonfinite_grad_steps": self.nonfinite_grad_steps,
            "grad_norm_max": self.grad_norm_max,
            "ranks": list(self.ranks),
            "loss_history": list(self.loss_history),
        }
