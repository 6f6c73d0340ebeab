"""``data.quality``'s two passes over a dataset, each split into a per-file map and an exact merge.

Pass 1 (numbers) reads every frame file's episode, timestamp, task, state and action columns; pass 2
(frozen cameras) decodes a planned sample of consecutive frame pairs per camera. Each pass maps one
frame file to a partial result (``numbers_of_file``, ``frozen_of_file``) and merges the partials in
file order (``merge_numbers``, ``merge_frozen``), settling at the file boundaries exactly what a
single stream over all files would have: the timestamp step from one file's last frame of an episode
to the next file's first, and the frame pair that straddles two files. The single-process path and
the Ray path (``trustai.runtime.file_map``) run the same map and merge, so they agree by construction.
"""

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trustai.lerobot.datasets import DatasetInfo, file_batches
from trustai.lerobot.frames import Plan, iter_frames


@dataclass
class EpisodeNumbers:
    """What the numeric pass learned about one episode (in one file, or merged over files)."""

    length: int = 0
    nonfinite_state: int = 0
    nonfinite_action: int = 0
    gaps: int = 0
    max_gap_s: float = 0.0
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    task_frames: Counter[int] = field(default_factory=Counter)

    def add_steps(self, timestamps: np.ndarray, period: float, tolerance: float) -> None:
        """Count the timestamp steps from this episode's last frame through ``timestamps`` (its next
        frames, in order) and remember where the episode now ends."""
        if self.first_timestamp is None:
            self.first_timestamp = float(timestamps[0])
        previous = [] if self.last_timestamp is None else [self.last_timestamp]
        dt = np.diff(np.concatenate([previous, timestamps]))
        # Written as "not within tolerance" so NaN timestamps count as gaps too.
        self.gaps += int(np.count_nonzero(~(np.abs(dt - period) <= tolerance * period)))
        finite_dt = dt[np.isfinite(dt)]
        if finite_dt.size:
            self.max_gap_s = max(self.max_gap_s, float(finite_dt.max()))
        self.last_timestamp = float(timestamps[-1])

    def extend(self, later: "EpisodeNumbers", period: float, tolerance: float) -> None:
        """Append what a later file holds of the same episode, counting the step between the two."""
        assert later.first_timestamp is not None and later.last_timestamp is not None
        self.add_steps(np.array([later.first_timestamp]), period, tolerance)
        self.last_timestamp = later.last_timestamp
        self.gaps += later.gaps
        self.max_gap_s = max(self.max_gap_s, later.max_gap_s)
        self.length += later.length
        self.nonfinite_state += later.nonfinite_state
        self.nonfinite_action += later.nonfinite_action
        self.task_frames.update(later.task_frames)


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


def float_keys(info: DatasetInfo, prefix: str) -> list[str]:
    """Float features named ``prefix`` or ``prefix.*`` (``observation`` → every float observation)."""
    return [
        key
        for key, ft in info.features.items()
        if (key == prefix or key.startswith(prefix + ".")) and str(ft.get("dtype", "")).startswith("float")
    ]


def numbers_of_file(path: Path, *, info: DatasetInfo, gap_tolerance: float) -> dict[int, EpisodeNumbers]:
    """Pass 1 over one frame file: per episode, its frames here, non-finite state and action values,
    timestamp gaps between its frames here, and frames per task."""
    state_keys, action_keys = float_keys(info, "observation"), float_keys(info, "action")
    period = 1.0 / info.fps
    episodes: dict[int, EpisodeNumbers] = {}
    columns = ["episode_index", "timestamp", "task_index", *state_keys, *action_keys]
    for batch in file_batches(path, columns, 1024):
        episode_index = batch["episode_index"].to_numpy()
        timestamps = batch["timestamp"].to_numpy(zero_copy_only=False).astype(np.float64)
        task_index = batch["task_index"].to_numpy()
        bad_state = sum((_nonfinite_per_row(batch[k]) for k in state_keys), np.zeros(len(batch), np.int64))
        bad_action = sum((_nonfinite_per_row(batch[k]) for k in action_keys), np.zeros(len(batch), np.int64))
        for index, rows in _runs(episode_index):
            ep = episodes.setdefault(index, EpisodeNumbers())
            ep.add_steps(timestamps[rows], period, gap_tolerance)
            ep.length += rows.stop - rows.start
            ep.nonfinite_state += int(bad_state[rows].sum())
            ep.nonfinite_action += int(bad_action[rows].sum())
            ep.task_frames.update(task_index[rows].tolist())
    return episodes


