"""Robustness audits of a policy checkpoint: how far its actions move when its sensors degrade
(``robustness.corruptions``), when an attacker perturbs its camera pixels (``robustness.adversarial``),
and how its task success changes in closed loop in simulation (``robustness.closed_loop``, in
``closed_loop.py``: PushT, ALOHA, LIBERO).

Action deviations are ``trustai.lerobot.deviation.action_deviation`` from the policy's own clean actions, in
units of the dataset's action std (meta/stats.json, else the policy's normalisation statistics).
"""

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lerobot.utils.constants import ACTION
from pydantic import Field, field_validator
from trustai.audits._plots import Panel, save_panels
from trustai.audits.robustness.attacks import CameraActions, sweep_art, sweep_native
from trustai.audits.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    condition_seed,
    corrupt_images,
    corrupt_state,
    corruption,
)

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.lerobot.adapter import Batch
from trustai.lerobot.checkpoint_inputs import (
    FrameParams,
    feature_stats,
    held_out_batch,
    input_label,
)
from trustai.lerobot.deviation import action_deviation
from trustai.lerobot.frame_policy import FramePolicy

CHECKPOINT_STAGES = frozenset({Stage.CHECKPOINT, Stage.RELEASE})


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
        return [corruption(n).name for n in names]

    @field_validator("severities")
    @classmethod
    def _levels(cls, levels: list[int]) -> list[int]:
        if not set(levels) <= set(SEVERITIES):
            raise ValueError(f"severities must be among {list(SEVERITIES)}")
        return sorted(set(levels))


def _corrupted(
    frames: Batch, name: str, key: str, severity: int, seed: int, state_std: torch.Tensor | None
) -> Batch:
    generator = torch.Generator().manual_seed(condition_seed(seed, name, key))
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


# The closed-loop audit registers with the family; its names stay importable from here.
from trustai.audits.robustness.closed_loop import ClosedLoop, ClosedLoopParams, Perturbation  # noqa: E402

__all__ = ["Adversarial", "ClosedLoop", "ClosedLoopParams", "Corruptions", "Perturbation"]
