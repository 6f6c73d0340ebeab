"""Robustness audits of a policy checkpoint: how far its actions move when its sensors degrade
(``robustness.corruptions``), when an attacker perturbs its camera pixels (``robustness.adversarial``),
and how its task success changes in closed loop in simulation (``robustness.closed_loop``, PushT).

Action deviations are ``trustai.lerobot.deviation.action_deviation`` from the policy's own clean actions, in
units of the dataset's action std (meta/stats.json, else the policy's normalisation statistics).
"""

import warnings
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lerobot.utils.constants import ACTION
from pydantic import BaseModel, ConfigDict, Field, field_validator
from trustai.audits._plots import Panel, save_panels
from trustai.audits.robustness.attacks import CameraActions, sweep_art, sweep_native
from trustai.audits.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    corrupt_images,
    corrupt_state,
    corruption,
)

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import Batch, PolicyAdapter
from trustai.lerobot.checkpoint_inputs import (
    FrameParams,
    feature_stats,
    held_out_batch,
    input_label,
)
from trustai.lerobot.deviation import action_deviation
from trustai.lerobot.frame_policy import FramePolicy
from trustai.lerobot.policy_batches import audit_policy

CHECKPOINT_STAGES = frozenset({Stage.CHECKPOINT, Stage.RELEASE})
PUSHT_TASK = "Push the T-shaped block onto the T-shaped target."


def _seed(seed: int, *parts: str) -> int:
    """A seed for one (corruption, input, ...) combination that does not depend on iteration order."""
    return seed + zlib.crc32("/".join(parts).encode())


def _known_corruption(name: str) -> str:
    corruption(name)
    return name


class CorruptionParams(FrameParams):
    """Parameters of ``robustness.corruptions``."""

    corruptions: list[str] = Field(default_factory=lambda: list(CORRUPTIONS), min_length=1)
    severities: list[int] = Field([1, 3, 5], min_length=1, description="levels 1 (mild) to 5 (severe)")
    loss: bool = Field(True, description="also measure the policy's training loss on the corrupted frames")
    min_input_effect: float = Field(
        1e-6,
        ge=0,
        description="worst action deviation (action stds) at or below which the policy counts as ignoring "
        "its inputs: its robustness is then inconclusive, not perfect",
    )

    @field_validator("corruptions")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        return [_known_corruption(n) for n in names]

    @field_validator("severities")
    @classmethod
    def _levels(cls, levels: list[int]) -> list[int]:
        if not set(levels) <= set(SEVERITIES):
            raise ValueError(f"severities must be among {list(SEVERITIES)}")
        return sorted(set(levels))


def _corrupted(
    frames: Batch, name: str, key: str, severity: int, seed: int, state_std: torch.Tensor | None
) -> Batch:
    generator = torch.Generator().manual_seed(_seed(seed, name, key))
    if corruption(name).target == "state":
        return {**frames, key: corrupt_state(frames[key], severity, generator, state_std)}
    return {**frames, key: corrupt_images(name, frames[key], severity, generator)}