def merge_numbers(
    parts: Sequence[dict[int, EpisodeNumbers]], *, fps: int, gap_tolerance: float
) -> dict[int, EpisodeNumbers]:
    """Pass 1's partials of every frame file, in file order, merged into one result per episode."""
    merged: dict[int, EpisodeNumbers] = {}
    for part in parts:
        for index, ep in part.items():
            if index in merged:
                merged[index].extend(ep, 1.0 / fps, gap_tolerance)
            else:
                merged[index] = ep
    return merged


def pair_plan(
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


def same_image(a: np.ndarray, b: np.ndarray, delta: float) -> bool:
    """True when two decoded images have one shape and differ by at most ``delta`` on average."""
    return a.shape == b.shape and float(np.abs(a.astype(np.int16) - b).mean()) <= delta


Decoded = tuple[int, int, np.ndarray]  # (episode, frame, image)


@dataclass
class CameraPairs:
    """Pass 2 on one camera: images decoded, compared and identical consecutive pairs per episode,
    and the first and last decoded frames (to settle the pair that straddles two files)."""

    decoded: int = 0
    checked: Counter[int] = field(default_factory=Counter)
    identical: Counter[int] = field(default_factory=Counter)
    first: Decoded | None = None
    last: Decoded | None = None

    def add(self, frame: Decoded, delta: float) -> None:
        """Take the next decoded frame, comparing it with the one before when they are consecutive."""
        self.decoded += 1
        if self.first is None:
            self.first = frame
        if self.last is not None and self.last[:2] == (frame[0], frame[1] - 1):
            self.checked[frame[0]] += 1
            self.identical[frame[0]] += same_image(self.last[2], frame[2], delta)
        self.last = frame


def frozen_of_file(
    path: Path, *, info: DatasetInfo, plan: dict[tuple[int, str], set[int]], delta: float
) -> dict[str, CameraPairs]:
    """Pass 2 over one frame file: decode each camera's planned frames stored here (PNG cells or mp4
    files), one camera at a time, and compare the consecutive pairs."""
    found: dict[str, CameraPairs] = {}
    for camera in info.image_keys + info.video_keys:
        wanted: Plan = {episode: frames for (episode, c), frames in plan.items() if c == camera}
        pairs = found[camera] = CameraPairs()
        for frame in iter_frames(info, wanted, [camera], files=[path]):
            pairs.add((frame.episode, frame.frame, frame.images[camera]), delta)
    return found


def merge_frozen(parts: Sequence[dict[str, CameraPairs]], delta: float) -> dict[str, CameraPairs]:
    """Pass 2's partials of every frame file, in file order, merged per camera (boundary pairs
    compared); the merged ``first``/``last`` are dropped, as nothing follows."""
    merged: dict[str, CameraPairs] = {}
    for part in parts:
        for camera, pairs in part.items():
            into = merged.setdefault(camera, CameraPairs())
            if pairs.first is None:
                continue
            decoded = into.decoded
            into.add(pairs.first, delta)  # compares the pair across the boundary
            into.decoded = decoded + pairs.decoded
            into.checked.update(pairs.checked)
            into.identical.update(pairs.identical)
            into.last = pairs.last
    for pairs in merged.values():
        pairs.first = pairs.last = None
    return merged
