"""Differentially private LeRobot training: DP-SGD with Opacus inside LeRobot's own ``train()``.

When the policy pack has a ``privacy.dp`` check, GovernedAccelerator.prepare hands LeRobot's policy,
optimizer, dataloader and lr scheduler to ``make_private`` before Accelerate sees them:

- Opacus' ModuleValidator checks the policy. Layers it can fix (BatchNorm, MultiheadAttention →
  DPMultiheadAttention) are replaced in a copy and the optimizer is rebuilt over the copy (same class,
  same param-group hyperparameters; the lr scheduler follows it). Layers it cannot handle raise
  TrustaiUserError, with LeRobot's objects left as they were.
- A real preprocessed batch of one frame and one of two go through the policy to find each layer's
  batch dimension (LeRobot's transformers are sequence-first) and the parameters that cannot get
  per-frame gradients (read outside their layer's forward, like ACT's learned position embeddings):
  those stay at their initial values and are reported.
- PrivacyEngine.make_private gives a DPOptimizer (per-frame clipping, Gaussian noise, accountant) and a
  Poisson-sampling DPDataLoader. Per-frame gradients come from Opacus' hooks attached in place, so the
  policy is never wrapped and LeRobot saves it as usual (attention layers in torch's own layout).

The privacy unit is one dataset frame. ε is a deterministic function of the steps taken, so the most
steps the budget allows is known at prepare time and the budget costs nothing per step. Before the
step that would exceed it, ``before_backward`` saves a final checkpoint with LeRobot's save_checkpoint,
has the accelerator seal it and run the release stage, and raises PrivacyBudgetExhausted, which
``trustai train`` reports with exit code 1.

The ``privacy.dp`` check's params (DPParams), the run state it measures (DPState) and the accountant
functions live here too, so DP training needs none of the other privacy audits' dependencies.
"""

import functools
import inspect
import logging
import pickle
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from opacus import PrivacyEngine
from opacus.grad_sample import GradSampleHooks
from opacus.grad_sample.functorch import prepare_layer
from opacus.grad_sample.gsm_base import OPACUS_PARAM_MONKEYPATCH_ATTRS
from opacus.layers import DPMultiheadAttention
from opacus.utils.module_utils import has_trainable_params, trainable_modules
from opacus.validators import ModuleValidator
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, default_collate
from trustai.training_hooks.health import TrainingHealth

from trustai.errors import TrustaiUserError

log = logging.getLogger("trustai")

DP_AUDIT = "privacy.dp"
_FIX = "train without the privacy.dp check, or change the policy so Opacus supports it"


# -- the budget and the accountant ---------------------------------------------------------------------
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
    reason}: parameters DP-SGD cannot give per-frame gradients, kept at their initial values.
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


@dataclass
class LeRobotRun:
    """What DP training takes from LeRobot's ``train()``: its config, its batch pre- and
    post-processors, and the dataset's camera keys."""

    cfg: Any
    preprocessor: Callable[[dict], dict]
    postprocessor: Any
    camera_keys: tuple[str, ...] = ()

    def batch(self, frames: list[dict], collate: Callable[[list], dict]) -> dict:
        """Collate ``frames`` and preprocess them as LeRobot's training loop does."""
        batch = collate(frames)
        for key in self.camera_keys:
            if key in batch and batch[key].dtype == torch.uint8:
                batch[key] = batch[key].to(dtype=torch.float32) / 255.0
        return self.preprocessor(batch)


def lerobot_run() -> LeRobotRun:
    """The LeRobotRun of the ``lerobot.scripts.lerobot_train.train`` call on the stack, which calls
    Accelerator.prepare after building its processors. Raises TrustaiUserError outside it."""
    # LeRobot builds its processors inside train() and hands none of them to the accelerator, yet the
    # budget stop must save them with the final checkpoint as LeRobot's own checkpoints do.
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "train" and frame.f_globals.get("__name__") == (
            "lerobot.scripts.lerobot_train"
        ):
            found = frame.f_locals
            if all(name in found for name in ("cfg", "preprocessor", "postprocessor")):
                return LeRobotRun(
                    cfg=found["cfg"],
                    preprocessor=found["preprocessor"],
                    postprocessor=found["postprocessor"],
                    camera_keys=tuple(
                        getattr(getattr(found.get("dataset"), "meta", None), "camera_keys", ())
                    ),
                )
        frame = frame.f_back
    raise TrustaiUserError(
        "privacy.dp makes LeRobot's own training private, but Accelerator.prepare was not called from "
        "lerobot.scripts.lerobot_train.train",
        fix="train with `trustai train` or lerobot's train(cfg, accelerator=GovernedAccelerator(...))",
    )