@register
class Corruptions(Audit):
    """Each corruption at each severity on each camera separately (and ``state_noise`` on the state).

    Metrics: ``Corruptions.metrics``; inconclusive when no corruption moved the actions at all (by
    more than ``min_input_effect``): a policy that ignores its inputs is not robust, it is unmeasured.
    Table ``corruptions``: one row per (corruption, input, severity). Artifact
    ``robustness_curves.png``: deviation and loss increase against severity.
    """

    name = "robustness.corruptions"
    version = "1"
    stages = CHECKPOINT_STAGES
    Params = CorruptionParams
    metrics = declare(
        {
            "frames": Metric("count", "neutral", "held-out frames corrupted"),
            "worst_action_deviation": Metric(
                "action std",
                "lower_is_better",
                "largest mean action deviation over (corruption, input, severity)",
            ),
            "mean_action_deviation": Metric(
                "action std", "lower_is_better", "mean action deviation over (corruption, input, severity)"
            ),
            "clean_loss": Metric("loss", "neutral", "mean per-sample training loss on the clean frames"),
            "worst_loss_increase": Metric(
                "loss", "lower_is_better", "largest corrupted minus clean mean loss (with loss)"
            ),
            "mean_loss_increase": Metric(
                "loss", "lower_is_better", "mean corrupted minus clean loss (with loss)"
            ),
        },
        {
            f"worst_action_deviation_{name}": Metric(
                "action std", "lower_is_better", f"largest mean action deviation under {name}"
            )
            for name in CORRUPTIONS
        },
    )

    def measure(self, ctx: AuditContext, params: CorruptionParams) -> Measurement:
        adapter, frames = held_out_batch(ctx, params)
        action_std = feature_stats(ctx.dataset, adapter, ACTION).std
        wants_state = adapter.state_key is not None and "state_noise" in params.corruptions
        state_std = feature_stats(ctx.dataset, adapter, adapter.state_key).std if wants_state else None
        rows = []
        with torch.no_grad():
            clean = adapter.actions(frames)
            clean_loss = float(adapter.per_sample_loss(frames).mean()) if params.loss else None
            for name in params.corruptions:
                spec = corruption(name)
                keys = (
                    adapter.camera_keys if spec.target == "camera" else [k for k in [adapter.state_key] if k]
                )
                for key in keys:
                    for severity in params.severities:
                        corrupted = _corrupted(frames, name, key, severity, ctx.seed, state_std)
                        deviation = action_deviation(adapter.actions(corrupted), clean, action_std)
                        row = {
                            "corruption": name,
                            "input": input_label(key),
                            "severity": severity,
                            "level": spec.levels[severity - 1],
                            "level_unit": spec.unit,
                            "action_deviation": float(deviation.mean()),
                            "action_deviation_max": float(deviation.max()),
                        }
                        if clean_loss is not None:
                            row["loss_increase"] = (
                                float(adapter.per_sample_loss(corrupted).mean()) - clean_loss
                            )
                        rows.append(row)
        if not rows:
            raise ValueError("none of the requested corruptions applies to this policy's inputs")
        metrics = _corruption_metrics(rows, len(clean), clean_loss)
        worst = max(r["action_deviation_max"] for r in rows)
        return Measurement(
            metrics=metrics,
            tables={"corruptions": rows},
            artifacts=[_corruption_plot(ctx, rows, clean_loss is not None)],
            inconclusive=(
                f"the policy's actions did not change under any corruption (largest deviation {worst:.3g} "
                f"action stds <= min_input_effect {params.min_input_effect:g}): it ignores its inputs"
                if worst <= params.min_input_effect
                else None
            ),
        )


def _corruption_metrics(
    rows: list[dict], frames: int, clean_loss: float | None
) -> dict[str, float | int | None]:
    deviations = [r["action_deviation"] for r in rows]
    metrics: dict[str, float | int | None] = {
        "frames": frames,
        "worst_action_deviation": max(deviations),
        "mean_action_deviation": float(np.mean(deviations)),
    }
    for name in dict.fromkeys(r["corruption"] for r in rows):
        metrics[f"worst_action_deviation_{name}"] = max(
            r["action_deviation"] for r in rows if r["corruption"] == name
        )
    if clean_loss is not None:
        increases = [r["loss_increase"] for r in rows]
        metrics |= {
            "clean_loss": clean_loss,
            "worst_loss_increase": max(increases),
            "mean_loss_increase": float(np.mean(increases)),
        }
    return metrics


def _corruption_plot(ctx: AuditContext, rows: list[dict], with_loss: bool) -> Path:
    panels = [Panel("action deviation", "severity", "mean |Δaction| / action std")]
    if with_loss:
        panels.append(Panel("loss increase", "severity", "corrupted − clean loss"))
    for row in rows:
        label = f"{row['corruption']} @ {row['input']}"
        for panel, value in zip(panels, [row["action_deviation"], row.get("loss_increase")], strict=False):
            xs, ys = panel.series.setdefault(label, ([], []))
            xs.append(row["severity"])
            ys.append(value)
    return save_panels(ctx.artifact_dir / "robustness_curves.png", panels)


