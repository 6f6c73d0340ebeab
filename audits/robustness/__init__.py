"""Robustness audits of a policy checkpoint: how far its actions move when its sensors degrade
(``robustness.corruptions``), when an attacker perturbs its camera pixels or its state
(``robustness.adversarial``), and how its task success changes in closed loop in simulation
(``robustness.closed_loop``, in ``closed_loop.py``: PushT, ALOHA, LIBERO).

Action deviations are ``trustai.lerobot.deviation.action_deviation`` from the policy's own clean actions, in
units of the dataset's action std (meta/stats.json, else the policy's normalisation statistics).
"""

from pathlib import Path

import numpy as np
import torch
from lerobot.utils.constants import ACTION
from pydantic import Field, field_validator
from trustai.audits._plots import Panel, save_panels
from trustai.audits.robustness.attacks import (
    Attack,
    Implementation,
    InputActions,
    Method,
    Target,
    gradient_reaches,
    sweep_targets,
)
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


MAX_STATE_EPSILON = 10.0
ALL_CAMERAS = "all cameras"  # the name of the joint camera attack; no input label has a space
UNITS = {"camera": "L∞ pixel range", "state": "L∞ state std"}


class AdversarialParams(FrameParams):
    """Parameters of ``robustness.adversarial``."""

    implementation: Implementation = Field("native", description="batched PyTorch, or IBM ART")
    method: Method = "pgd"
    epsilons: list[float] = Field(
        [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], min_length=1, description="L∞ budgets, pixel range [0, 1]"
    )
    state_epsilons: list[float] = Field(
        [0.0, 0.05, 0.1, 0.2],
        min_length=1,
        description="L∞ budgets on the state, in units of its per-dimension dataset std",
    )
    steps: int = Field(10, ge=1, description="PGD iterations (FGSM takes one step of size ε)")
    step_fraction: float = Field(0.25, gt=0, le=1, description="PGD step size as a fraction of ε")
    threshold: float = Field(
        1.0, gt=0, description="mean action deviation (in action stds) that breaks the policy"
    )
    cameras: list[str] | None = Field(None, description="camera keys attacked together; all when None")
    inputs: list[str] | None = Field(
        None,
        description="inputs attacked one at a time (camera keys, the state key); every camera and the "
        "state when None, none when empty",
    )
    max_rows: int = Field(
        64, ge=1, description="rows per policy call when the native attack batches (input, ε) budgets"
    )

    @field_validator("epsilons")
    @classmethod
    def _budgets(cls, epsilons: list[float]) -> list[float]:
        if any(not 0 <= e <= 1 for e in epsilons):
            raise ValueError("epsilons must lie in [0, 1] (pixels are in [0, 1])")
        return sorted(set(epsilons))

    @field_validator("state_epsilons")
    @classmethod
    def _state_budgets(cls, epsilons: list[float]) -> list[float]:
        if any(not 0 <= e <= MAX_STATE_EPSILON for e in epsilons):
            raise ValueError(f"state_epsilons must lie in [0, {MAX_STATE_EPSILON:g}] (state stds)")
        return sorted(set(epsilons))