# -- what Opacus can train -----------------------------------------------------------------------------
def dp_compatible(policy: nn.Module) -> tuple[nn.Module, list[dict[str, str]]]:
    """Return ``policy`` when Opacus supports all its layers, else a copy in which ModuleValidator.fix
    replaced the layers it can, with rows {module, replaced, by}. ``policy`` is never modified.

    Raises TrustaiUserError naming every layer Opacus refuses and cannot fix.
    """
    fixed = policy
    if ModuleValidator.validate(policy):
        try:
            fixed = ModuleValidator.fix(policy)  # works on a copy (torch.save / torch.load of the module)
        except (TypeError, AttributeError, pickle.PicklingError) as exc:
            raise TrustaiUserError(
                f"Opacus must replace layers in a copy of the policy, which cannot be copied: {exc}",
                where=type(policy).__name__,
                fix=_FIX,
            ) from None
    refused = _refused_layers(fixed)
    if refused:
        raise TrustaiUserError(
            f"Opacus cannot train these layers with differential privacy: {'; '.join(refused)}",
            where=type(policy).__name__,
            fix=_FIX,
        )
    before = dict(policy.named_modules())
    replaced: list[dict[str, str]] = []
    for name, layer in fixed.named_modules():  # parents come first: report a replaced layer, not its parts
        inside = any(name.startswith(f"{row['module']}.") for row in replaced)
        if name in before and type(before[name]) is not type(layer) and not inside:
            replaced.append(
                {"module": name, "replaced": type(before[name]).__name__, "by": type(layer).__name__}
            )
    return fixed, replaced


def _refused_layers(module: nn.Module) -> list[str]:
    """Layers that ModuleValidator or Opacus' per-sample gradient hooks reject, as 'name (Type): why'."""
    refused = []
    for name, layer in trainable_modules(module):
        validator = ModuleValidator.VALIDATORS.get(type(layer))
        refused += [
            f"{name} ({type(layer).__name__}): {err}" for err in (validator(layer) if validator else [])
        ]
        if next(layer.buffers(), None) is not None:
            refused.append(
                f"{name} ({type(layer).__name__}): a trainable layer with buffers, which per-frame "
                "gradients cannot cover"
            )
    return refused


def _hooked_layers(module: nn.Module) -> Iterator[nn.Module]:
    """The layers Opacus' hooks attach to (mirrors GradSampleHooks.iterate_submodules): layers with
    trainable parameters of their own; a layer without a grad sampler is handled whole by functorch."""
    if has_trainable_params(module):
        yield module
        if type(module) not in GradSampleHooks.GRAD_SAMPLERS:
            return
    for child in module.children():
        yield from _hooked_layers(child)