class AdversarialParams(FrameParams):
    """Parameters of ``robustness.adversarial``."""

    implementation: Literal["native", "art"] = Field("native", description="batched PyTorch, or IBM ART")
    method: Literal["fgsm", "pgd"] = "pgd"
    epsilons: list[float] = Field(
        [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], min_length=1, description="L∞ budgets, pixel range [0, 1]"
    )
    steps: int = Field(10, ge=1, description="PGD iterations (FGSM takes one step of size ε)")
    step_fraction: float = Field(0.25, gt=0, le=1, description="PGD step size as a fraction of ε")
    threshold: float = Field(
        1.0, gt=0, description="mean action deviation (in action stds) that breaks the policy"
    )
    cameras: list[str] | None = Field(None, description="camera keys attacked together; all when None")
    max_rows: int = Field(
        64, ge=1, description="rows per policy call when the native attack batches ε values"
    )

    @field_validator("epsilons")
    @classmethod
    def _budgets(cls, epsilons: list[float]) -> list[float]:
        if any(not 0 <= e <= 1 for e in epsilons):
            raise ValueError("epsilons must lie in [0, 1] (pixels are in [0, 1])")
        return sorted(set(epsilons))


@register
class Adversarial(Audit):
    """An ε sweep of an untargeted L∞ attack on camera pixels that maximises the action deviation.

    Metrics: ``Adversarial.metrics``. When no ε of the sweep broke the policy, ``min_breaking_epsilon``
    is not measured: it is None, known only to exceed the largest ε tried (``Measurement.exceeds``), so
    a ``min`` threshold at or below that ε holds and one above it is inconclusive. Table ``sweep``: per
    ε, its value in 8-bit levels, mean and max deviation and the share of frames beyond the threshold.
    Artifact ``adversarial_curve.png``.
    """

    name = "robustness.adversarial"
    version = "1"
    stages = CHECKPOINT_STAGES
    Params = AdversarialParams
    metrics = declare(
        {
            "frames": Metric("count", "neutral", "held-out frames attacked"),
            "min_breaking_epsilon": Metric(
                "L∞ pixel range",
                "higher_is_better",
                "smallest ε whose mean action deviation exceeds threshold (None: nothing broke)",
            ),
            "broken_within_sweep": Metric("bool", "lower_is_better", "some ε of the sweep broke the policy"),
            "max_epsilon_tested": Metric("L∞ pixel range", "neutral", "largest ε of the sweep"),
            "max_action_deviation": Metric(
                "action std", "lower_is_better", "mean action deviation over frames at the worst ε"
            ),
            "action_deviation_at_max_epsilon": Metric(
                "action std", "lower_is_better", "mean action deviation over frames at the largest ε"
            ),
        }
    )

    def measure(self, ctx: AuditContext, params: AdversarialParams) -> Measurement:
        adapter, frames = held_out_batch(ctx, params)
        cameras = params.cameras or adapter.camera_keys
        unknown = sorted(set(cameras) - set(adapter.camera_keys))
        if unknown:
            raise ValueError(f"cameras {unknown} are not inputs of the policy ({adapter.camera_keys})")
        std = feature_stats(ctx.dataset, adapter, ACTION).std
        model = CameraActions(FramePolicy(adapter, frames, params.max_rows), cameras, std)
        steps, fraction = (1, 1.0) if params.method == "fgsm" else (params.steps, params.step_fraction)
        if params.implementation == "art":
            deviations = sweep_art(model, params.epsilons, steps, fraction, params.method)
        else:
            deviations = sweep_native(model, params.epsilons, steps, fraction, params.max_rows)
        return _adversarial_measurement(ctx, params, deviations)


def _adversarial_measurement(
    ctx: AuditContext, params: AdversarialParams, deviations: torch.Tensor
) -> Measurement:
    means = deviations.mean(1).tolist()
    broken = [eps for eps, mean in zip(params.epsilons, means, strict=True) if mean > params.threshold]
    sweep = [
        {
            "epsilon": eps,
            "epsilon_255": eps * 255,
            "mean_action_deviation": mean,
            "max_action_deviation": float(row.max()),
            "broken_frames": float((row > params.threshold).float().mean()),
        }
        for eps, mean, row in zip(params.epsilons, means, deviations, strict=True)
    ]
    curve = Panel(
        f"{params.method.upper()} on camera pixels ({params.implementation})",
        "ε (L∞, pixel range [0, 1])",
        "mean |Δaction| / action std",
        {"mean over frames": (list(params.epsilons), means)},
        hline=params.threshold,
        hline_label="threshold",
    )
    return Measurement(
        metrics={
            "frames": deviations.shape[1],
            "min_breaking_epsilon": broken[0] if broken else None,
            "broken_within_sweep": bool(broken),
            "max_epsilon_tested": params.epsilons[-1],
            "max_action_deviation": max(means),
            "action_deviation_at_max_epsilon": means[-1],
        },
        tables={"sweep": sweep},
        artifacts=[save_panels(ctx.artifact_dir / "adversarial_curve.png", [curve])],
        exceeds={} if broken else {"min_breaking_epsilon": params.epsilons[-1]},
    )


