"""``explainability.attributions``: which inputs a policy checkpoint's actions rest on (Captum's
Integrated Gradients, Saliency and Occlusion), shown as heat maps over camera frames, and whether
those explanations are faithful: deleting the pixels they rank highest must move the actions more
than deleting as many random pixels (a deletion curve, Petsiuk et al. 2018).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from lerobot.utils.constants import ACTION
from pydantic import Field, field_validator

from trustai.attribution import (
    METHODS,
    AttributionInputs,
    Method,
    area_under,
    attribute,
    attribution_inputs,
    deletion_curves,
    forward_function,
    pixel_scores,
    shares,
    target_function,
)
from trustai.audit import Audit, AuditContext, Measurement, register
from trustai.checkpoint_inputs import FrameParams, feature_stats, held_out_batch, input_label
from trustai.evidence import Stage
from trustai.frame_policy import TASK, FramePolicy
from trustai.plots import Panel, save_overlays, save_panels

# Added to both deletion areas so a policy no deletion moves gets a ratio of 1, not 0/0.
_AREA_EPSILON = 1e-12


class AttributionParams(FrameParams):
    """Parameters of ``explainability.attributions``."""

    frames: int = Field(4, ge=1, le=100_000, description="frames sampled evenly from the chosen episodes")
    methods: list[Method] = Field(default_factory=lambda: list(METHODS), min_length=1)
    target: Literal["chunk_norm"] | int = Field(
        "chunk_norm", description="'chunk_norm' (L2 norm of the standardised action chunk) or an action dim"
    )
    ig_steps: int = Field(16, ge=2, description="Integrated Gradients path steps")
    occlusion_fraction: float = Field(0.125, gt=0, le=1, description="occlusion patch side / image side")
    deletion_fractions: list[float] = Field([0.05, 0.1, 0.2, 0.4], min_length=1)
    heatmap_frames: int = Field(2, ge=0, description="frames drawn with heat maps")
    max_rows: int = Field(64, ge=1, description="rows per policy call")

    @field_validator("deletion_fractions")
    @classmethod
    def _fractions(cls, fractions: list[float]) -> list[float]:
        if any(not 0 < f <= 1 for f in fractions):
            raise ValueError("deletion fractions must lie in (0, 1]")
        return sorted(set(fractions))


def _label(key: str) -> str:
    return "language" if key == TASK else input_label(key)


@register
class Attributions(Audit):
    """Per-input attribution shares, IG convergence, heat maps and deletion faithfulness.

    Metrics: ``frames``; ``share_<method>_<input>`` (input: camera name, ``state``, ``language``) for
    every attributed input; ``not_differentiable_inputs`` (count; table ``not_differentiable`` says
    why); with Integrated Gradients ``ig_convergence_delta`` (mean |delta|) and
    ``ig_relative_convergence_delta`` (that over mean |F(x) - F(baseline)|); with an attributed
    camera ``deletion_auc_<method>``, ``deletion_auc_random``, ``deletion_auc_ratio_<method>``,
    ``deletion_auc_ratio`` (the smallest ratio over methods) and ``beats_random`` (every method's
    deletion area exceeds random's). Tables ``shares``, ``deletion``. Artifacts
    ``attribution_heatmaps.png`` and ``deletion_curves.png``.

    Integrated Gradients and Occlusion shares are in units of the target (comparable across inputs);
    Saliency shares compare raw gradient magnitudes, which depend on each input's scale.
    """

    name = "explainability.attributions"
    version = "1"
    stages = frozenset({Stage.CHECKPOINT, Stage.RELEASE})
    Params = AttributionParams

    def measure(self, ctx: AuditContext, params: AttributionParams) -> Measurement:
        adapter, frames = held_out_batch(ctx, params)
        action = feature_stats(ctx.dataset, adapter, ACTION)
        state = feature_stats(ctx.dataset, adapter, adapter.state_key) if adapter.state_key else None
        policy = FramePolicy(adapter, frames, params.max_rows)
        inputs = attribution_inputs(policy, state)
        forward = forward_function(
            policy, inputs.keys, target_function(action, params.target, adapter.action_dim)
        )
        metrics: dict[str, float | int | bool | None] = {
            "frames": policy.rows,
            "not_differentiable_inputs": len(inputs.not_differentiable),
        }
        share_rows, scores, artifacts = [], {}, []
        for method in params.methods:
            attributions, delta = attribute(
                method,
                forward,
                inputs,
                policy.rows,
                ig_steps=params.ig_steps,
                occlusion_fraction=params.occlusion_fraction,
                max_rows=params.max_rows,
            )
            for key, share in shares(attributions, inputs.keys).items():
                metrics[f"share_{method}_{_label(key)}"] = share
                share_rows.append({"method": method, "input": _label(key), "share": share})
            if delta is not None:
                metrics |= _convergence(forward, inputs, delta)
            if inputs.cameras:
                scores[method] = pixel_scores(attributions, inputs)
        tables = {
            "shares": share_rows,
            "not_differentiable": [
                {"input": _label(k), "reason": r} for k, r in inputs.not_differentiable.items()
            ],
        }
        if scores:
            generator = torch.Generator().manual_seed(ctx.seed)
            curves = deletion_curves(policy, scores, params.deletion_fractions, action.std, generator)
            metrics |= _deletion_metrics(params.deletion_fractions, curves)
            tables["deletion"] = [
                {"ranking": name, "fraction": f, "action_deviation": value}
                for name, values in curves.items()
                for f, value in zip(params.deletion_fractions, values, strict=True)
            ]
            artifacts.append(_deletion_plot(ctx.artifact_dir, params.deletion_fractions, curves))
            if params.heatmap_frames:
                artifacts.append(_heatmaps(ctx.artifact_dir, policy, scores, params.heatmap_frames))
        return Measurement(metrics=metrics, tables=tables, artifacts=artifacts)


def _convergence(
    forward: Callable[..., torch.Tensor], inputs: AttributionInputs, delta: torch.Tensor
) -> dict[str, float]:
    with torch.no_grad():
        gap = (forward(*inputs.inputs) - forward(*inputs.baselines)).abs().mean()
    mean_delta = float(delta.abs().mean())
    return {
        "ig_convergence_delta": mean_delta,
        "ig_relative_convergence_delta": mean_delta / max(float(gap), _AREA_EPSILON),
    }


def _deletion_metrics(fractions: list[float], curves: dict[str, list[float]]) -> dict[str, float | bool]:
    areas = {name: area_under(fractions, values) for name, values in curves.items()}
    random = areas.pop("random")
    ratios = {name: (area + _AREA_EPSILON) / (random + _AREA_EPSILON) for name, area in areas.items()}
    metrics: dict[str, float | bool] = {f"deletion_auc_{name}": area for name, area in areas.items()}
    metrics |= {f"deletion_auc_ratio_{name}": ratio for name, ratio in ratios.items()}
    metrics |= {
        "deletion_auc_random": random,
        "deletion_auc_ratio": min(ratios.values()),
        "beats_random": all(area > random for area in areas.values()),
    }
    return metrics


def _deletion_plot(folder: Path, fractions: list[float], curves: dict[str, list[float]]) -> Path:
    panel = Panel(
        "deletion curves (higher than random = faithful)",
        "share of camera pixels blacked out, highest attribution first",
        "mean |Δaction| / action std",
        {name: ([0.0, *fractions], [0.0, *values]) for name, values in curves.items()},
    )
    return save_panels(folder / "deletion_curves.png", [panel])


def _heatmaps(
    folder: Path, policy: FramePolicy, scores: dict[str, dict[str, torch.Tensor]], count: int
) -> Path:
    rows = []
    for frame in range(min(count, policy.rows)):
        for camera in next(iter(scores.values())):
            image = policy.frames[camera][frame]
            name = input_label(camera)
            row = [(f"frame {frame} · {name}", image, None)]
            row += [(method, image, maps[camera][frame]) for method, maps in scores.items()]
            rows.append(row)
    return save_overlays(folder / "attribution_heatmaps.png", rows)
