"""Sampled frames of a LeRobot v3 dataset, decoded one batch at a time.

Audits that look at camera images (faces, image statistics, policy inputs) decode only a planned
sample of frames: ``even_sample`` spreads a budget over the dataset, ``iter_frames`` streams the
parquet files and yields just those frames, with PNG cameras decoded from the parquet cells and
video cameras decoded from their mp4 files by LeRobot's own decoder. Memory stays at one record
batch plus a few decoded frames.
"""

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from trustai.errors import TrustaiUserError
from trustai.lerobot.datasets import INFO_PATH, DatasetInfo, data_files, file_batches

Plan = Mapping[int, set[int]]  # episode_index -> frame indices to decode

# Rows per record batch when camera cells (PNG bytes) are read: those rows are large.
_IMAGE_BATCH_ROWS = 64
# PyAV decodes every frame between the first and last timestamp asked for, so a call never spans
# more than this many frame periods.
_VIDEO_WINDOW_FRAMES = 16


@dataclass(frozen=True)
class Frame:
    """One decoded frame: where it is, its camera images (H×W×3 uint8) and the other columns asked for."""

    episode: int
    frame: int
    images: dict[str, np.ndarray]
    values: dict[str, Any]


def even_sample(lengths: Mapping[int, int], max_frames: int) -> dict[int, set[int]]:
    """Choose at most ``max_frames`` frames spread evenly over the episodes in ``lengths``.

    Frames are evenly spaced over the episodes laid end to end (in episode order), so every episode
    gets a share proportional to its length; all frames are chosen when the budget allows.
    """
    order = sorted(e for e in lengths if lengths[e] > 0)
    total = sum(lengths[e] for e in order)
    if total == 0 or max_frames <= 0:
        return {}
    picks = np.unique(np.linspace(0, total - 1, min(max_frames, total)).round().astype(np.int64))
    starts = np.cumsum([0, *(lengths[e] for e in order)])
    owner = np.searchsorted(starts, picks, side="right") - 1
    plan: dict[int, set[int]] = {}
    for position, slot in zip(picks.tolist(), owner.tolist(), strict=True):
        plan.setdefault(order[slot], set()).add(position - int(starts[slot]))
    return plan


def rgb_cameras(info: DatasetInfo) -> list[str]:
    """The dataset's colour cameras, image and video alike (depth maps left out)."""

    def is_depth(feature: dict) -> bool:
        extra = feature.get("info") or {}
        return bool(extra.get("is_depth_map") or extra.get("video.is_depth_map"))

    return [key for key in (*info.image_keys, *info.video_keys) if not is_depth(info.features[key])]


def decode_png(cell: dict | None) -> np.ndarray | None:
    """Decode a LeRobot image cell (``{"bytes": ..., "path": ...}``) to H×W×3 uint8; None when empty."""
    if cell is None or cell.get("bytes") is None:
        return None
    with Image.open(io.BytesIO(cell["bytes"])) as image:
        return np.asarray(image.convert("RGB"))


