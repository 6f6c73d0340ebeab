"""L∞ FGSM / PGD on camera pixels that push a policy's actions away from its clean actions.

The policy is seen as ``CameraActions``: a torch module from flattened camera pixels (N × P, in
[0, 1]) to its action chunk in units of the dataset's action std (N × chunk·A), with everything else
(state, task, cameras not attacked) fixed to the frames' own values. The attack maximises
``trustai.lerobot.deviation.action_deviation`` from the clean actions, starting at the clean pixels (no random
start); the deviation's subgradient at zero makes the first step well defined.

Two implementations of the same attack: ``pgd_native`` (batched PyTorch, any number of ε at once, the
fast path) and ``pgd_art`` (IBM ART's ``ProjectedGradientDescent`` / ``FastGradientMethod`` on a
``PyTorchRegressor``, the reference). Both take a signed-gradient step, clip to [0, 1], then project
onto the ε-ball, in that order, and return the last iterate.
"""

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from trustai.lerobot.deviation import action_deviation
from trustai.lerobot.frame_policy import FramePolicy

Method = Literal["fgsm", "pgd"]


class CameraActions(torch.nn.Module):
    """A policy as a function of its camera pixels: (N, P) flattened pixels in [0, 1] -> (N, chunk·A)
    actions divided by the action std, other inputs from the frames (``FramePolicy``)."""

    def __init__(self, policy: FramePolicy, cameras: list[str], action_std: Tensor):
        """Attack ``cameras`` (in pixel order) of ``policy``'s frames; ``action_std`` scales the actions."""
        super().__init__()
        self.policy = policy.adapter.policy  # registered, so ART's .to() and .train() reach the weights
        self._frame_policy, self._cameras, self._std = policy, cameras, action_std
        self._shapes = [tuple(policy.frames[c].shape[1:]) for c in cameras]
        self._sizes = [int(np.prod(shape)) for shape in self._shapes]
        self.rows = policy.rows

    def pixels(self) -> Tensor:
        """The frames' own attacked pixels, flattened: (rows, P)."""
        return torch.cat([self._frame_policy.frames[c].flatten(1) for c in self._cameras], dim=1).float()

    def forward(self, pixels: Tensor) -> Tensor:
        """Actions / std for ``pixels``, flattened per row."""
        parts = pixels.split(self._sizes, dim=1)
        cameras = {c: p.reshape(-1, *s) for c, s, p in zip(self._cameras, self._shapes, parts, strict=True)}
        return (self._frame_policy.actions(cameras) / self._std).flatten(1)


class DeviationLoss(torch.nn.modules.loss._Loss):
    """``action_deviation`` as a loss (target = clean outputs), in the shape ART passes (flattened)."""

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean |prediction - target| over all elements, with subgradient +1 at zero."""
        return action_deviation(prediction.reshape(1, -1), target.reshape(1, -1)).sum()


def pgd_native(
    model: CameraActions, clean: Tensor, reference: Tensor, eps: Tensor, steps: int, step_size: Tensor
) -> Tensor:
    """Untargeted L∞ PGD from the clean pixels, batched: row ``r`` gets its own ``eps[r]`` and
    ``step_size[r]``. Each of ``steps`` iterations moves ``step_size`` along the sign of the gradient
    of the deviation from ``reference`` (the clean outputs), clips to [0, 1] and projects onto the
    ε-ball around ``clean``. FGSM is ``steps=1, step_size=eps``. Returns the adversarial pixels.
    """
    eps, step_size = eps.reshape(-1, 1), step_size.reshape(-1, 1)
    adversarial = clean
    for _ in range(steps):
        adversarial = adversarial.detach().requires_grad_(True)
        loss = action_deviation(model(adversarial), reference).sum()
        (grad,) = torch.autograd.grad(loss, adversarial)
        stepped = (adversarial.detach() + step_size * grad.sign()).clamp(0, 1)
        adversarial = clean + torch.maximum(torch.minimum(stepped - clean, eps), -eps)
    return adversarial.detach()


def pgd_art(
    model: CameraActions,
    clean: Tensor,
    reference: Tensor,
    eps: float,
    steps: int,
    step_size: float,
    method: Method = "pgd",
) -> Tensor:
    """The same attack through ART: ``ProjectedGradientDescent`` (``method="pgd"``) or
    ``FastGradientMethod`` (``"fgsm"``, one step of size ``eps``) on a ``PyTorchRegressor`` wrapping
    ``model`` with ``DeviationLoss``, no random initialisation, all rows in one batch.
    """
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.regression import PyTorchRegressor

    device = next(model.parameters()).device
    estimator = PyTorchRegressor(
        model=model,
        loss=DeviationLoss(),
        input_shape=tuple(clean.shape[1:]),
        clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu",
    )
    common = dict(norm=np.inf, eps=eps, num_random_init=0, batch_size=len(clean))
    if method == "fgsm":
        attack = FastGradientMethod(estimator, eps_step=eps, **common)
    else:
        attack = ProjectedGradientDescent(
            estimator, eps_step=step_size, max_iter=steps, verbose=False, **common
        )
    adversarial = attack.generate(clean.cpu().numpy(), y=reference.detach().cpu().numpy())
    return torch.from_numpy(adversarial).to(clean.device)


def sweep_native(
    model: CameraActions, epsilons: list[float], steps: int, step_fraction: float, max_rows: int
) -> Tensor:
    """Deviation of every frame under the native attack at every ε: shape (len(epsilons), rows).

    All ε run together as one batch (split into chunks of at most ``max_rows`` rows, whole ε at a
    time); the step size is ``step_fraction · ε``. The clean reference is computed in the same
    batch layout, so ε = 0 gives exactly 0 (batch size changes float rounding).
    """
    clean = model.pixels()
    per_chunk = max(1, max_rows // model.rows)
    out = []
    for start in range(0, len(epsilons), per_chunk):
        eps = torch.tensor(epsilons[start : start + per_chunk]).repeat_interleave(model.rows)
        repeats = len(eps) // model.rows
        x0 = clean.repeat(repeats, 1)
        with torch.no_grad():
            reference = model(x0)
        adversarial = pgd_native(model, x0, reference, eps, steps, eps * step_fraction)
        with torch.no_grad():
            out.append(action_deviation(model(adversarial), reference).reshape(repeats, model.rows))
    return torch.cat(out)


def sweep_art(
    model: CameraActions, epsilons: list[float], steps: int, step_fraction: float, method: Method
) -> Tensor:
    """Deviation of every frame under ART's attack at every ε, one ε after another: (len(epsilons), rows).

    ART refuses a zero step size, so ε = 0 is the clean input (deviation 0) without an attack.
    """
    clean = model.pixels()
    with torch.no_grad():
        reference = model(clean)
    out = []
    for eps in epsilons:
        if eps == 0:
            out.append(torch.zeros(model.rows))
            continue
        adversarial = pgd_art(model, clean, reference, eps, steps, eps * step_fraction, method)
        with torch.no_grad():
            out.append(action_deviation(model(adversarial), reference))
    return torch.stack(out)
