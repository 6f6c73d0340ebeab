"""Drift audits: has the data a robot sees moved away from the data its policy was trained on?

``drift.features`` compares low-dimensional per-frame features (state, action, their frame-to-frame
steps, camera image statistics; see trustai.audits.drift.features) of a current dataset against a
reference dataset, with episodes as the unit of evidence (trustai.audits.drift.permutation): frames
of one episode are far from independent, so two recordings of the same process differ frame by
frame far more than frame-level tests expect. A feature drifts only when its Holm-adjusted
permutation p-value is at most ``alpha`` *and* its effect size reaches ``min_effect``.
"""

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from trustai.audits.drift.features import (
    FeatureSpec,
    check_compatible,
    dataset_features,
    feature_spec,
    with_steps,
)
from trustai.audits.drift.permutation import Splits, compare_feature, episode_splits, holm
from trustai.audits.drift.report import episode_means, write_report

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.errors import TrustaiUserError
from trustai.lerobot.datasets import open_dataset_meta, resolve_dataset_root

REPORT_FILE = "drift_report.html"
# Features plotted in the report besides the drifted ones: those nearest to drifting.
REPORT_PLOTS = 6
METHOD = "wasserstein, episode permutation, Holm"


class DriftParams(BaseModel):
    """Parameters of ``drift.features``."""

    model_config = ConfigDict(extra="forbid")

    max_frames: int = Field(
        5000, ge=10, description="frames sampled from each dataset, as pairs of consecutive frames"
    )
    images: bool = Field(True, description="include per-camera image statistics")
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="chance of calling any feature drifted when none is (Holm over features)",
    )
    min_effect: float = Field(
        0.5,
        ge=0,
        description="smallest effect size that counts as drift: the Wasserstein distance between the "
        "datasets' frames in pooled standard deviations (0.5: half of one)",
    )
    permutations: int = Field(
        5000,
        ge=100,
        description="random splits of the episodes for the p-values (every split when there are fewer; "
        "raised when needed to resolve alpha over all features)",
    )
    use_ray: bool = Field(False, description="compute features per frame file as Ray tasks")


def _episode_values(frames: pd.DataFrame, column: str) -> list[np.ndarray]:
    """The finite values of ``column`` per episode, in episode order (``frames`` is sorted by
    episode, as ``dataset_features`` returns it)."""
    episodes = frames["episode_index"].to_numpy()
    values = np.split(frames[column].to_numpy(np.float64), np.flatnonzero(episodes[1:] != episodes[:-1]) + 1)
    return [v[np.isfinite(v)] for v in values]


def _feature_rows(
    reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec, splits: Splits, params: DriftParams
) -> list[dict[str, object]]:
    """One row per tested feature: the test, its adjusted p-value (score) against alpha (threshold),
    the effect size against min_effect, the unadjusted p-value and the verdict."""
    names = spec.names + spec.step_names
    tests = [
        compare_feature(_episode_values(reference, name), _episode_values(current, name), splits)
        for name in names
    ]
    adjusted = holm([t.p_value for t in tests])
    return [
        {
            "feature": name,
            "group": spec.group(name),
            "method": METHOD,
            "score": score,
            "threshold": params.alpha,
            "effect": test.effect,
            "min_effect": params.min_effect,
            "p_value": test.p_value,
            "drifted": score <= params.alpha and test.effect >= params.min_effect,
        }
        for name, test, score in zip(names, tests, adjusted, strict=True)
    ]