class Perturbation(BaseModel):
    """One sensor corruption applied at every control step of a rollout."""

    model_config = ConfigDict(extra="forbid")
    corruption: str
    severity: int = Field(3, ge=1, le=5)

    @field_validator("corruption")
    @classmethod
    def _known(cls, name: str) -> str:
        return _known_corruption(name)

    @property
    def label(self) -> str:
        """``<corruption>_s<severity>``, the suffix of this condition's metrics."""
        return f"{self.corruption}_s{self.severity}"


class ClosedLoopParams(BaseModel):
    """Parameters of ``robustness.closed_loop``."""

    model_config = ConfigDict(extra="forbid")
    episodes: int = Field(10, ge=1, description="rollouts per condition (same seeds in every condition)")
    max_steps: int = Field(300, ge=1, description="environment steps per rollout")
    perturbations: list[Perturbation] = Field(
        default_factory=lambda: [
            Perturbation(corruption=c) for c in ("gaussian_noise", "occlusion", "state_noise")
        ]
    )
    task: str = PUSHT_TASK
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")
    min_clean_success: float = Field(
        0.2,
        ge=0,
        le=1,
        description="clean success rate below which success_rate_drop is inconclusive: a policy that "
        "rarely succeeds has little success to lose",
    )


def require_pusht_policy(adapter: PolicyAdapter) -> tuple[str, tuple[int, int]]:
    """The policy's camera key and image size (H, W) when it fits PushT (one RGB camera, 2-dof state
    and action); TrustaiUserError naming every mismatch otherwise."""
    cameras = [m for m in adapter.modalities if m.kind == "camera"]
    state = [m for m in adapter.modalities if m.kind == "state"]
    problems = []
    if len(cameras) != 1 or cameras[0].shape[0] != 3:
        problems.append(f"PushT has one RGB camera, the policy reads {[(m.name, m.shape) for m in cameras]}")
    if [m.shape for m in state] != [(2,)]:
        problems.append(
            f"PushT's state is the 2-dof agent position, the policy reads {[m.shape for m in state]}"
        )
    if adapter.action_dim != 2:
        problems.append(f"PushT takes 2-dof actions, the policy outputs {adapter.action_dim}")
    if problems:
        raise TrustaiUserError(
            "the policy does not fit the PushT simulation: " + "; ".join(problems),
            fix="run robustness.closed_loop only in packs for PushT policies (e.g. trained on lerobot/pusht)",
        )
    return cameras[0].name, tuple(cameras[0].shape[1:])  # type: ignore[return-value]