@register
class Adversarial(Audit):
    """ε sweeps of an untargeted L∞ attack that maximises the action deviation: on every camera's
    pixels together (the headline metrics), then on each input alone (every camera, and the state with
    ε in units of its per-dimension std), so the evidence says which input is most fragile.

    Metrics: ``Adversarial.metrics``. When no ε of a sweep broke the policy, its
    ``min_breaking_epsilon`` is not measured: it is None, known only to exceed the largest ε tried
    (``Measurement.exceeds``), so a ``min`` threshold at or below that ε holds and one above it is
    inconclusive. An input the actions' gradient does not reach (π0.5 reads its state as text tokens),
    or a state the policy does not have, is not attacked: its metrics are None and inconclusive.
    Table ``sweep`` (all cameras): per ε, its value in 8-bit levels, mean and max deviation and the
    share of frames beyond the threshold; table ``inputs``: the same per (input, ε). Artifact
    ``adversarial_curve.png``.
    """

    name = "robustness.adversarial"
    version = "2"
    stages = CHECKPOINT_STAGES
    Params = AdversarialParams
    metrics = declare(
        {
            "frames": Metric("count", "neutral", "held-out frames attacked"),
            "min_breaking_epsilon": Metric(
                UNITS["camera"],
                "higher_is_better",
                "smallest ε on all cameras together whose mean action deviation exceeds threshold "
                "(None: nothing broke)",
            ),
            "broken_within_sweep": Metric("bool", "lower_is_better", "some ε of the sweep broke the policy"),
            "max_epsilon_tested": Metric(UNITS["camera"], "neutral", "largest ε of the sweep"),
            "max_action_deviation": Metric(
                "action std", "lower_is_better", "mean action deviation over frames at the worst ε"
            ),
            "action_deviation_at_max_epsilon": Metric(
                "action std", "lower_is_better", "mean action deviation over frames at the largest ε"
            ),
            "min_breaking_epsilon_<camera>": Metric(
                UNITS["camera"], "higher_is_better", "min_breaking_epsilon with only this camera attacked"
            ),
            "action_deviation_at_max_epsilon_<camera>": Metric(
                "action std", "lower_is_better", "action_deviation_at_max_epsilon, only this camera attacked"
            ),
            "min_breaking_epsilon_state": Metric(
                UNITS["state"],
                "higher_is_better",
                "smallest state ε (state stds) whose mean action deviation exceeds threshold (None: "
                "nothing broke)",
            ),
            "action_deviation_at_max_epsilon_state": Metric(
                "action std", "lower_is_better", "mean action deviation at the largest state ε"
            ),
        }
    )

    def measure(self, ctx: AuditContext, params: AdversarialParams) -> Measurement:
        adapter, frames = held_out_batch(ctx, params)
        state_key = adapter.state_key
        cameras = params.cameras or adapter.camera_keys
        unknown = sorted(set(cameras) - set(adapter.camera_keys))
        if unknown:
            raise ValueError(f"cameras {unknown} are not inputs of the policy ({adapter.camera_keys})")
        attackable = [*adapter.camera_keys, *([state_key] if state_key else [])]
        inputs = attackable if params.inputs is None else list(dict.fromkeys(params.inputs))
        unknown = sorted(set(inputs) - set(attackable))
        if unknown:
            raise ValueError(f"inputs {unknown} are not cameras or the state of the policy ({attackable})")
        action_std = feature_stats(ctx.dataset, adapter, ACTION).std
        state_std = feature_stats(ctx.dataset, adapter, state_key).std if state_key in inputs else None
        policy = FramePolicy(adapter, frames, params.max_rows)
        keys = list(dict.fromkeys([*cameras, *inputs]))
        reached = gradient_reaches(InputActions(policy, keys, action_std, state_std)) if keys else {}
        targets = [Target(ALL_CAMERAS, tuple(cameras), tuple(params.epsilons))] + [
            Target(input_label(k), (k,), tuple(params.state_epsilons if k == state_key else params.epsilons))
            for k in inputs
        ]
        not_attacked = {
            t.name: "the actions' gradient does not reach it (e.g. it is read as text tokens)"
            for t in targets
            if not any(reached[k] for k in t.keys)
        }
        if not cameras:
            not_attacked[ALL_CAMERAS] = "the policy has no camera input"
        if params.inputs is None and state_key is None:
            not_attacked["state"] = "the policy has no state input"
        steps, fraction = (1, 1.0) if params.method == "fgsm" else (params.steps, params.step_fraction)
        attack = Attack(params.implementation, params.method, steps, fraction, params.max_rows)
        attacked = [t for t in targets if t.name not in not_attacked]
        deviations = sweep_targets(policy, attacked, action_std, state_std, attack) if attacked else {}
        return _adversarial_measurement(ctx, params, targets, deviations, not_attacked, policy.rows)


