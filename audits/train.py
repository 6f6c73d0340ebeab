"""Training-stage audits: ``train.health`` judges the loss and gradient statistics the training hook
collected (non-finite values, divergence) without touching the training step."""

import math
import statistics

from pydantic import BaseModel, ConfigDict, Field

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage


class HealthParams(BaseModel):
    """``window``: steps averaged at the start and end of the loss curve."""

    model_config = ConfigDict(extra="forbid")
    window: int = Field(default=10, ge=1)


@register
class TrainHealth(Audit):
    """Loss/grad-norm health of the steps seen so far (metrics: ``TrainHealth.metrics``)."""

    name = "train.health"
    version = "1"
    stages = frozenset({Stage.TRAIN})
    Params = HealthParams
    metrics = declare(
        {
            "steps": Metric("count", "neutral", "training steps seen so far"),
            "nonfinite_loss_steps": Metric("count", "lower_is_better", "steps whose loss was NaN or inf"),
            "nonfinite_grad_steps": Metric(
                "count", "lower_is_better", "steps whose gradient norm was NaN or inf"
            ),
            "grad_norm_max": Metric("grad norm", "neutral", "largest gradient norm seen"),
            "loss_initial": Metric("loss", "neutral", "mean loss of the first window of steps"),
            "loss_final": Metric("loss", "lower_is_better", "mean loss of the last window of steps"),
            "loss_min": Metric("loss", "lower_is_better", "lowest finite loss seen"),
            "divergence_ratio": Metric(
                "ratio",
                "lower_is_better",
                "final window mean / best window mean: 1.0 means at its best, > 1 the loss climbed back up",
            ),
            "ranks": Metric("count", "neutral", "training processes whose statistics were gathered"),
        }
    )

    def measure(self, ctx: AuditContext, params: HealthParams) -> Measurement:
        if ctx.training is None:
            raise ValueError("train.health needs training statistics from a training hook")
        s = ctx.training
        finite = [v for _, v in s["loss_history"] if math.isfinite(v)]
        if not finite:
            raise ValueError("no finite loss values were observed")
        w = min(params.window, len(finite))
        windows = [statistics.fmean(finite[i : i + w]) for i in range(0, len(finite) - w + 1)]
        best = min(windows)
        return Measurement(
            metrics={
                "steps": s["steps"],
                "nonfinite_loss_steps": s["nonfinite_loss_steps"],
                "nonfinite_grad_steps": s["nonfinite_grad_steps"],
                "grad_norm_max": s["grad_norm_max"],
                "loss_initial": windows[0],
                "loss_final": windows[-1],
                "loss_min": min(finite),
                "divergence_ratio": windows[-1] / best if best > 0 else 1.0,
                "ranks": max(1, len(s.get("ranks", []))),
            },
            tables={
                "loss_curve": [{"step": step, "loss": v} for step, v in s["loss_history"]],
                "ranks": [{"rank": i, **r} for i, r in enumerate(s.get("ranks", []))],
            },
        )
