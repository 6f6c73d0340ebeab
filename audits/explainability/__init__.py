"""``explainability.attributions``: which inputs a policy checkpoint's actions rest on (Captum's
Integrated Gradients, Saliency and Occlusion), shown as heat maps over camera frames, and whether
those explanations are faithful: deleting the pixels they rank highest must move the actions more
than deleting as many random pixels (a deletion curve, Petsiuk et al. 2018).
"""

from pathlib import Path
from typing import Literal

import torch
from lerobot.utils.constants import ACTION
from pydantic import Field, field_validator
from trustai.audits._plots import Panel, save_overlays, save_panels
from trustai.audits.explainability.attribution import (
    METHODS,
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

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.lerobot.checkpoint_inputs import FrameParams, feature_stats, held_out_batch, input_label
from trustai.lerobot.frame_policy import TASK, FramePolicy

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
    min_input_effect: float = Field(
        1e-6,
        ge=0,
        description="mean |F(x) - F(baseline)| at or below which the policy counts as ignoring its inputs: "
        "there is nothing to attribute, so the audit is inconclusive",
    )
    max_ig_relative_delta: float = Field(
        0.5,
        gt=0,
        description="ig_relative_convergence_delta above which Integrated Gradients did not converge: "
        "its shares are inconclusive (raise ig_steps)",
    )

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

    Metrics: ``Attributions.metrics`` (input: camera name, ``state``, ``language``); table
    ``not_differentiable`` says why an input was not attributed. Inconclusive when the policy's output
    does not move between the inputs and their baselines (it ignores its inputs), and for the
    Integrated Gradients metrics when IG did not converge (``max_ig_relative_delta``). Tables
    ``shares``, ``deletion``. Artifacts ``attribution_heatmaps.png`` and ``deletion_curves.png``.

    Integrated Gradients and Occlusion shares are in units of the target (comparable across inputs);
    Saliency shares compare raw gradient magnitudes, which depend on each input's scale.
    """

    name = "explainability.attributions"
    version = "1"
    stages = frozenset({Stage.CHECKPOINT, Stage.RELEASE})
    Params = AttributionParams
    metrics = declare(
        {
            "frames": Metric("count", "neutral", "held-out frames attributed"),
            "not_differentiable_inputs": Metric("count", "lower_is_better", "inputs gradients cannot reach"),
            "ig_convergence_delta": Metric("target units", "lower_is_better", "mean |IG completeness delta|"),
            "ig_relative_convergence_delta": Metric(
                "ratio", "lower_is_better", "ig_convergence_delta over mean |F(x) - F(baseline)|"
            ),
            "deletion_auc_random": Metric(
                "action std", "neutral", "area under the deletion curve of a random pixel ranking"
            ),
            "deletion_auc_ratio": Metric(
                "ratio", "higher_is_better", "smallest deletion_auc_ratio_<method> over methods"
            ),
            "beats_random": Metric(
                "bool", "higher_is_better", "every method's deletion area exceeds random's"
            ),
        },
        {
            f"share_{method}_<input>": Metric(
                "fraction", "neutral", f"share of {method} attribution on an input"
            )
            for method in METHODS
        },
        {
            f"deletion_auc_{method}": Metric(
                "action std", "higher_is_better", f"area under the deletion curve of the {method} ranking"
            )
            for method in METHODS
        },
        {
            f"deletion_auc_ratio_{method}": Metric(
                "ratio", "higher_is_better", f"deletion_auc_{method} over deletion_auc_random (> 1: faithful)"
            )
            for method in METHODS
        },
    )

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
        not_differentiable = [{"input": _label(k), "reason": r} for k, r in inputs.not_differentiable.items()]
        with torch.no_grad():
            effect = float((forward(*inputs.inputs) - forward(*inputs.baselines)).abs().mean())
        if effect <= params.min_input_effect:
            return Measurement(
                metrics,
                {"not_differentiable": not_differentiable},
                inconclusive=f"the policy's output moves by {effect:.3g} (<= min_input_effect "
                f"{params.min_input_effect:g}) between its inputs and their baselines: it ignores its "
                "inputs, there is nothing to attribute",
            )
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
                metrics |= _convergence(delta, effect)
            if inputs.cameras:
                scores[method] = pixel_scores(attributions, inputs)
        tables = {"shares": share_rows, "not_differentiable": not_differentiable}
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
        reason, about = _unconverged(metrics, params.max_ig_relative_delta)
        return Measurement(metrics, tables, artifacts, inconclusive=reason, inconclusive_metrics=about)


def _unconverged(
    metrics: dict[str, float | int | bool | None], max_relative: float
) -> tuple[str | None, list[str] | None]:
    """(reason, the metrics resting on Integrated Gradients) when IG did not converge; (None, None) else."""
    relative = metrics.get("ig_relative_convergence_delta")
    if not isinstance(relative, float) or relative <= max_relative:
        return None, None
    ig = [m for m in metrics if "integrated_gradients" in m or m in ("deletion_auc_ratio", "beats_random")]
    reason = (
        f"Integrated Gradients did not converge (relative delta {relative:.3g} > max_ig_relative_delta "
        f"{max_relative:g}; raise ig_steps)"
    )
    return reason, ig


def _convergence(delta: torch.Tensor, effect: float) -> dict[str, float]:
    """IG's completeness error: mean |delta|, and that over the output's mean move ``effect``."""
    mean_delta = float(delta.abs().mean())
    return {
        "ig_convergence_delta": mean_delta,
        "ig_relative_convergence_delta": mean_delta / max(effect, _AREA_EPSILON),
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
