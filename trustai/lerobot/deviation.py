"""How far a policy's actions move from its clean actions, in units of the dataset's action std.

Every robustness and explainability audit reports this one number, so "0.3" means the same thing in
a corruption table, an adversarial curve and a deletion curve: on average over the action chunk and
the action dimensions, the actions moved by 0.3 standard deviations of the recorded actions.
"""

import torch
from torch import Tensor


def unit_abs(x: Tensor) -> Tensor:
    """|x|, whose gradient at 0 is the subgradient +1 instead of autograd's 0.

    Gradient ascent on a deviation starts exactly at the clean input, where |Δ| has gradient 0 in
    autograd; with +1 there, the first step follows the direction that raises every output, and the
    attack leaves the clean point without a random start.
    """
    return x * torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def action_deviation(actions: Tensor, reference: Tensor, std: Tensor | float = 1.0) -> Tensor:
    """Per-row mean |actions - reference| / std over every non-batch dimension: shape (B,).

    ``actions`` and ``reference`` are (B, ...) in the same units, ``std`` broadcasts over the last
    dimension (the action dims). Differentiable, with the subgradient of ``unit_abs`` at zero.
    """
    return unit_abs((actions - reference) / std).flatten(1).mean(1)
