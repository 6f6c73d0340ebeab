"""Data audits: the quality of a LeRobot dataset before training on it and while monitoring it.

``data.quality`` streams the frame parquet files twice (numbers first, then a budgeted sample of
camera images), so its memory use does not grow with the dataset. ``data.datasheet`` writes a
Datasheet for Datasets of it (see trustai.audits.data.datasheet).
"""

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from trustai.audits.data.datasheet import build_datasheet, load_answers

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, get_audit, register
from trustai.core.evidence import Stage
from trustai.lerobot.datasets import (
    DatasetInfo,
    dataset_fingerprint,
    episode_lengths,
    iter_frame_batches,
    open_dataset_meta,
    resolve_dataset_root,
    task_names,
)
from trustai.lerobot.frames import iter_frames

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


@dataclass
class _Episode:
    """What the numeric pass learned about one episode."""

    length: int = 0
    nonfinite_state: int = 0
    nonfinite_action: int = 0
    gaps: int = 0
    max_gap_s: float = 0.0
    last_timestamp: float | None = None
    task_frames: Counter[int] = field(default_factory=Counter)
    frozen_cameras: list[str] = field(default_factory=list)


def _runs(episode_index: np.ndarray) -> Iterator[tuple[int, slice]]:
    """Yield (episode, rows) for each run of equal episode indices in a batch."""
    starts = [0, *(np.flatnonzero(np.diff(episode_index)) + 1).tolist(), len(episode_index)]
    for start, stop in pairwise(starts):
        yield int(episode_index[start]), slice(start, stop)


def _nonfinite_per_row(column: pa.Array) -> np.ndarray:
    """Count NaN, inf and null values in each row of a float or list-of-float column."""
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        parents = pc.list_parent_indices(column).to_numpy()
        return np.bincount(parents[~np.isfinite(values)], minlength=len(column))
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    return (~np.isfinite(values)).astype(np.int64)


def _float_keys(info: DatasetInfo, prefix: str) -> list[str]:
    return [
        key
        for key, ft in info.features.items()
        if (key == prefix or key.startswith(prefix + ".")) and str(ft.get("dtype", "")).startswith("float")
    ]


def _scan_numbers(info: DatasetInfo, params: DataQualityParams) -> dict[int, _Episode]:
    """Pass 1: lengths, non-finite values, timestamp gaps and task frames per episode."""
    state_keys, action_keys = _float_keys(info, "observation"), _float_keys(info, "action")
    period = 1.0 / info.fps
    episodes: dict[int, _Episode] = {}
    columns = ["episode_index", "timestamp", "task_index", *state_keys, *action_keys]
    for batch in iter_frame_batches(info.root, columns):
        episode_index = batch["episode_index"].to_numpy()
        timestamps = batch["timestamp"].to_numpy(zero_copy_only=False).astype(np.float64)
        task_index = batch["task_index"].to_numpy()
        bad_state = sum((_nonfinite_per_row(batch[k]) for k in state_keys), np.zeros(len(batch), np.int64))
        bad_action = sum((_nonfinite_per_row(batch[k]) for k in action_keys), np.zeros(len(batch), np.int64))
        for index, rows in _runs(episode_index):
            ep = episodes.setdefault(index, _Episode())
            ts = timestamps[rows]
            previous = [] if ep.last_timestamp is None else [ep.last_timestamp]
            dt = np.diff(np.concatenate([previous, ts]))
            # Written as "not within tolerance" so NaN timestamps count as gaps too.
            ep.gaps += int(np.count_nonzero(~(np.abs(dt - period) <= params.gap_tolerance * period)))
            finite_dt = dt[np.isfinite(dt)]
            if finite_dt.size:
                ep.max_gap_s = max(ep.max_gap_s, float(finite_dt.max()))
            ep.last_timestamp = float(ts[-1])
            ep.length += len(ts)
            ep.nonfinite_state += int(bad_state[rows].sum())
            ep.nonfinite_action += int(bad_action[rows].sum())
            ep.task_frames.update(task_index[rows].tolist())
    return episodes


def _pair_plan(
    lengths: dict[int, int], cameras: list[str], max_frames: int
) -> dict[tuple[int, str], set[int]]:
    """Choose which frames of each (episode, camera) to decode: consecutive pairs spread evenly
    over the episode, at most ``max_frames`` images in total. When there are more (episode, camera)
    units than pairs in the budget, an evenly spaced subset of units gets one pair each."""
    units = [(e, c) for e in sorted(lengths) for c in cameras if lengths[e] >= 2]
    pairs = max_frames // 2
    if not units or pairs == 0:
        return {}
    if pairs < len(units):
        units = [units[i] for i in sorted(set(np.linspace(0, len(units) - 1, pairs).round().astype(int)))]
    per_unit = pairs // len(units)
    plan: dict[tuple[int, str], set[int]] = {}
    for episode, camera in units:
        length = lengths[episode]
        if per_unit >= length - 1:
            plan[episode, camera] = set(range(length))
        else:
            # Interior points only: robots often idle at an episode's start and end, where a live
            # camera on a still scene is the easiest to mistake for a frozen one.
            starts = np.linspace(0, length - 2, per_unit + 2)[1:-1].round().astype(int)
            plan[episode, camera] = {int(s) for s in starts} | {int(s) + 1 for s in starts}
    return plan


def _same(a: np.ndarray, b: np.ndarray, delta: float) -> bool:
    """True when two decoded images have one shape and differ by at most ``delta`` on average."""
    return a.shape == b.shape and float(np.abs(a.astype(np.int16) - b).mean()) <= delta


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
    plan = _pair_plan(lengths, info.image_keys + info.video_keys, params.max_frames_for_images)
    identical: Counter[tuple[int, str]] = Counter()
    checked: Counter[tuple[int, str]] = Counter()
    scan = _FrozenScan()
    for camera in info.image_keys + info.video_keys:
        wanted = {episode: frames for (episode, c), frames in plan.items() if c == camera}
        previous: tuple[int, int, np.ndarray] | None = None
        for frame in iter_frames(info, wanted, [camera]):
            image = frame.images[camera]
            scan.decoded += 1
            if previous is not None and previous[:2] == (frame.episode, frame.frame - 1):
                checked[frame.episode, camera] += 1
                identical[frame.episode, camera] += _same(previous[2], image, params.frozen_pixel_delta)
            previous = (frame.episode, frame.frame, image)
    for (episode, camera), pairs in sorted(checked.items()):
        if identical[episode, camera] / pairs >= params.frozen_threshold:
            scan.frozen.setdefault(episode, []).append(camera)
    scan.episodes = len({episode for episode, _ in checked})
    scan.unchecked = [c for c in info.image_keys + info.video_keys if not any(k[1] == c for k in checked)]
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


def _task_rows(episodes: dict[int, _Episode], names: dict[int, str], total: int) -> list[dict[str, Any]]:
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
        episodes = _scan_numbers(info, params)
        lengths = {index: ep.length for index, ep in episodes.items()}
        scan = _scan_frozen(info, lengths, params)
        for index, cameras in scan.frozen.items():
            episodes[index].frozen_cameras = cameras

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
                "frozen_cameras": episodes[i].frozen_cameras,
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
        for name in params.audits:
            audit = get_audit(name)
            measured[name] = audit().measure(ctx, audit.Params()).metrics
        sheet = build_datasheet(
            info,
            fingerprint=ctx.inputs.dataset_fingerprint or dataset_fingerprint(info.root),
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
