"""Drift audits: has the data a robot sees moved away from the data its policy was trained on?

``drift.features`` compares low-dimensional per-frame features (state, action, camera image
statistics; see trustai.frame_features) of a current dataset against a reference dataset with
Evidently's ``DataDriftPreset``: one statistical test per feature, chosen by Evidently for the
column's size and type unless ``method`` names one.
"""

import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trustai.audit import Audit, AuditContext, Measurement, register
from trustai.datasets import open_dataset_meta, resolve_dataset_root
from trustai.errors import TrustaiUserError
from trustai.evidence import Stage
from trustai.frame_features import FeatureSpec, check_compatible, dataset_features, feature_spec

REPORT_FILE = "drift_report.html"


class DriftParams(BaseModel):
    """Parameters of ``drift.features``."""

    model_config = ConfigDict(extra="forbid")

    max_frames: int = Field(5000, ge=10, description="frames sampled evenly from each dataset")
    images: bool = Field(True, description="include per-camera image statistics")
    method: str | None = Field(
        None, description="Evidently stat test for every feature (default: its choice)"
    )
    threshold: float | None = Field(None, description="drift threshold of that test (default: Evidently's)")
    drift_share: float = Field(0.5, gt=0, le=1, description="share of drifted features that is dataset drift")
    use_ray: bool = Field(False, description="compute features per frame file as Ray tasks")


def _drift_rows(snapshot: Any, spec: FeatureSpec) -> list[dict[str, Any]]:
    """One row per feature from an Evidently snapshot: test method, threshold, score, drifted."""
    result = snapshot.dict()
    scores = {
        m["config"]["column"]: m
        for m in result["metrics"]
        if m["config"].get("type", "").endswith(":ValueDrift")
    }
    failed = {
        t["metric_config"]["params"]["column"]
        for t in result["tests"]
        if t["metric_config"]["params"].get("type", "").endswith(":ValueDrift") and t["status"] == "FAIL"
    }
    return [
        {
            "feature": name,
            "group": spec.group(name),
            "method": scores[name]["config"].get("method"),
            "threshold": scores[name]["config"].get("threshold"),
            "score": float(scores[name]["value"]),
            "drifted": name in failed,
        }
        for name in spec.names
    ]


@register
class FeatureDrift(Audit):
    """Per-feature drift of state, action and camera statistics between a reference and a current
    LeRobot dataset (Evidently DataDriftPreset), with Evidently's HTML report as an artifact."""

    name = "drift.features"
    version = "1"
    stages = frozenset({Stage.DATA, Stage.MONITOR})
    Params = DriftParams

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Compare ``ctx.dataset`` (current) with ``ctx.reference``, sampling at most ``max_frames``
        frames of each, streamed per frame file.

        Metrics: features, drifted_features, drifted_share, dataset_drift (drifted_share >=
        drift_share), drifted_state_features, drifted_action_features, drifted_image_features,
        reference_frames, current_frames. Table ``features``: feature, group, method, threshold,
        score, drifted. Artifact: drift_report.html. Raises TrustaiUserError without a reference or
        when the two datasets do not have the same features.
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
        ref_frame, cur_frame = dataset_features([reference, current], spec, params.max_frames, params.use_ray)
        if ref_frame.empty or cur_frame.empty:
            empty = reference.root if ref_frame.empty else current.root
            raise TrustaiUserError("dataset has no frames to compare", where=str(empty))

        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(numerical_columns=spec.names)
        report = Report(
            [
                DataDriftPreset(
                    method=params.method, threshold=params.threshold, drift_share=params.drift_share
                )
            ],
            include_tests=True,
        )
        with warnings.catch_warnings():
            # Constant features (an unused action dimension) make some tests divide by a zero spread;
            # Evidently then switches test, but numpy warns first.
            warnings.simplefilter("ignore", RuntimeWarning)
            snapshot = report.run(
                Dataset.from_pandas(cur_frame, data_definition=definition),
                Dataset.from_pandas(ref_frame, data_definition=definition),
            )
        rows = _drift_rows(snapshot, spec)
        html = ctx.artifact_dir / REPORT_FILE
        html.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html))

        drifted = [r for r in rows if r["drifted"]]
        share = len(drifted) / len(rows)
        metrics: dict[str, float | int | bool | None] = {
            "features": len(rows),
            "drifted_features": len(drifted),
            "drifted_share": share,
            "dataset_drift": share >= params.drift_share,
            **{
                f"drifted_{group}_features": sum(r["group"] == group for r in drifted)
                for group in ("state", "action", "image")
            },
            "reference_frames": len(ref_frame),
            "current_frames": len(cur_frame),
        }
        return Measurement(metrics=metrics, tables={"features": rows}, artifacts=[html])
