"""L∞ FGSM / PGD on a policy's camera pixels or state that push its actions away from its clean actions.

The policy is seen as ``InputActions``: a torch module from some of its inputs, flattened and
concatenated (N × P), to its action chunk in units of the dataset's action std (N × chunk·A), with
everything else (task, inputs not given) fixed to the frames' own values. Each input is given in
attack units, so that one ε means one thing per input: camera pixels as they are (in [0, 1], and
kept there), the state divided by its per-dimension dataset std (unbounded), as ``state_noise``
measures its noise. The attack maximises ``trustai.lerobot.deviation.action_deviation`` from the
clean actions, starting at the clean inputs (no random start); the deviation's subgradient at zero
makes the first step well defined.

Two implementations of the same attack: ``pgd_native`` (batched PyTorch, the fast path: each row has
its own budget per element, so ``sweep_native`` runs every ε on every attacked input in one batch,
an input left alone by a zero budget on its elements) and ``pgd_art`` (IBM ART's
``ProjectedGradientDescent`` / ``FastGradientMethod`` on a ``PyTorchRegressor``, the reference: one
scalar ε on every input of its model). Both take a signed-gradient step, clip to the inputs' bounds,
then project onto the ε-ball, in that order, and return the last iterate. ``sweep_targets`` runs
either over ``Target`` s.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from trustai.lerobot.deviation import action_deviation
from trustai.lerobot.frame_policy import FramePolicy

Method = Literal["fgsm", "pgd"]
Implementation = Literal["native", "art"]


class InputActions(torch.nn.Module):
    """A policy as a function of some of its inputs: (N, P) flattened inputs in attack units -> (N,
    chunk·A) actions divided by the action std, other inputs from the frames (``FramePolicy``)."""

    def __init__(
        self, policy: FramePolicy, keys: list[str], action_std: Tensor, state_std: Tensor | None = None
    ):
        """Take ``keys`` (cameras, the state; concatenated in the order given) of ``policy``'s
        frames; ``action_std`` scales the actions, ``state_std`` (needed when the state is among
        ``keys``) is the state's attack unit."""
        super().__init__()
        self.policy = policy.adapter.policy  # registered, so ART's .to() and .train() reach the weights
        self._frame_policy, self.keys = policy, list(keys)
        device = policy.frames[self.keys[0]].device
        state_key = policy.adapter.state_key
        if state_key in self.keys and state_std is None:
            raise ValueError(f"attacking {state_key} needs its std")
        self._std = action_std.to(device)
        self._units = {k: state_std.to(device) for k in self.keys if k == state_key}
        self._shapes = [tuple(policy.frames[k].shape[1:]) for k in self.keys]
        self.sizes = [int(np.prod(shape)) for shape in self._shapes]
        pixels = torch.cat(
            [torch.full((n,), k not in self._units) for k, n in zip(self.keys, self.sizes, strict=True)]
        )
        self.lower = torch.where(pixels, 0.0, -torch.inf).to(device)
        self.upper = torch.where(pixels, 1.0, torch.inf).to(device)
        self.clip_values = None if self._units else (0.0, 1.0)
        self.rows = policy.rows

    def inputs(self) -> Tensor:
        """The frames' own inputs in attack units, flattened: (rows, P)."""
        frames = self._frame_policy.frames
        return torch.cat([(frames[k].float() / self._units.get(k, 1.0)).flatten(1) for k in self.keys], dim=1)

    def budget(self, keys: tuple[str, ...], eps: float) -> Tensor:
        """An L∞ budget per element, (P,): ``eps`` on the elements of ``keys``, 0 on the others."""
        parts = [
            torch.full((n,), eps if k in keys else 0.0) for k, n in zip(self.keys, self.sizes, strict=True)
        ]
        return torch.cat(parts).to(self.lower.device)

    def forward(self, inputs: Tensor) -> Tensor:
        """Actions / std for ``inputs``, flattened per row."""
        parts = inputs.split(self.sizes, dim=1)
        overrides = {
            k: p.reshape(-1, *s) * self._units.get(k, 1.0)
            for k, s, p in zip(self.keys, self._shapes, parts, strict=True)
        }
        return (self._frame_policy.actions(overrides) / self._std).flatten(1)


def gradient_reaches(model: InputActions) -> dict[str, bool]:
    """For each input of ``model``: does the actions' gradient at the frames reach it (nonzero
    anywhere)? A gradient attack cannot move an input it does not reach (π0.5 reads its state as
    discretised text tokens); one forward and backward pass on the frames."""
    inputs = model.inputs().requires_grad_(True)
    total = model(inputs).sum()
    if not total.requires_grad:
        return dict.fromkeys(model.keys, False)
    (grad,) = torch.autograd.grad(total, inputs, allow_unused=True)
    if grad is None:
        return dict.fromkeys(model.keys, False)
    parts = grad.split(model.sizes, dim=1)
    return {k: bool(part.abs().sum() > 0) for k, part in zip(model.keys, parts, strict=True)}