def _covered(layer: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters whose per-sample gradients Opacus computes from ``layer``'s hooks."""
    return layer.parameters(recurse=type(layer) not in GradSampleHooks.GRAD_SAMPLERS)


@dataclass
class Layout:
    """What a probe found: each hooked layer's batch dimension, and the trainable parameters that cannot
    get per-frame gradients, as (name, reason)."""

    batch_dims: dict[nn.Module, int]
    frozen: list[tuple[str, str]]


def probe_layout(policy: nn.Module, one: dict, two: dict) -> Layout:
    """Run batch ``one`` (one frame) and ``two`` (two frames) through ``policy``'s forward, with the RNG
    state restored afterwards and no parameter or ``.grad`` touched, and compare every hooked layer's
    input shapes to find its batch dimension.

    Raises TrustaiUserError naming layers whose inputs hold the batch where Opacus cannot find it.
    """
    layers = list(_hooked_layers(policy))
    names = {layer: name for name, layer in policy.named_modules()}
    seen: list[dict[nn.Module, list[list[tuple[int, ...]]]]] = []

    def record(layer: nn.Module, inputs: tuple, _output: Any) -> None:
        seen[-1].setdefault(layer, []).append([tuple(t.shape) for t in inputs if torch.is_tensor(t)])

    trainable = [(name, p) for name, p in policy.named_parameters() if p.requires_grad]
    handles = [layer.register_forward_hook(record) for layer in layers]
    device = next(policy.parameters()).device
    try:
        with torch.random.fork_rng(
            devices=[device] if device.type == "cuda" else [], device_type=device.type
        ):
            seen.append({})
            with torch.no_grad():
                policy.forward(one)
            seen.append({})
            loss = _loss(policy.forward(two))
            grads = torch.autograd.grad(loss, [p for _, p in trainable], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    shapes_one, shapes_two = seen

    batch_dims: dict[nn.Module, int] = {}
    unbatched: set[nn.Module] = set()
    refused = []
    for layer, calls in shapes_two.items():
        dims = _batch_dims(shapes_one.get(layer, []), calls)
        if dims == set():
            unbatched.add(layer)
        elif dims in ({0}, {1}):
            batch_dims[layer] = dims.pop()
        else:
            why = "input ranks or calls differ" if -1 in dims else f"batch in input dimensions {sorted(dims)}"
            refused.append(f"{names[layer]} ({type(layer).__name__}): {why}")
    if refused:
        raise TrustaiUserError(
            "Opacus needs each layer's batch in its inputs' first or second dimension: " + "; ".join(refused),
            where=type(policy).__name__,
            fix=_FIX,
        )

    covered = {id(p) for layer in batch_dims for p in _covered(layer)}
    in_unbatched = {id(p) for layer in unbatched for p in _covered(layer)}
    frozen = []
    for (name, param), grad in zip(trainable, grads, strict=True):
        if id(param) in covered:
            continue
        if grad is None:
            reason = "receives no gradient"
        elif id(param) in in_unbatched:
            reason = "its layer's input has no batch dimension, so there is no per-frame gradient"
        else:
            reason = "read outside its layer's forward, so Opacus cannot give it per-frame gradients"
        frozen.append((name, reason))
    return Layout(batch_dims, frozen)


def _loss(output: Any) -> torch.Tensor:
    """The loss of a LeRobot policy's forward: ``(loss, outputs)`` or the loss itself."""
    return output[0] if isinstance(output, tuple) else output


def _batch_dims(calls_one: list[list[tuple[int, ...]]], calls_two: list[list[tuple[int, ...]]]) -> set[int]:
    """The input dimensions whose size differs between the two probes (-1 when the calls or ranks differ)."""
    if len(calls_one) != len(calls_two):
        return {-1}
    dims = set()
    for inputs_one, inputs_two in zip(calls_one, calls_two, strict=True):
        if [len(s) for s in inputs_one] != [len(s) for s in inputs_two]:
            return {-1}
        for a, b in zip(inputs_one, inputs_two, strict=True):
            dims |= {d for d, (x, y) in enumerate(zip(a, b, strict=True)) if x != y}
    return dims


# -- making the training objects private ----------------------------------------------------------------
class _LayoutAwareHooks(GradSampleHooks):
    """Opacus' per-sample gradient hooks with each layer's batch dimension from ``batch_dims`` (0 or 1)
    and optional per-row weights (0 for phantom frames) applied to the backpropagated gradients."""

    def __init__(self, module: nn.Module, batch_dims: dict[nn.Module, int]):
        self.batch_dims = batch_dims
        self.sample_weights: torch.Tensor | None = None
        super().__init__(module, batch_first=True, loss_reduction="mean", strict=True)
        for layer, dim in batch_dims.items():
            if dim == 1 and type(layer) not in self.GRAD_SAMPLERS:
                prepare_layer(layer, batch_first=False)  # functorch replays the layer sequence-first too

    def rearrange_grad_samples(
        self, *, module: nn.Module, backprops: torch.Tensor, loss_reduction: str, batch_first: bool
    ) -> tuple[Any, torch.Tensor]:
        """Opacus' rearrangement with this layer's own batch dimension; rows weighed by sample_weights."""
        activations, backprops = super().rearrange_grad_samples(
            module=module,
            backprops=backprops,
            loss_reduction=loss_reduction,
            batch_first=self.batch_dims.get(module, 0) == 0,
        )
        if self.sample_weights is not None:
            shape = (-1,) + (1,) * (backprops.dim() - 1)
            backprops = backprops * self.sample_weights.reshape(shape).to(backprops.dtype)
        return activations, backprops


class _PhantomCollate:
    """Collate for Poisson batches. An empty draw, which LeRobot policies cannot run, becomes one phantom
    frame (the dataset's first, its ``index`` set to -1) whose gradient the hooks weigh by zero: the step
    is then DP-SGD's noise-only update for an empty batch."""

    def __init__(self, collate: Callable[[list], Any], dataset: Any):
        self.collate, self.dataset = collate, dataset

    def __call__(self, frames: list) -> Any:
        if frames:
            return self.collate(frames)
        batch = self.collate([self.dataset[0]])
        batch["index"] = torch.full_like(batch["index"], -1)
        return batch


def _weigh_phantoms(forward: Callable, hooks: _LayoutAwareHooks) -> Callable:
    """Wrap a policy's forward so the hooks weigh each row by whether it is a real frame (index >= 0);
    the comparison stays on the device, so no host sync is added."""

    @functools.wraps(forward)
    def weighed(batch: Any, *args: Any, **kwargs: Any) -> Any:
        index = batch.get("index") if isinstance(batch, dict) else None
        hooks.sample_weights = None if index is None else index >= 0
        return forward(batch, *args, **kwargs)

    return weighed


def _torch_attention_layout(module: nn.Module, state_dict: dict, prefix: str, _metadata: Any) -> None:
    """state_dict post-hook: DPMultiheadAttention layers are saved under nn.MultiheadAttention's keys
    (Opacus' own mapping), so a checkpoint of the DP-trained policy loads into the stock policy class."""
    for name, layer in module.named_modules():
        if isinstance(layer, DPMultiheadAttention):
            at = f"{prefix}{name}."
            for key in [k for k in state_dict if k.startswith(at)]:
                del state_dict[key]
            state_dict.update(layer.state_dict(prefix=at))


def rebuild_optimizer(optimizer: Optimizer, old: nn.Module, new: nn.Module) -> Optimizer:
    """An optimizer of ``optimizer``'s class over ``new`` (a ModuleValidator.fix copy of ``old``): each
    parameter joins the param group of its counterpart in ``old`` (same name, else the parameters of the
    layer it replaced), with that group's hyperparameters; groups keep their order. Parameters whose
    counterparts the optimizer did not hold stay out. Raises TrustaiUserError when a replaced layer's
    parameters were spread over several groups."""
    group_of = {id(p): i for i, group in enumerate(optimizer.param_groups) for p in group["params"]}
    old_groups = {name: group_of.get(id(p)) for name, p in old.named_parameters()}
    groups: list[dict[str, Any]] = [
        {**{k: v for k, v in group.items() if k != "params"}, "params": []}
        for group in optimizer.param_groups
    ]
    for name, param in new.named_parameters():
        index = _counterpart_group(name, old_groups)
        if index is not None:
            groups[index]["params"].append(param)
    accepted = inspect.signature(type(optimizer)).parameters
    return type(optimizer)(groups, **{k: v for k, v in optimizer.defaults.items() if k in accepted})


def _counterpart_group(name: str, old_groups: dict[str, int | None]) -> int | None:
    """The param group of parameter ``name``'s counterpart: its namesake, else the group shared by the
    old parameters under its nearest ancestor layer."""
    if name in old_groups:
        return old_groups[name]
    prefix = name
    while prefix:
        prefix = prefix.rpartition(".")[0]
        found = {g for n, g in old_groups.items() if not prefix or n.startswith(f"{prefix}.")}
        if len(found) > 1:
            raise TrustaiUserError(
                f"the layer replaced at {prefix or '(root)'} had parameters in several optimizer param "
                f"groups, so {name} has no single group to join",
                fix=_FIX,
            )
        if found:
            return found.pop()
    return None


def _strip_opacus(module: nn.Module) -> None:
    """Remove the attributes Opacus sets on parameters."""
    for param in module.parameters():
        for attr in (*OPACUS_PARAM_MONKEYPATCH_ATTRS, "summed_grad"):
            if hasattr(param, attr):
                delattr(param, attr)


class PrivateTrainingHealth(TrainingHealth):
    """TrainingHealth that also carries the run's DP training, which ``privacy.dp`` reads at the train
    stage (``ctx.training.privacy``)."""

    def __init__(self, privacy: "PrivateTraining"):
        super().__init__()
        self.privacy = privacy


class PrivateTraining:
    """A LeRobot run made differentially private by ``privatize``: the private policy, optimizer and
    dataloader, the accountant, and the budget stop."""

    def __init__(
        self,
        *,
        params: DPParams,
        run: LeRobotRun,
        engine: PrivacyEngine,
        objects: tuple[nn.Module, Optimizer, DataLoader, LRScheduler | None],
        mechanism: dict[str, Any],
        noise_source: str,
        steps_within_budget: int,
        replaced: list[dict[str, str]],
        frozen: list[tuple[str, str]],
    ):
        self.params, self.run, self.engine = params, run, engine
        self.policy, self.optimizer, self.dataloader, self.scheduler = objects
        self.mechanism = mechanism  # dp_epsilon's keyword arguments
        self.noise_source = noise_source
        self.steps_planned = int(run.cfg.steps)
        self.steps_within_budget = steps_within_budget
        self.replaced = tuple(replaced)
        self.frozen = tuple({"parameter": name, "reason": why} for name, why in frozen)
        self.health = PrivateTrainingHealth(self)
        self.positions: dict[str, int] = {}  # where make_private found each object in prepare's arguments
        self._prepared: tuple[Any, Any, Any] = (self.policy, self.optimizer, self.scheduler)

    @property
    def steps(self) -> int:
        """Optimizer steps taken so far (from the accountant's history)."""
        return sum(n for *_, n in self.engine.accountant.history)

    def state(self) -> DPState:
        """The run's DP state now, for ``privacy.dp``."""
        return DPState(
            noise_multiplier=self.mechanism["noise_multiplier"],
            max_grad_norm=self.params.max_grad_norm,
            sample_rate=self.mechanism["sample_rate"],
            delta=self.params.delta,
            target_epsilon=self.params.target_epsilon,
            accountant=self.params.accountant,
            noise_source=self.noise_source,
            steps=self.steps,
            steps_planned=self.steps_planned,
            steps_within_budget=self.steps_within_budget,
            expected_batch_size=int(self.optimizer.expected_batch_size),
            dataset_frames=len(self.dataloader.dataset),
            replaced_modules=self.replaced,
            frozen_parameters=self.frozen,
        )

    def attach(self, prepared: tuple) -> None:
        """Keep the policy, optimizer and scheduler as Accelerate prepared them (what LeRobot saves)."""
        self._prepared = tuple(
            prepared[self.positions[kind]] if kind in self.positions else None
            for kind in ("policy", "optimizer", "scheduler")
        )

    def before_backward(self, accelerator: Any) -> None:
        """Nothing while the next step stays within the budget; otherwise stop training cleanly: save the
        final checkpoint (unless LeRobot just did), seal it and run the release stage through
        ``accelerator``, then raise PrivacyBudgetExhausted."""
        steps = self.steps
        if steps < self.steps_within_budget:
            return
        from lerobot.common.train_utils import (
            get_step_checkpoint_dir,
            save_checkpoint,
            update_last_checkpoint,
        )
        from lerobot.utils.constants import PRETRAINED_MODEL_DIR

        cfg = self.run.cfg
        folder = get_step_checkpoint_dir(Path(cfg.output_dir), cfg.steps, steps)
        if not (folder / PRETRAINED_MODEL_DIR).is_dir():
            policy, optimizer, scheduler = self._prepared
            save_checkpoint(
                checkpoint_dir=folder,
                step=steps,
                cfg=cfg,
                policy=accelerator.unwrap_model(policy),
                optimizer=optimizer,
                scheduler=scheduler,
                preprocessor=self.run.preprocessor,
                postprocessor=self.run.postprocessor,
                num_processes=accelerator.num_processes,
                batch_size=cfg.batch_size,
            )
            update_last_checkpoint(folder)
        epsilon = dp_epsilon(steps, **self.mechanism)
        accelerator.governance.ledger.append(
            "privacy.stop",
            {
                "step": steps,
                "steps_planned": self.steps_planned,
                "epsilon": epsilon,
                "target_epsilon": self.params.target_epsilon,
                "delta": self.params.delta,
                "checkpoint": str(folder),
            },
        )
        accelerator.wait_for_everyone()  # seals the final checkpoint: train and checkpoint stages, card
        accelerator.end_training()  # release stage and release card
        raise PrivacyBudgetExhausted(
            step=steps,
            steps_planned=self.steps_planned,
            epsilon=epsilon,
            params=self.params,
            checkpoint=folder,
        )


def privatize(
    policy: nn.Module,
    optimizer: Optimizer,
    dataloader: DataLoader,
    scheduler: LRScheduler | None,
    *,
    params: DPParams,
    run: LeRobotRun,
) -> PrivateTraining:
    """Make LeRobot's training objects differentially private (see the module docstring).

    Everything that can fail is checked before anything changes, and whatever did change is undone
    when a later step fails: on TrustaiUserError the policy, optimizer and scheduler are as given.
    """
    with ExitStack() as undo:
        undo.callback(policy.train, policy.training)
        policy.train()
        fixed, replaced = dp_compatible(policy)
        sample_rate = 1 / len(dataloader)
        steps_planned = int(run.cfg.steps)
        noise_source = "given" if params.noise_multiplier else "target_epsilon"
        noise = params.noise_multiplier or dp_noise_multiplier(
            target_epsilon=params.target_epsilon,
            delta=params.delta,
            sample_rate=sample_rate,
            steps=steps_planned,
            accountant=params.accountant,
        )
        mechanism = {
            "noise_multiplier": noise,
            "sample_rate": sample_rate,
            "delta": params.delta,
            "accountant": params.accountant,
        }
        within = dp_steps_within(params.target_epsilon, steps_planned, **mechanism)
        if within == 0:
            raise TrustaiUserError(
                f"the privacy budget ε={params.target_epsilon:g} does not cover a single step: one step "
                f"with noise multiplier {noise:g} spends ε={dp_epsilon(1, **mechanism):.4g}",
                fix="raise target_epsilon or noise_multiplier",
            )
        dataset = dataloader.dataset
        collate = dataloader.collate_fn or default_collate
        frames = [dataset[0], dataset[min(1, len(dataset) - 1)]]
        one, two = run.batch(frames[:1], collate), run.batch(frames, collate)
        if "index" not in one:
            raise TrustaiUserError(
                "privacy.dp needs each frame's dataset 'index' in the batch", fix="train on a LeRobotDataset"
            )
        layout = probe_layout(fixed, one, two)

        for name, _ in layout.frozen:
            param = fixed.get_parameter(name)
            param.requires_grad_(False)
            undo.callback(param.requires_grad_, True)
        private_optimizer = optimizer
        if fixed is not policy:
            private_optimizer = rebuild_optimizer(optimizer, policy, fixed)
            fixed.register_state_dict_post_hook(_torch_attention_layout)
            if scheduler is not None:
                scheduler.optimizer = private_optimizer
                undo.callback(setattr, scheduler, "optimizer", optimizer)
        engine = PrivacyEngine(accountant=params.accountant)
        undo.callback(_strip_opacus, fixed)
        try:
            # Per-frame gradients come from _LayoutAwareHooks, so the engine attaches none ("no_op").
            _, dp_optimizer, dp_loader = engine.make_private(
                module=fixed,
                optimizer=private_optimizer,
                data_loader=dataloader,
                noise_multiplier=noise,
                max_grad_norm=params.max_grad_norm,
                grad_sample_mode="no_op",
                wrap_model=False,
                poisson_sampling=True,
            )
            hooks = _LayoutAwareHooks(fixed, layout.batch_dims)
        except (ValueError, NotImplementedError) as exc:
            raise TrustaiUserError(f"Opacus refused the training setup: {exc}", fix=_FIX) from None
        undo.callback(hooks.remove_hooks)
        hooks.forbid_grad_accumulation()
        dp_loader.collate_fn = _PhantomCollate(collate, dataset)
        fixed.forward = _weigh_phantoms(fixed.forward, hooks)
        undo.callback(delattr, fixed, "forward")
        private = PrivateTraining(
            params=params,
            run=run,
            engine=engine,
            objects=(fixed, dp_optimizer, dp_loader, scheduler),
            mechanism=mechanism,
            noise_source=noise_source,
            steps_within_budget=within,
            replaced=replaced,
            frozen=layout.frozen,
        )
        undo.pop_all()
    if within < steps_planned:
        log.warning(
            "trustai: the privacy budget (ε=%g, δ=%g) allows %d of the %d planned steps; training will stop "
            "after step %d",
            params.target_epsilon,
            params.delta,
            within,
            steps_planned,
            within,
        )
    return private


def _dp_check(pack: Any) -> Any:
    """The pack's privacy.dp check, or None. Raises TrustaiUserError when it has several."""
    checks = [c for c in pack.checks if c.audit == DP_AUDIT]
    if len(checks) > 1:
        raise TrustaiUserError(
            f"the policy pack has {len(checks)} privacy.dp checks; one run has one privacy budget",
            where=pack.source or pack.name,
            fix="keep a single privacy.dp check",
        )
    return checks[0] if checks else None


def _refuse_unsupported(accelerator: Any, cfg: Any) -> None:
    """Raise TrustaiUserError for training setups this DP training does not cover."""
    unsupported = [
        (accelerator.num_processes > 1, "runs on one process (multi-process DP-SGD is not wired)"),
        (
            accelerator.mixed_precision == "fp16",
            "cannot use fp16 loss scaling, which scales per-frame gradients",
        ),
        (bool(cfg.resume), "cannot resume: the accountant would lose the steps before the checkpoint"),
        (cfg.sample_weighting is not None, "cannot weigh samples: batch-normalised weights couple frames"),
        (bool(cfg.dataset.streaming), "needs a map-style dataset for Poisson sampling, not streaming"),
    ]
    for refused, why in unsupported:
        if refused:
            raise TrustaiUserError(f"differentially private training {why}", fix=_FIX)


def make_private(accelerator: Any, args: tuple) -> tuple[PrivateTraining | None, tuple]:
    """Called by GovernedAccelerator.prepare with LeRobot's (policy, optimizer, dataloader, lr_scheduler,
    ...): when the accelerator's pack has a privacy.dp check, return the PrivateTraining and ``args``
    with the private objects in their places; otherwise (None, args). Raises TrustaiUserError for what
    it cannot make private, leaving ``args`` as they were."""
    check = _dp_check(accelerator.governance.pack)
    if check is None:
        return None, args
    run = lerobot_run()
    _refuse_unsupported(accelerator, run.cfg)
    kinds = {"policy": nn.Module, "optimizer": Optimizer, "dataloader": DataLoader, "scheduler": LRScheduler}
    positions = {}
    for kind, cls in kinds.items():
        found = next((i for i, a in enumerate(args) if isinstance(a, cls)), None)
        if found is not None:
            positions[kind] = found
    missing = {"policy", "optimizer", "dataloader"} - set(positions)
    if missing:
        raise TrustaiUserError(f"privacy.dp found no {', '.join(sorted(missing))} to make private", fix=_FIX)
    private = privatize(
        args[positions["policy"]],
        args[positions["optimizer"]],
        args[positions["dataloader"]],
        args[positions["scheduler"]] if "scheduler" in positions else None,
        params=DPParams.model_validate(check.params),
        run=run,
    )
    private.positions = positions
    objects = {
        "policy": private.policy,
        "optimizer": private.optimizer,
        "dataloader": private.dataloader,
        "scheduler": private.scheduler,
    }
    replaced = list(args)
    for kind, index in positions.items():
        replaced[index] = objects[kind]
    return private, tuple(replaced)