@register
class FeatureDrift(Audit):
    """Per-feature drift of state, action, their steps and camera statistics between a reference and
    a current LeRobot dataset, judged per episode, with an Evidently HTML report as an artifact."""

    name = "drift.features"
    version = "2"
    stages = frozenset({Stage.DATA, Stage.MONITOR})
    Params = DriftParams
    metrics = declare(
        {
            "features": Metric("count", "neutral", "features tested, step features included"),
            "drifted_features": Metric("count", "lower_is_better", "features that drifted"),
            "drifted_share": Metric("fraction", "lower_is_better", "share of tested features that drifted"),
            "dataset_drift": Metric("bool", "lower_is_better", "any feature drifted"),
            "drifted_state_features": Metric("count", "lower_is_better", "state features that drifted"),
            "drifted_action_features": Metric("count", "lower_is_better", "action features that drifted"),
            "drifted_image_features": Metric("count", "lower_is_better", "camera statistics that drifted"),
            "reference_frames": Metric("count", "neutral", "reference frames sampled"),
            "current_frames": Metric("count", "neutral", "current frames sampled"),
            "reference_episodes": Metric("count", "higher_is_better", "reference episodes sampled"),
            "current_episodes": Metric("count", "higher_is_better", "current episodes sampled"),
            "min_p_value": Metric(
                "p-value",
                "lower_is_better",
                "smallest p-value the episode counts allow (above alpha/features: nothing can drift)",
            ),
        }
    )

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Compare ``ctx.dataset`` (current) with ``ctx.reference``, sampling at most ``max_frames``
        frames of each, streamed per frame file; random splits are drawn from ``ctx.seed``.

        Metrics: features (tested, step features included), drifted_features, drifted_share,
        dataset_drift (any feature drifted: under no drift this happens with probability at most
        alpha), drifted_state_features, drifted_action_features, drifted_image_features,
        reference_frames, current_frames, reference_episodes, current_episodes and min_p_value (the
        smallest p-value the episode counts allow: above alpha / features, nothing can drift — too few
        episodes to tell). Table ``features``: feature, group, method, score (Holm-adjusted p-value),
        threshold (alpha), effect, min_effect, p_value, drifted. Artifact: drift_report.html.
        Raises TrustaiUserError without a reference, when the two datasets do not have the same
        features, or when either has no frames or no features.
        """
        assert isinstance(params, DriftParams)
        if ctx.reference is None:
            raise TrustaiUserError(
                "drift.features needs a reference dataset to compare with",
                fix="use `trustai drift --reference ROOT --current ROOT`, or `trustai monitor RUN_DIR`, "
                "which uses the run's training data as the reference",
            )
        reference = open_dataset_meta(resolve_dataset_root(ctx.reference))
        current = open_dataset_meta(resolve_dataset_root(ctx.dataset))
        spec = feature_spec(reference, params.images)
        check_compatible(spec, feature_spec(current, params.images), f"{reference.root} vs {current.root}")
        if not spec.names:
            raise TrustaiUserError(
                "the datasets have no float state/action vectors or cameras to compare",
                where=str(reference.root),
                fix="drift.features needs observation.* or action float features, or cameras with images",
            )
        ref_frame, cur_frame = dataset_features([reference, current], spec, params.max_frames, params.use_ray)
        if ref_frame.empty or cur_frame.empty:
            empty = reference.root if ref_frame.empty else current.root
            raise TrustaiUserError("dataset has no frames to compare", where=str(empty))
        ref_frame, cur_frame = with_steps(ref_frame, spec), with_steps(cur_frame, spec)

        tested = len(spec.names) + len(spec.step_names)
        episodes = [frame["episode_index"].nunique() for frame in (ref_frame, cur_frame)]
        permutations = max(params.permutations, math.ceil(4 * tested / params.alpha))
        splits = episode_splits(*episodes, permutations, np.random.default_rng(ctx.seed))
        rows = _feature_rows(ref_frame, cur_frame, spec, splits, params)

        drifted = [r for r in rows if r["drifted"]]
        names = [row["feature"] for row in rows]
        nearest = sorted(rows, key=lambda r: (not r["drifted"], r["score"], -r["effect"]))
        html = ctx.artifact_dir / REPORT_FILE
        write_report(
            episode_means(ref_frame, names),
            episode_means(cur_frame, names),
            names,
            [r["feature"] for r in nearest[: max(len(drifted), REPORT_PLOTS)]],
            params.alpha / tested,
            html,
        )

        metrics: dict[str, float | int | bool | None] = {
            "features": len(rows),
            "drifted_features": len(drifted),
            "drifted_share": len(drifted) / len(rows),
            "dataset_drift": bool(drifted),
            **{
                f"drifted_{group}_features": sum(r["group"] == group for r in drifted)
                for group in ("state", "action", "image")
            },
            "reference_frames": len(ref_frame),
            "current_frames": len(cur_frame),
            "reference_episodes": episodes[0],
            "current_episodes": episodes[1],
            "min_p_value": splits.min_p_value,
        }
        # Holm's first step multiplies the smallest p-value by the number of features: above alpha, no
        # feature could ever be flagged, so "no drift" would be a verdict without a measurement.
        unmeasurable = None
        if splits.min_p_value * len(rows) > params.alpha:
            unmeasurable = (
                f"too few episodes ({episodes[0]} vs {episodes[1]}) to detect drift in {len(rows)} features "
                f"at alpha {params.alpha:g}: the smallest possible p-value is {splits.min_p_value:.3g}"
            )
        return Measurement(
            metrics=metrics, tables={"features": rows}, artifacts=[html], inconclusive=unmeasurable
        )
