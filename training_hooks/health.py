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
        self.nonfinite_loss_steps = 0
        self.nonfinite_grad_steps = 0
        self.loss_history: list[tuple[int, float]] = []
        self.grad_norm_max = 0.0
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
                    self.nonfinite_loss_steps += 1
                if self.steps % self._stride == 0:
                    self.loss_history.append((self.steps, value))
            if len(self.loss_history) > MAX_HISTORY:  # keep memory bounded on long runs
                self.loss_history = self.loss_history[::2]
                self._stride *= 2
        if self._pending_grad:
            norms = torch.stack(self._pending_grad).cpu().tolist()
            self._pending_grad.clear()
            self.nonfinite_grad_steps += sum(not math.isfinite(n) for n in norms)
            finite = [n for n in norms if math.isfinite(n)]
            if finite:
                self.grad_norm_max = max(self.grad_norm_max, *finite)

    def summary(self) -> dict[str, Any]:
        """Flush and return steps, non-finite counts, grad-norm max and the (decimated) loss history."""
        self.flush()
        return {
            "steps": self.steps,
            "nonfinite_loss_steps": self.nonfinite_loss_steps,
            "nonfinite_grad_steps": self.nonfinite_grad_steps,
            "grad_norm_max": self.grad_norm_max,
            "loss_history": list(self.loss_history),
        }
