"""Data audits: the quality of a LeRobot dataset before training on it and while monitoring it.

``data.quality`` streams the frame parquet files twice (numbers first, then a budgeted sample of
camera images), so its memory use does not grow with the dataset; each pass is a map over the frame
files and an exact merge (trustai.audits.data.quality_scan), so with ``use_ray`` the files are
scanned as Ray tasks with the same result. ``data.datasheet`` writes a Datasheet for Datasets of it
(see trustai.audits.data.datasheet).
"""

import json
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from trustai.audits.data.datasheet import build_datasheet, load_answers
from trustai.audits.data.quality_scan import (
    EpisodeNumbers,
    frozen_of_file,
    merge_frozen,
    merge_numbers,
    numbers_of_file,
    pair_plan,
)

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, get_audit, register
from trustai.core.evidence import Stage
from trustai.lerobot.datasets import (
    DatasetInfo,
    data_files,
    episode_lengths,
    open_dataset_meta,
    resolve_dataset_root,
    task_names,
)
from trustai.runtime import ray_session
from trustai.runtime.file_map import map_files

# Scale factors that make MAD / mean absolute deviation estimate the standard deviation of a normal.
_MAD_SCALE = 0.6745
_MEAN_AD_SCALE = 1.253314


class DataQualityParams(BaseModel):
    """Parameters of ``data.quality``."""

    model_config = ConfigDict(extra="forbid")

    max_frames_for_images: int = Field(2000, ge=0, description="camera images decoded at most, in total")
    frozen_pixel_delta: float = Field(
        0.5, ge=0, description="mean |difference| (0-255 levels) under which two frames count as identical"
    )
    frozen_threshold: float = Field(
        0.9, gt=0, le=1, description="share of checked consecutive frame pairs that must be identical"
    )
    gap_tolerance: float = Field(
        0.5, ge=0, description="allowed |dt - 1/fps| between consecutive frames, as a fraction of 1/fps"
    )
    length_outlier_z: float = Field(3.0, gt=0, description="robust z-score beyond which a length is odd")
    use_ray: bool = Field(False, description="scan each frame file as a Ray task (same result)")


def _scan_numbers(info: DatasetInfo, params: DataQualityParams) -> dict[int, EpisodeNumbers]:
    """Pass 1: lengths, non-finite values, timestamp gaps and task frames per episode."""
    scan = partial(numbers_of_file, info=info, gap_tolerance=params.gap_tolerance)
    parts = map_files(scan, data_files(info.root), use_ray=params.use_ray)
    return merge_numbers(parts, fps=info.fps, gap_tolerance=params.gap_tolerance)


@dataclass
class _FrozenScan:
    """What pass 2 found: frozen cameras per episode, images decoded, episodes with a compared pair,
    and the cameras of which no pair of frames could be compared."""

    frozen: dict[int, list[str]] = field(default_factory=dict)
    decoded: int = 0
    episodes: int = 0
    unchecked: list[str] = field(default_factory=list)


def _scan_frozen(info: DatasetInfo, lengths: dict[int, int], params: DataQualityParams) -> _FrozenScan:
    """Pass 2: decode the planned frames of each camera (PNG cells or mp4 files) and compare the
    consecutive pairs; one camera at a time, so memory holds one image per camera."""
    cameras = info.image_keys + info.video_keys
    plan = pair_plan(lengths, cameras, params.max_frames_for_images)
    scan = _FrozenScan()
    if not plan:
        scan.unchecked = cameras
        return scan
    delta = params.frozen_pixel_delta
    compare = partial(frozen_of_file, info=info, plan=plan, delta=delta)
    merged = merge_frozen(map_files(compare, data_files(info.root), use_ray=params.use_ray), delta)
    checked = {
        (episode, camera): (pairs, count)
        for camera, pairs in merged.items()
        for episode, count in pairs.checked.items()
    }
    for (episode, camera), (pairs, count) in sorted(checked.items(), key=lambda item: item[0]):
        if pairs.identical[episode] / count >= params.frozen_threshold:
            scan.frozen.setdefault(episode, []).append(camera)
    scan.decoded = sum(pairs.decoded for pairs in merged.values())
    scan.episodes = len({episode for episode, _ in checked})
    scan.unchecked = [c for c in cameras if not any(k[1] == c for k in checked)]
    return scan


def _robust_z(values: np.ndarray) -> np.ndarray:
    """Modified z-scores (median / MAD); falls back to the mean absolute deviation when the MAD is 0,
    and returns zeros when every value is the same."""
    deviation = values - np.median(values)
    mad = np.median(np.abs(deviation))
    if mad > 0:
        return _MAD_SCALE * deviation / mad
    mean_ad = np.mean(np.abs(deviation))
    if mean_ad > 0:
        return deviation / (_MEAN_AD_SCALE * mean_ad)
    return np.zeros_like(values, dtype=np.float64)