def _video_index(info: DatasetInfo, cameras: Sequence[str]) -> dict[tuple[int, str], tuple[Path, float]]:
    """(episode, video camera) -> (mp4 file, the episode's first timestamp in that file)."""
    if not cameras:
        return {}
    template = json.loads((info.root / INFO_PATH).read_text(encoding="utf-8")).get("video_path")
    if not template:
        raise TrustaiUserError(
            "meta/info.json declares video cameras but no 'video_path'",
            where=str(info.root / INFO_PATH),
            fix="restore info.json from the source",
        )
    index: dict[tuple[int, str], tuple[Path, float]] = {}
    for path in sorted((info.root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        columns = ["episode_index"] + [
            f"videos/{c}/{field}"
            for c in cameras
            for field in ("chunk_index", "file_index", "from_timestamp")
        ]
        table = pq.read_table(path, columns=columns).to_pydict()
        for row, episode in enumerate(table["episode_index"]):
            for camera in cameras:
                file = template.format(
                    video_key=camera,
                    chunk_index=table[f"videos/{camera}/chunk_index"][row],
                    file_index=table[f"videos/{camera}/file_index"][row],
                )
                index[episode, camera] = (
                    info.root / file,
                    float(table[f"videos/{camera}/from_timestamp"][row]),
                )
    return index


def _decode_video(path: Path, timestamps: list[float], fps: int) -> list[np.ndarray]:
    """Frames of ``path`` nearest to ``timestamps`` (sorted), as H×W×3 uint8, through LeRobot's decoder."""
    from lerobot.datasets.video_utils import decode_video_frames

    frames: list[np.ndarray] = []
    window: list[float] = []
    for ts in [*timestamps, None]:
        if window and (ts is None or ts - window[0] > _VIDEO_WINDOW_FRAMES / fps):
            decoded = decode_video_frames(
                path, window, tolerance_s=0.5 / fps, backend="pyav", return_uint8=True
            )
            frames.extend(np.ascontiguousarray(f.permute(1, 2, 0).numpy()) for f in decoded)
            window = []
        if ts is not None:
            window.append(ts)
    return frames


def _selected_rows(episodes: np.ndarray, frames: np.ndarray, plan: Plan) -> np.ndarray:
    """Row positions of a batch whose (episode, frame) is in ``plan``."""
    keep = np.zeros(len(episodes), bool)
    for episode in np.unique(episodes).tolist():
        wanted = plan.get(episode)
        if wanted:
            rows = episodes == episode
            keep[rows] = np.isin(frames[rows], np.fromiter(wanted, np.int64, len(wanted)))
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class _Reader:
    """How to turn the selected rows of a record batch into Frames."""

    info: DatasetInfo
    image: list[str]  # cameras stored as PNG cells in the parquet files
    video: list[str]  # cameras stored as mp4 files
    videos: dict[tuple[int, str], tuple[Path, float]]
    columns: Sequence[str]

    def frames(self, table: dict[str, list], rows: list[int], episode: int) -> Iterator[Frame]:
        """Frames of ``rows`` (all of one episode) of a batch converted with ``to_pydict``."""
        decoded: dict[str, list[np.ndarray]] = {}
        for camera in self.video:
            path, start = self.videos[episode, camera]
            decoded[camera] = _decode_video(
                path, [start + table["timestamp"][r] for r in rows], self.info.fps
            )
        for k, r in enumerate(rows):
            images = {camera: decode_png(table[camera][r]) for camera in self.image}
            if any(v is None for v in images.values()):
                continue
            images.update({camera: decoded[camera][k] for camera in self.video})
            values = {c: np.asarray(v) if isinstance(v := table[c][r], list) else v for c in self.columns}
            yield Frame(episode, int(table["frame_index"][r]), images, values)


def iter_frames(
    info: DatasetInfo,
    plan: Plan,
    cameras: Sequence[str] = (),
    columns: Sequence[str] = (),
    files: Sequence[Path] | None = None,
) -> Iterator[Frame]:
    """Yield the frames named in ``plan``, in dataset order, with ``cameras`` decoded and ``columns`` read.

    ``cameras`` may mix image and video features; ``files`` limits the scan to some of the
    dataset's frame files (default: all). List columns come back as 1-D numpy arrays, scalars as
    Python values. Frames whose image cell is empty are skipped.
    """
    video = [c for c in cameras if c in info.video_keys]
    image = [c for c in cameras if c not in video]
    reader = _Reader(info, image, video, _video_index(info, video), columns)
    wanted = ["episode_index", "frame_index", *(["timestamp"] if video else []), *columns, *image]
    rows = _IMAGE_BATCH_ROWS if image else 1024
    for path in files if files is not None else data_files(info.root):
        for batch in file_batches(path, list(dict.fromkeys(wanted)), rows):
            picked = _selected_rows(batch["episode_index"].to_numpy(), batch["frame_index"].to_numpy(), plan)
            if not len(picked):
                continue
            table = batch.take(pa.array(picked)).to_pydict()
            for episode, group in groupby(range(len(picked)), key=lambda i: int(table["episode_index"][i])):
                yield from reader.frames(table, list(group), episode)
