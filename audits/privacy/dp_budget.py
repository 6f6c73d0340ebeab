"""The privacy budget of DP training and its accountant: the ``privacy.dp`` check's params (DPParams),
the run state it measures (DPState), ε after a number of steps, the most steps a budget allows, the
smallest noise that keeps a budget, and the exception that stops training at the budget.

Kept apart from the Opacus machinery so the ``privacy.dp`` audit and the CLI need only this.
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trustai.errors import TrustaiUserError

PRIVACY_UNIT = "frame"  # LeRobot batches dataset frames: one frame is what DP-SGD clips and samples


class DPParams(BaseModel):
    """Parameters of ``privacy.dp``: the privacy budget, and the DP-SGD mechanism that
    trustai.training_hooks.privacy applies to a LeRobot run whose pack has this check."""

    model_config = ConfigDict(extra="forbid")

    target_epsilon: float = Field(gt=0, description="ε budget: training stops before a step would exceed it")
    delta: float = Field(1e-5, gt=0, lt=1, description="δ of (ε, δ)-DP; keep it well below 1 / frames")
    max_grad_norm: float = Field(1.0, gt=0, description="per-frame gradient clipping bound C")
    noise_multiplier: float | None = Field(
        None, gt=0, description="σ; default: the smallest σ that keeps ε within target over the planned steps"
    )
    accountant: Literal["prv", "rdp"] = Field("prv", description="Opacus privacy accountant")
    clipping: Literal["ghost", "per-frame"] = Field(
        "ghost",
        description="per-frame clipping from ghost norms where a layer allows it (per-frame gradients "
        "elsewhere), or per-frame gradients everywhere; the same DP-SGD step and accounting",
    )
    epsilon_every: int | None = Field(
        None,
        ge=1,
        description="steps between rows of the epsilon_by_step table (default: planned steps / 50)",
    )


@dataclass(frozen=True)
class DPState:
    """A DP training run as ``privacy.dp`` measures it: the mechanism, and how many steps it has taken.

    ``noise_source`` is ``"given"`` (σ from the check's params) or ``"target_epsilon"`` (σ computed);
    ``replaced_modules`` rows are {module, replaced, by}; ``frozen_parameters`` rows are {parameter,
    reason}: parameters DP-SGD cannot give per-frame gradients, kept at their initial values;
    ``clipping`` is the params' clipping mode and ``clipping_layers`` rows {layer, type, clipping, why}
    say how each layer's per-frame norms are taken (``ghost`` or ``per-frame``).
    """

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    delta: float
    target_epsilon: float
    accountant: str
    noise_source: str
    steps: int
    steps_planned: int
    steps_within_budget: int
    expected_batch_size: int
    dataset_frames: int
    replaced_modules: tuple[dict[str, str], ...]
    frozen_parameters: tuple[dict[str, str], ...]
    clipping: str = "per-frame"
    clipping_layers: tuple[dict[str, str], ...] = ()


@lru_cache(maxsize=4096)
def dp_epsilon(
    steps: int, *, noise_multiplier: float, sample_rate: float, delta: float, accountant: str
) -> float:
    """ε after ``steps`` DP-SGD steps (Poisson sampling at ``sample_rate``, Gaussian noise
    ``noise_multiplier``) at ``delta``, from Opacus' ``accountant``; 0.0 before the first step.
    Deterministic and cached: the budget check and the evidence use the same numbers."""
    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    accounting = create_accountant(accountant)
    accounting.history = [(noise_multiplier, sample_rate, steps)]
    return float(accounting.get_epsilon(delta))


def dp_steps_within(target_epsilon: float, max_steps: int, **mechanism: Any) -> int:
    """The most steps, at most ``max_steps``, whose ``dp_epsilon`` stays within ``target_epsilon``
    (``mechanism``: dp_epsilon's keyword arguments). Binary search: ε grows with steps."""
    if dp_epsilon(max_steps, **mechanism) <= target_epsilon:
        return max_steps
    within, beyond = 0, max_steps
    while beyond - within > 1:
        middle = (within + beyond) // 2
        if dp_epsilon(middle, **mechanism) <= target_epsilon:
            within = middle
        else:
            beyond = middle
    return within


def dp_noise_multiplier(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """The smallest σ (to Opacus' search tolerance) whose ε after ``steps`` steps stays within
    ``target_epsilon``. Raises TrustaiUserError when no σ Opacus considers can."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
        )
    except ValueError as exc:
        raise TrustaiUserError(
            f"no noise level reaches ε={target_epsilon} at δ={delta} over {steps} steps ({exc})",
            fix="raise target_epsilon or delta, or train fewer steps",
        ) from None


class PrivacyBudgetExhausted(Exception):
    """Training stopped before a step that would have spent more than the privacy budget.

    The weights stop at ``step`` (ε = ``epsilon`` ≤ target); that final checkpoint is saved and sealed
    and the release stage has run, so ledger and cards are complete.
    """

    def __init__(self, *, step: int, steps_planned: int, epsilon: float, params: DPParams, checkpoint: Path):
        self.step = step
        self.steps_planned = steps_planned
        self.epsilon = epsilon
        self.checkpoint = checkpoint
        super().__init__(
            f"privacy budget exhausted: one more step would spend more than ε={params.target_epsilon:g} "
            f"(δ={params.delta:g}); training stopped after step {step} of {steps_planned} at "
            f"ε={epsilon:.4g}. Final checkpoint: {checkpoint}"
        )