@register
class ClosedLoop(Audit):
    """Rollouts in gym-pusht (offline), clean and under each perturbation, with paired seeds.

    The policy runs its action chunks open loop for ``n_action_steps`` steps (its config), then
    re-plans. Metrics: ``ClosedLoop.metrics``; ``success_rate_drop`` is inconclusive when the clean
    success rate is below ``min_clean_success``. Table ``rollouts``: one row per (condition, episode).
    """

    name = "robustness.closed_loop"
    version = "1"
    stages = CHECKPOINT_STAGES
    Params = ClosedLoopParams
    metrics = declare(
        {
            "worst_success_rate": Metric(
                "fraction", "higher_is_better", "lowest success rate of any condition"
            ),
            "success_rate_drop": Metric(
                "fraction", "lower_is_better", "clean success rate minus the worst perturbed condition's"
            ),
            "reward_drop": Metric(
                "coverage", "lower_is_better", "clean mean max reward minus the worst perturbed condition's"
            ),
        },
        {
            f"{metric}_{condition}": Metric(unit, "higher_is_better", f"{meaning} ({condition})")
            for condition in ["clean", *(f"{c}_s{s}" for c in CORRUPTIONS for s in SEVERITIES)]
            for metric, unit, meaning in (
                ("success_rate", "fraction", "share of rollouts that succeeded"),
                ("mean_max_reward", "coverage", "mean over rollouts of the best goal coverage (0-1)"),
            )
        },
    )

    def measure(self, ctx: AuditContext, params: ClosedLoopParams) -> Measurement:
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
        import gymnasium

        adapter = audit_policy(ctx, params.device)
        camera, (height, width) = require_pusht_policy(adapter)
        noisy_state = any(corruption(p.corruption).target == "state" for p in params.perturbations)
        state_std = feature_stats(ctx.dataset, adapter, adapter.state_key).std if noisy_state else None
        with warnings.catch_warnings():  # pygame, loaded with the env, warns about pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            env = gymnasium.make(
                "gym_pusht/PushT-v0",
                obs_type="pixels_agent_pos",
                observation_height=height,
                observation_width=width,
                max_episode_steps=params.max_steps,
            )
        rollout = _Rollout(adapter, camera, params.task, state_std)
        rows = []
        try:
            for condition in [None, *params.perturbations]:
                label = condition.label if condition else "clean"
                for episode in range(params.episodes):
                    generator = torch.Generator().manual_seed(_seed(ctx.seed, label, str(episode)))
                    rows.append(
                        {
                            "condition": label,
                            "episode": episode,
                            **rollout.run(env, ctx.seed + episode, condition, generator),
                        }
                    )
        finally:
            env.close()
        metrics = _closed_loop_metrics(rows)
        clean = metrics["success_rate_clean"]
        rare = clean < params.min_clean_success
        return Measurement(
            metrics=metrics,
            tables={"rollouts": rows},
            inconclusive=(
                f"clean success rate {clean:.2f} is below min_clean_success {params.min_clean_success:g}: "
                "too little success to measure a drop"
                if rare
                else None
            ),
            inconclusive_metrics=["success_rate_drop"] if rare else None,
        )


class _Rollout:
    """One policy driving PushT, optionally through a sensor corruption."""

    def __init__(self, adapter: PolicyAdapter, camera: str, task: str, state_std: torch.Tensor | None):
        self.adapter, self.camera, self.task, self.state_std = adapter, camera, task, state_std
        config = adapter.policy.config
        self.replan_every = min(getattr(config, "n_action_steps", adapter.chunk_size), adapter.chunk_size)

    def observe(self, obs: dict, condition: Perturbation | None, generator: torch.Generator) -> Batch:
        batch: Batch = {
            self.camera: torch.from_numpy(obs["pixels"]).permute(2, 0, 1)[None].float() / 255,
            self.adapter.state_key: torch.from_numpy(obs["agent_pos"])[None].float(),
            "task": [self.task],
        }
        if condition is not None and corruption(condition.corruption).target == "state":
            state = self.adapter.state_key
            batch[state] = corrupt_state(batch[state], condition.severity, generator, self.state_std)
        elif condition is not None:
            batch[self.camera] = corrupt_images(
                condition.corruption, batch[self.camera], condition.severity, generator
            )
        return batch

    def run(self, env: Any, seed: int, condition: Perturbation | None, generator: torch.Generator) -> dict:
        obs, _ = env.reset(seed=seed)
        planned: list[np.ndarray] = []
        max_reward, success, steps = 0.0, False, 0
        done = False
        while not done:
            if not planned:
                with torch.no_grad():
                    chunk = self.adapter.actions(self.observe(obs, condition, generator))[0]
                planned = list(chunk[: self.replan_every].cpu().numpy())
            obs, reward, terminated, truncated, info = env.step(planned.pop(0))
            steps += 1
            max_reward = max(max_reward, float(reward))
            success = success or bool(info.get("is_success", False))
            done = terminated or truncated
        return {"success": success, "max_reward": max_reward, "steps": steps}


def _closed_loop_metrics(rows: list[dict]) -> dict[str, float]:
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    success = {c: float(np.mean([r["success"] for r in rows if r["condition"] == c])) for c in conditions}
    reward = {c: float(np.mean([r["max_reward"] for r in rows if r["condition"] == c])) for c in conditions}
    perturbed = [c for c in conditions if c != "clean"] or ["clean"]
    metrics = {f"success_rate_{c}": success[c] for c in conditions}
    metrics |= {f"mean_max_reward_{c}": reward[c] for c in conditions}
    metrics |= {
        "worst_success_rate": min(success.values()),
        "success_rate_drop": success["clean"] - min(success[c] for c in perturbed),
        "reward_drop": reward["clean"] - min(reward[c] for c in perturbed),
    }
    return metrics
