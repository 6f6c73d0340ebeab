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
  With ``clipping: ghost`` (the default) the layers that allow it are clipped from ghost norms,
  without per-frame gradients (trustai.training_hooks.dp_clipping), the others keep per-frame
  gradients; the noise and the accountant are the same, so is ε.

The privacy unit is one dataset frame. ε is a deterministic function of the steps taken, so the most
steps the budget allows is known at prepare time and the budget costs nothing per step. Before the
step that would exceed it, ``before_backward`` saves a final checkpoint with LeRobot's save_checkpoint,
has the accelerator seal it and run the release stage, and raises PrivacyBudgetExhausted, which
``trustai train`` reports with exit code 1.

The ``privacy.dp`` check's params, the run state it measures and the accountant live in
trustai.audits.privacy.dp_budget; the Opacus layer checks, layout probing and per-frame gradient hooks
in trustai.training_hooks.dp_layers. This module puts them to work on LeRobot's training objects.
"""

import dataclasses
import inspect
import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, default_collate
from trustai.audits.privacy.dp_budget import (
    DPParams,
    DPState,
    PrivacyBudgetExhausted,
    dp_epsilon,
    dp_noise_multiplier,
    dp_steps_within,
)
from trustai.training_hooks.dp_clipping import (
    GHOST,
    PER_FRAME,
    GhostClippingHooks,
    GhostClippingOptimizer,
    plan_clipping,
)
from trustai.training_hooks.dp_layers import (
    DP_FIX,
    LayoutAwareHooks,
    PhantomCollate,
    dp_compatible,
    probe_layout,
    rebuild_optimizer,
    strip_opacus,
    torch_attention_layout,
    weigh_phantoms,
)
from trustai.training_hooks.health import TrainingHealth

from trustai.core.records import PrivacyStop
from trustai.errors import TrustaiUserError

log = logging.getLogger("trustai")

DP_AUDIT = "privacy.dp"


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


# -- making the training objects private ----------------------------------------------------------------
class PrivateTrainingHealth(TrainingHealth):
    """TrainingHealth that also carries the run's DP training; its summary holds the DP state, which
    ``privacy.dp`` reads at the train stage (``ctx.training["privacy"]``)."""

    def __init__(self, privacy: "PrivateTraining"):
        super().__init__()
        self.privacy = privacy

    def summary(self) -> dict[str, Any]:
        """TrainingHealth's summary plus ``privacy``: the run's DPState now, as a dict."""
        return {**super().summary(), "privacy": dataclasses.asdict(self.privacy.state())}


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
        clipping_layers: list[dict[str, str]],
    ):
        self.params, self.run, self.engine = params, run, engine
        self.policy, self.optimizer, self.dataloader, self.scheduler = objects
        self.mechanism = mechanism  # dp_epsilon's keyword arguments
        self.noise_source = noise_source
        self.steps_planned = int(run.cfg.steps)
        self.steps_within_budget = steps_within_budget
        self.replaced = tuple(replaced)
        self.frozen = tuple({"parameter": name, "reason": why} for name, why in frozen)
        self.clipping_layers = tuple(clipping_layers)
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
            clipping=self.params.clipping,
            clipping_layers=self.clipping_layers,
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
        accelerator.governance.privacy_stop(
            PrivacyStop(
                step=steps,
                steps_planned=self.steps_planned,
                epsilon=epsilon,
                target_epsilon=self.params.target_epsilon,
                delta=self.params.delta,
                checkpoint=str(folder),
            )
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
        ghost, clipping_layers = plan_clipping(layout, {m: n for n, m in fixed.named_modules()})
        if params.clipping != GHOST:
            ghost, clipping_layers = set(), [{**row, "clipping": PER_FRAME} for row in clipping_layers]

        for name, _ in layout.frozen:
            param = fixed.get_parameter(name)
            param.requires_grad_(False)
            undo.callback(param.requires_grad_, True)
        private_optimizer = optimizer
        if fixed is not policy:
            private_optimizer = rebuild_optimizer(optimizer, policy, fixed)
            fixed.register_state_dict_post_hook(torch_attention_layout)
            if scheduler is not None:
                scheduler.optimizer = private_optimizer
                undo.callback(setattr, scheduler, "optimizer", optimizer)
        engine = PrivacyEngine(accountant=params.accountant)
        undo.callback(strip_opacus, fixed)
        try:
            # Per-frame gradients come from LayoutAwareHooks, so the engine attaches none ("no_op").
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
            hooks = (
                GhostClippingHooks(fixed, layout.batch_dims, ghost)
                if params.clipping == GHOST
                else LayoutAwareHooks(fixed, layout.batch_dims)
            )
        except (ValueError, NotImplementedError) as exc:
            raise TrustaiUserError(f"Opacus refused the training setup: {exc}", fix=DP_FIX) from None
        undo.callback(hooks.remove_hooks)
        hooks.forbid_grad_accumulation()
        if isinstance(hooks, GhostClippingHooks):
            dp_optimizer = GhostClippingOptimizer.replacing(dp_optimizer, hooks)
        dp_loader.collate_fn = PhantomCollate(collate, dataset)
        fixed.forward = weigh_phantoms(fixed.forward, hooks)
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
            clipping_layers=clipping_layers,
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
            raise TrustaiUserError(f"differentially private training {why}", fix=DP_FIX)


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
        what = ", ".join(sorted(missing))
        raise TrustaiUserError(f"privacy.dp found no {what} to make private", fix=DP_FIX)
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
