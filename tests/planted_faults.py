"""Synthetic LeRobot datasets with planted problems, so tests can check that audits find them.

Most faults are planted while the dataset is recorded, through ``make_synthetic_dataset``'s
``edit_frame``; a recording gap is planted afterwards, in the frame files, because LeRobot sets every
timestamp itself from the frame index.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trustai.lerobot.datasets import data_files, open_dataset_meta
from trustai.lerobot.synthetic import FrameEdit, make_synthetic_dataset


@dataclass(frozen=True)
class Faults:
    """Problems to plant; (episode, frame) pairs count the frames as generated.

    ``nan_in_state_frames``: the first state value of these frames is NaN (the action stays finite).
    ``frozen_camera_episode``: every camera of that episode repeats its first frame.
    ``short_episode``: (episode, length): that episode keeps only its first ``length`` frames.
    ``drop_frames``: the recorder lost one frame just before each of these frames (frame >= 1): its
    and all later timestamps of the episode shift by 1/fps; meta/ keeps the unshifted statistics, as
    it would if the recorder's clock had jumped.
    ``face_frames``: the first camera of these frames shows a real human face (the portrait of Grace
    Hopper that ships with matplotlib) filling the image height, instead of the scene.
    ``lighting_offset``: every camera image is brighter by this many 0-255 levels (a lighting change).
    """

    nan_in_state_frames: list[tuple[int, int]] = field(default_factory=list)
    frozen_camera_episode: int | None = None
    short_episode: tuple[int, int] | None = None
    drop_frames: list[tuple[int, int]] = field(default_factory=list)
    face_frames: list[tuple[int, int]] = field(default_factory=list)
    lighting_offset: float = 0.0


def make_faulty_dataset(root: Path, faults: Faults, **options: Any) -> Path:
    """``make_synthetic_dataset(root, **options)`` with ``faults`` planted; returns ``root``."""
    root = make_synthetic_dataset(root, edit_frame=_planter(faults), **options)
    if faults.drop_frames:
        _shift_timestamps(root, faults.drop_frames)
    return root


def _planter(faults: Faults) -> FrameEdit:
    first_images: dict[str, np.ndarray] = {}

    def plant(episode: int, frame: int, values: dict[str, Any]) -> dict[str, Any] | None:
        if faults.short_episode is not None:
            short, length = faults.short_episode
            if episode == short and frame >= length:
                return None
        cameras = [key for key in values if key.startswith("observation.images.")]
        if (episode, frame) in faults.nan_in_state_frames:
            values["observation.state"][0] = np.nan
        if faults.lighting_offset:
            for camera in cameras:
                brighter = values[camera] + np.float32(faults.lighting_offset)
                values[camera] = np.clip(brighter, 0, 255).astype(np.uint8)
        if episode == faults.frozen_camera_episode:
            if frame == 0:
                first_images.update({camera: values[camera] for camera in cameras})
            values.update(first_images)
        if (episode, frame) in faults.face_frames:
            values[cameras[0]] = _face(values[cameras[0]].shape[:2])
        return values

    return plant


def _face(image_size: tuple[int, int]) -> np.ndarray:
    """Grace Hopper's face (matplotlib's sample portrait), as tall as the image, centred on a grey frame."""
    from matplotlib import cbook
    from PIL import Image

    height, width = image_size
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as portrait:
        head = portrait.convert("RGB").crop((110, 60, 420, 420))  # the head with some margin
    face_width = min(width, round(height * head.width / head.height))
    face = np.asarray(head.resize((face_width, height), Image.Resampling.LANCZOS))
    image = np.full((height, width, 3), 128, np.uint8)
    left = (width - face_width) // 2
    image[:, left : left + face_width] = face
    return image


def _shift_timestamps(root: Path, drops: list[tuple[int, int]]) -> None:
    step = np.float32(1 / open_dataset_meta(root).fps)
    for path in data_files(root):
        table = pq.ParquetFile(path).read()
        episode = table["episode_index"].to_numpy()
        frame = table["frame_index"].to_numpy()
        timestamps = table["timestamp"].to_numpy().copy()
        for drop_episode, drop_frame in drops:
            timestamps[(episode == drop_episode) & (frame >= drop_frame)] += step
        column = table.schema.get_field_index("timestamp")
        table = table.set_column(column, table.field(column), pa.array(timestamps, table.field(column).type))
        pq.write_table(table, path)