def _metric_names(target: str) -> list[str]:
    """The metrics of one target's sweep, None when it was not attacked (the first one may be bounded)."""
    if target == ALL_CAMERAS:
        return [
            "min_breaking_epsilon",
            "action_deviation_at_max_epsilon",
            "broken_within_sweep",
            "max_action_deviation",
        ]
    return [f"min_breaking_epsilon_{target}", f"action_deviation_at_max_epsilon_{target}"]


def _sweep_rows(epsilons: tuple[float, ...], deviations: torch.Tensor, threshold: float) -> list[dict]:
    return [
        {
            "epsilon": eps,
            "mean_action_deviation": float(row.mean()),
            "max_action_deviation": float(row.max()),
            "broken_frames": float((row > threshold).float().mean()),
        }
        for eps, row in zip(epsilons, deviations, strict=True)
    ]


def _adversarial_measurement(
    ctx: AuditContext,
    params: AdversarialParams,
    targets: list[Target],
    deviations: dict[str, torch.Tensor],
    not_attacked: dict[str, str],
    frames: int,
) -> Measurement:
    metrics: dict[str, float | int | bool | None] = {
        "frames": frames,
        "max_epsilon_tested": params.epsilons[-1],
    }
    for name in not_attacked:
        metrics |= dict.fromkeys(_metric_names(name), None)
    exceeds: dict[str, float] = {}
    tables: dict[str, list[dict]] = {"inputs": []}
    curves = {
        unit: Panel(
            f"{params.method.upper()} on {what} ({params.implementation})",
            f"ε ({unit})",
            "mean |Δaction| / action std",
            hline=params.threshold,
            hline_label="threshold",
        )
        for unit, what in ((UNITS["camera"], "camera pixels"), (UNITS["state"], "the state"))
    }
    for target in targets:
        if target.name in not_attacked:
            continue
        rows = _sweep_rows(target.epsilons, deviations[target.name], params.threshold)
        means = [r["mean_action_deviation"] for r in rows]
        broken = [r["epsilon"] for r in rows if r["mean_action_deviation"] > params.threshold]
        names = _metric_names(target.name)
        metrics |= {names[0]: broken[0] if broken else None, names[1]: means[-1]}
        if not broken:
            exceeds[names[0]] = target.epsilons[-1]
        unit = UNITS["state" if target.name == "state" else "camera"]
        curves[unit].series[target.name] = (list(target.epsilons), means)
        if target.name == ALL_CAMERAS:
            metrics |= {names[2]: bool(broken), names[3]: max(means)}
            tables["sweep"] = [
                {"epsilon": r["epsilon"], "epsilon_255": r["epsilon"] * 255, **r} for r in rows
            ]
        else:
            tables["inputs"] += [{"input": target.name, "epsilon_unit": unit, **r} for r in rows]
    unmeasured = [m for m, v in metrics.items() if v is None and m not in exceeds]
    panels = [p for p in curves.values() if p.series]
    return Measurement(
        metrics=metrics,
        tables=tables,
        artifacts=[save_panels(ctx.artifact_dir / "adversarial_curve.png", panels)] if panels else [],
        inconclusive=(
            "not attacked: " + "; ".join(f"{name}: {why}" for name, why in not_attacked.items())
            if unmeasured
            else None
        ),
        inconclusive_metrics=unmeasured or None,
        exceeds=exceeds,
    )


# The closed-loop audit registers with the family; its names stay importable from here.
from trustai.audits.robustness.closed_loop import ClosedLoop, ClosedLoopParams, Perturbation  # noqa: E402

__all__ = ["Adversarial", "ClosedLoop", "ClosedLoopParams", "Corruptions", "Perturbation"]