class DeviationLoss(torch.nn.modules.loss._Loss):
    """``action_deviation`` as a loss (target = clean outputs), in the shape ART passes (flattened)."""

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean |prediction - target| over all elements, with subgradient +1 at zero."""
        return action_deviation(prediction.reshape(1, -1), target.reshape(1, -1)).sum()


def pgd_native(
    model: InputActions, clean: Tensor, reference: Tensor, eps: Tensor, steps: int, step_size: Tensor
) -> Tensor:
    """Untargeted L∞ PGD from the clean inputs, batched: ``eps`` and ``step_size`` broadcast to (N, P),
    per row (N, 1) or per row and element (N, P; 0 leaves an element alone). Each of ``steps``
    iterations moves ``step_size`` along the sign of the gradient of the deviation from ``reference``
    (the clean outputs), clips to the model's bounds and projects onto the ε-ball around ``clean``.
    FGSM is ``steps=1, step_size=eps``. Returns the adversarial inputs.
    """
    adversarial = clean
    for _ in range(steps):
        adversarial = adversarial.detach().requires_grad_(True)
        loss = action_deviation(model(adversarial), reference).sum()
        (grad,) = torch.autograd.grad(loss, adversarial)
        stepped = (adversarial.detach() + step_size * grad.sign()).clamp(model.lower, model.upper)
        adversarial = clean + torch.maximum(torch.minimum(stepped - clean, eps), -eps)
    return adversarial.detach()


def pgd_art(
    model: InputActions,
    clean: Tensor,
    reference: Tensor,
    eps: float,
    steps: int,
    step_size: float,
    method: Method = "pgd",
) -> Tensor:
    """The same attack through ART on every input of ``model`` at one scalar ``eps``:
    ``ProjectedGradientDescent`` (``method="pgd"``) or ``FastGradientMethod`` (``"fgsm"``, one step
    of size ``eps``) on a ``PyTorchRegressor`` wrapping ``model`` with ``DeviationLoss``, clipped to
    [0, 1] when the model holds only cameras, no random initialisation, all rows in one batch.
    """
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.regression import PyTorchRegressor

    device = next(model.parameters()).device
    estimator = PyTorchRegressor(
        model=model,
        loss=DeviationLoss(),
        input_shape=tuple(clean.shape[1:]),
        clip_values=model.clip_values,
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
    model: InputActions, budgets: Tensor, steps: int, step_fraction: float, max_rows: int
) -> Tensor:
    """Deviation of every frame under the native attack at every budget: shape (len(budgets), rows).

    ``budgets`` is (B, P), one L∞ budget per element (``InputActions.budget``). All budgets run
    together as one batch (split into chunks of at most ``max_rows`` rows, whole budgets at a time);
    the step size is ``step_fraction`` times the budget. The clean reference is computed in the same
    batch layout, so a zero budget gives exactly 0 (batch size changes float rounding).
    """
    clean = model.inputs()
    per_chunk = max(1, max_rows // model.rows)
    out = []
    for start in range(0, len(budgets), per_chunk):
        eps = budgets[start : start + per_chunk].repeat_interleave(model.rows, dim=0)
        repeats = len(eps) // model.rows
        x0 = clean.repeat(repeats, 1)
        with torch.no_grad():
            reference = model(x0)
        adversarial = pgd_native(model, x0, reference, eps, steps, eps * step_fraction)
        with torch.no_grad():
            out.append(action_deviation(model(adversarial), reference).reshape(repeats, model.rows))
    return torch.cat(out)


def sweep_art(
    model: InputActions, epsilons: list[float], steps: int, step_fraction: float, method: Method
) -> Tensor:
    """Deviation of every frame under ART's attack on every input of ``model`` at every ε, one ε after
    another: (len(epsilons), rows).

    ART refuses a zero step size, so ε = 0 is the clean input (deviation 0) without an attack.
    """
    clean = model.inputs()
    with torch.no_grad():
        reference = model(clean)
    out = []
    for eps in epsilons:
        if eps == 0:
            out.append(torch.zeros(model.rows, device=clean.device))
            continue
        adversarial = pgd_art(model, clean, reference, eps, steps, eps * step_fraction, method)
        with torch.no_grad():
            out.append(action_deviation(model(adversarial), reference))
    return torch.stack(out)


@dataclass(frozen=True)
class Target:
    """What one attack perturbs: the inputs ``keys`` together, at each of ``epsilons`` (attack units)."""

    name: str
    keys: tuple[str, ...]
    epsilons: tuple[float, ...]


@dataclass(frozen=True)
class Attack:
    """How each target is attacked."""

    implementation: Implementation
    method: Method
    steps: int
    step_fraction: float
    max_rows: int


def sweep_targets(
    policy: FramePolicy,
    targets: list[Target],
    action_std: Tensor,
    state_std: Tensor | None,
    attack: Attack,
) -> dict[str, Tensor]:
    """Deviation of every frame at every ε of each target: name -> (len(epsilons), rows).

    Native: one ``InputActions`` over every input the targets name, and one batched sweep over all
    (target, ε) budgets, each distinct budget once (ε = 0 is one budget whatever the target). ART: one
    model and sweep per target.
    """
    if attack.implementation == "art":
        return {
            t.name: sweep_art(
                InputActions(policy, list(t.keys), action_std, state_std),
                list(t.epsilons),
                attack.steps,
                attack.step_fraction,
                attack.method,
            )
            for t in targets
        }
    keys = list(dict.fromkeys(k for t in targets for k in t.keys))
    model = InputActions(policy, keys, action_std, state_std)

    def condition(target: Target, eps: float) -> tuple[frozenset[str], float]:
        return (frozenset(target.keys) if eps > 0 else frozenset(), eps)

    conditions = list(dict.fromkeys(condition(t, e) for t in targets for e in t.epsilons))
    budgets = torch.stack([model.budget(tuple(keys), eps) for keys, eps in conditions])
    swept = sweep_native(model, budgets, attack.steps, attack.step_fraction, attack.max_rows)
    deviations = dict(zip(conditions, swept, strict=True))
    return {t.name: torch.stack([deviations[condition(t, e)] for e in t.epsilons]) for t in targets}