def _task_rows(
    episodes: dict[int, EpisodeNumbers], names: dict[int, str], total: int
) -> list[dict[str, Any]]:
    """One row per task known to meta/tasks.parquet or seen in the frames: frames, episodes, share."""
    frames: Counter[int] = Counter()
    episode_count: Counter[int] = Counter()
    for ep in episodes.values():
        frames.update(ep.task_frames)
        episode_count.update(ep.task_frames.keys())
    return [
        {
            "task_index": t,
            "task": names.get(t, ""),
            "frames": frames[t],
            "episodes": episode_count[t],
            "share": frames[t] / total if total else 0.0,
        }
        for t in sorted(set(names) | set(frames))
    ]


@register
class DataQuality(Audit):
    """Integrity of a LeRobot dataset: non-finite values, timestamp gaps, frozen cameras, odd episode
    lengths, task coverage, and agreement between meta/episodes and the frames."""

    name = "data.quality"
    version = "1"
    stages = frozenset({Stage.DATA, Stage.MONITOR})
    Params = DataQualityParams
    metrics = declare(
        {
            "frames": Metric("count", "neutral", "frames in the dataset's frame files"),
            "episodes": Metric("count", "neutral", "episodes in the dataset's frame files"),
            "nonfinite_state_values": Metric("count", "lower_is_better", "NaN/inf/null observation.* floats"),
            "nonfinite_action_values": Metric("count", "lower_is_better", "NaN/inf/null action floats"),
            "timestamp_gaps": Metric(
                "count",
                "lower_is_better",
                "consecutive frames whose dt is off 1/fps by more than gap_tolerance/fps",
            ),
            "max_timestamp_gap_s": Metric("s", "lower_is_better", "largest dt between consecutive frames"),
            "images_checked": Metric("count", "higher_is_better", "camera images decoded (PNG or video)"),
            "image_episodes_checked": Metric(
                "count", "higher_is_better", "episodes with a consecutive frame pair compared"
            ),
            "cameras_unchecked": Metric(
                "count",
                "lower_is_better",
                "cameras of which no consecutive frame pair was decoded and compared",
            ),
            "frozen_camera_episodes": Metric(
                "count", "lower_is_better", "episodes with a camera whose consecutive frames are identical"
            ),
            "episode_length_outliers": Metric(
                "count",
                "lower_is_better",
                "episodes whose length has a robust z-score beyond length_outlier_z",
            ),
            "min_episode_length": Metric("frames", "neutral", "shortest episode"),
            "max_episode_length": Metric("frames", "neutral", "longest episode"),
            "median_episode_length": Metric("frames", "neutral", "median episode length"),
            "episode_meta_mismatches": Metric(
                "count", "lower_is_better", "episodes whose meta/episodes length differs from their frames"
            ),
            "tasks": Metric("count", "neutral", "tasks with frames"),
            "min_task_share": Metric("fraction", "higher_is_better", "share of frames of the rarest task"),
        }
    )

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Stream ``ctx.dataset`` (a LeRobotDataset or a dataset folder) and measure its quality.

        The whole folder is audited, also when a LeRobotDataset selects only some episodes. Metrics:
        ``DataQuality.metrics``; ``frozen_camera_episodes`` is inconclusive unless a consecutive frame
        pair of every camera (PNG or video) was decoded and compared. Tables: ``episodes``, ``tasks``.
        """
        assert isinstance(params, DataQualityParams)
        info = open_dataset_meta(resolve_dataset_root(ctx.dataset))
        with ray_session.session() if params.use_ray else nullcontext():  # one Ray for both passes
            episodes = _scan_numbers(info, params)
            lengths = {index: ep.length for index, ep in episodes.items()}
            scan = _scan_frozen(info, lengths, params)

        order = sorted(episodes)
        length_array = np.array([lengths[i] for i in order], dtype=np.float64)
        z = _robust_z(length_array) if order else length_array
        recorded = episode_lengths(info.root)
        names = task_names(info.root)
        total = int(length_array.sum())
        task_rows = _task_rows(episodes, names, total)
        episode_rows = [
            {
                "episode_index": i,
                "length": lengths[i],
                "length_z": round(float(zi), 4),
                "task": names.get(episodes[i].task_frames.most_common(1)[0][0], ""),
                "nonfinite_state": episodes[i].nonfinite_state,
                "nonfinite_action": episodes[i].nonfinite_action,
                "timestamp_gaps": episodes[i].gaps,
                "max_timestamp_gap_s": round(episodes[i].max_gap_s, 6),
                "frozen_cameras": scan.frozen.get(i, []),
                "meta_length": recorded.get(i),
            }
            for i, zi in zip(order, z, strict=True)
        ]
        metrics: dict[str, float | int | bool | None] = {
            "frames": total,
            "episodes": len(order),
            "nonfinite_state_values": sum(ep.nonfinite_state for ep in episodes.values()),
            "nonfinite_action_values": sum(ep.nonfinite_action for ep in episodes.values()),
            "timestamp_gaps": sum(ep.gaps for ep in episodes.values()),
            "max_timestamp_gap_s": round(max((ep.max_gap_s for ep in episodes.values()), default=0.0), 6),
            "images_checked": scan.decoded,
            "image_episodes_checked": scan.episodes,
            "cameras_unchecked": len(scan.unchecked),
            "frozen_camera_episodes": len(scan.frozen),
            "episode_length_outliers": int(np.count_nonzero(np.abs(z) > params.length_outlier_z)),
            "min_episode_length": int(length_array.min()) if order else 0,
            "max_episode_length": int(length_array.max()) if order else 0,
            "median_episode_length": float(np.median(length_array)) if order else 0.0,
            "episode_meta_mismatches": sum(recorded.get(i) != lengths[i] for i in order)
            + len(set(recorded) - set(order)),
            "tasks": sum(1 for row in task_rows if row["frames"] > 0),
            "min_task_share": min((row["share"] for row in task_rows), default=0.0),
        }
        unchecked = (
            f"no pair of consecutive frames of camera(s) {', '.join(scan.unchecked)} was decoded and "
            "compared, so a frozen camera there would go unseen"
            if scan.unchecked
            else None
        )
        return Measurement(
            metrics=metrics,
            tables={"episodes": episode_rows, "tasks": task_rows},
            inconclusive=unchecked,
            inconclusive_metrics=["frozen_camera_episodes"] if unchecked else None,
        )


class DatasheetParams(BaseModel):
    """Parameters of ``data.datasheet``."""

    model_config = ConfigDict(extra="forbid")

    audits: list[Literal["data.quality", "privacy.pii"]] = Field(
        default_factory=lambda: ["data.quality", "privacy.pii"],
        description="data audits run (default params) whose metrics answer datasheet questions",
    )
    provider_answers: str | None = Field(None, description="YAML/JSON file: question id -> provider's answer")
    use_ray: bool = Field(False, description="the data audits scan each frame file as a Ray task")


@register
class DataDatasheet(Audit):
    """A Datasheet for Datasets of a LeRobot dataset, auto-filled where the data can answer and
    marked for the provider to complete elsewhere (see trustai.audits.data.datasheet)."""

    name = "data.datasheet"
    version = "1"
    stages = frozenset({Stage.DATA})
    Params = DatasheetParams
    metrics = declare(
        {
            "questions": Metric("count", "neutral", "datasheet questions"),
            "auto_filled": Metric("count", "neutral", "questions answered from the dataset and data audits"),
            "provider_answered": Metric(
                "count", "neutral", "questions answered by the provider's answers file"
            ),
            "to_complete": Metric("count", "lower_is_better", "questions still without an answer"),
            "episodes": Metric("count", "neutral", "episodes in meta/info.json"),
            "frames": Metric("count", "neutral", "frames in meta/info.json"),
        }
    )

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Write ``datasheet.md`` and ``datasheet.json`` for ``ctx.dataset`` into the artifact folder
        (metrics: ``DataDatasheet.metrics``)."""
        assert isinstance(params, DatasheetParams)
        info = open_dataset_meta(resolve_dataset_root(ctx.dataset))
        measured = {}
        with ray_session.session() if params.use_ray else nullcontext():  # one Ray for every audit
            for name in params.audits:
                audit = get_audit(name)
                measured[name] = audit().measure(ctx, audit.Params(use_ray=params.use_ray)).metrics
        sheet = build_datasheet(
            info,
            fingerprint=ctx.inputs.dataset_fingerprint,
            manifest=ctx.manifest,
            audit_metrics=measured,
            answers=load_answers(params.provider_answers),
        )
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        markdown, structured = ctx.artifact_dir / "datasheet.md", ctx.artifact_dir / "datasheet.json"
        markdown.write_text(sheet.to_markdown(), encoding="utf-8")
        structured.write_text(json.dumps(sheet.to_json(), indent=2, default=str), encoding="utf-8")
        metrics: dict[str, float | int | bool | None] = {
            **sheet.counts(),
            "episodes": info.total_episodes,
            "frames": info.total_frames,
        }
        return Measurement(metrics=metrics, artifacts=[markdown, structured])
