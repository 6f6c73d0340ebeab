"""Small, deterministic, real LeRobot v3 datasets for demos and tests.

The scene is a block pushed left or right. ``observation.state`` holds the block position
(block_x, block_y) followed by arm joints that follow it; ``action`` is the next state (what a
position-controlled arm is told to reach). Each camera shows the block as a square whose pixel
position follows block_x / block_y, plus sensor noise, so image attribution and frozen-camera
checks have something real to find. A caller's ``edit_frame`` can change or leave out frames before
they are recorded (sensor faults, occlusions, truncated episodes).
"""

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from trustai.core.canonical import digest
from trustai.errors import TrustaiUserError
from trustai.lerobot.datasets import data_files

# The block moves this far (state units) over a full-length episode; the image maps [-1.2, 1.2].
_TRAVEL = 0.8
_EXTENT = 1.2
_NOISE_STD = 3.0  # camera noise in 0-255 levels: consecutive frames of a live camera never match exactly


# ``edit_frame(episode, frame, values)``: the frame to record instead of ``values``, or None to leave it out.
FrameEdit = Callable[[int, int, dict[str, Any]], dict[str, Any] | None]


def _state_names(state_dim: int) -> list[str]:
    return ["block_x", "block_y", *(f"joint_{i}" for i in range(2, state_dim))][:state_dim]


def _features(
    cameras: Sequence[str], image_size: tuple[int, int], state_names: list[str], action_dim: int, video: bool
) -> dict[str, dict]:
    action_names = [f"{name}.target" for name in state_names[:action_dim]]
    action_names += [f"unused_{i}" for i in range(len(action_names), action_dim)]
    features: dict[str, dict] = {
        "observation.state": {"dtype": "float32", "shape": (len(state_names),), "names": state_names},
        "action": {"dtype": "float32", "shape": (action_dim,), "names": action_names},
    }
    for camera in cameras:
        features[camera] = {
            "dtype": "video" if video else "image",
            "shape": (*image_size, 3),
            "names": ["height", "width", "channels"],
            # The flag LeRobot's own hw_to_dataset_features records for RGB cameras.
            "info": {"is_depth_map": False},
        }
    return features


def _trajectory(rng: np.random.Generator, length: int, direction: float, state_dim: int) -> np.ndarray:
    """States of one episode, shape (length, state_dim), float32."""
    steps = np.arange(length)
    speed = _TRAVEL / (length - 1)
    x = rng.uniform(-0.4, 0.4) + direction * speed * steps
    y = rng.uniform(-0.3, 0.3) + np.cumsum(rng.normal(0.0, 0.01, length))
    columns = [x, y]
    for _ in range(2, state_dim):
        phase, gain = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6)
        columns.append(gain * x + 0.2 * np.sin(2 * np.pi * steps / length + phase))
    states = np.stack(columns[:state_dim], axis=1)
    return (states + rng.normal(0.0, 0.005, states.shape)).astype(np.float32)


def _actions(states: np.ndarray, action_dim: int) -> np.ndarray:
    """Next state as the action; the last frame extrapolates one step. Extra dims are zero."""
    nxt = np.concatenate([states[1:], 2 * states[-1:] - states[-2:-1]])
    actions = np.zeros((len(states), action_dim), np.float32)
    width = min(action_dim, states.shape[1])
    actions[:, :width] = nxt[:, :width]
    return actions


def _render(
    rng: np.random.Generator,
    state: np.ndarray,
    camera_index: int,
    image_size: tuple[int, int],
) -> np.ndarray:
    """One HWC uint8 camera image: shaded background, a square at the block position, noise."""
    height, width = image_size
    side = max(2, min(height, width) // 4)
    # Camera 1, 3, ... looks from the other side, so cameras are not copies of each other.
    x = float(state[0]) * (-1 if camera_index % 2 else 1)
    y = float(state[1]) if state.shape[0] > 1 else 0.0
    col = int(np.clip((x + _EXTENT) / (2 * _EXTENT), 0, 1) * (width - side))
    row = int(np.clip((y + _EXTENT) / (2 * _EXTENT), 0, 1) * (height - side))
    base = np.array([60 + (40 * camera_index) % 120, 90, 120], np.float32)
    image = np.broadcast_to(base + np.linspace(0, 40, height)[:, None, None], (height, width, 3)).copy()
    image[row : row + side, col : col + side] = (220, 60, 40)
    image += rng.normal(0.0, _NOISE_STD, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    # save_episode runs a datasets.map per episode, each of which prints a progress bar.
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _pin_fingerprint(root: Path, hf_fingerprint: str) -> None:
    """Make the frame files reproducible: LeRobot writes each episode through a Hugging Face
    ``datasets`` map whose cache fingerprint is random and lands in the parquet schema metadata, so
    two identical recordings differ in bytes; it is replaced by ``hf_fingerprint``."""
    for path in data_files(root):
        source = pq.ParquetFile(path)
        # Read every row group before rewriting: the writer truncates the file it reads from.
        groups = [source.read_row_group(i) for i in range(source.num_row_groups)]
        hf_meta = json.loads(source.schema_arrow.metadata[b"huggingface"])
        schema = source.schema_arrow.with_metadata(
            {b"huggingface": json.dumps({**hf_meta, "fingerprint": hf_fingerprint}).encode()}
        )
        with pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=True) as writer:
            for group in groups:
                writer.write_table(group.replace_schema_metadata(schema.metadata))


def make_synthetic_dataset(
    root: Path,
    *,
    repo_id: str = "trustai/synthetic",
    episodes: int = 4,
    frames_per_episode: int = 20,
    fps: int = 10,
    tasks: Sequence[str] = ("push the block left", "push the block right"),
    cameras: Sequence[str] = ("observation.images.top",),
    image_size: tuple[int, int] = (48, 64),
    state_dim: int = 6,
    action_dim: int = 6,
    seed: int = 0,
    use_videos: bool = False,
    edit_frame: FrameEdit | None = None,
    episode_attributes: Mapping[str, Sequence[str]] | None = None,
    data_files_size_in_mb: int | None = None,
) -> Path:
    """Record a LeRobot v3 dataset at ``root`` (which must not exist yet) and return ``root``.

    Episode ``e`` carries ``tasks[e % len(tasks)]``; even task indices push the block left, odd
    ones right. The same arguments (and a deterministic ``edit_frame``) always produce byte-identical
    data/ and meta/ files. The result loads with ``LeRobotDataset(repo_id, root=root)`` and trains
    LeRobot policies such as ACT. Cameras are PNG images in the parquet files unless ``use_videos``
    (which needs LeRobot's video encoder). ``episode_attributes`` maps a column name to one value per
    episode (``site``, ``operator``, ...), written as extra columns of meta/episodes.
    ``data_files_size_in_mb`` is LeRobot's own cap on frame files, to spread small datasets over
    several files.

    ``edit_frame(episode, frame, values)`` sees every generated frame before it is recorded: ``values``
    is what goes to LeRobot's ``add_frame`` (``observation.state`` and ``action`` as float32 arrays,
    each camera as an HWC uint8 image, ``task``), the edit's to change. It returns the frame to record,
    or None to leave the frame out (the episode's later frames move up; each episode keeps at least one).
    The generator draws every frame whatever the edit does, so editing one frame changes no other.
    """
    root = Path(root)
    if root.exists():
        raise TrustaiUserError(
            "dataset folder already exists", where=str(root), fix="pass a path that does not exist yet"
        )
    if episodes < 1 or frames_per_episode < 2 or not tasks or state_dim < 1 or action_dim < 1:
        raise ValueError("need episodes >= 1, frames_per_episode >= 2, a task, state_dim and action_dim >= 1")
    episode_attributes = {name: list(values) for name, values in (episode_attributes or {}).items()}
    if any(len(values) != episodes for values in episode_attributes.values()):
        raise ValueError(f"each episode attribute needs exactly {episodes} values, one per episode")

    rng = np.random.default_rng(seed)
    names = _state_names(state_dim)
    dataset = LeRobotDataset.create(
        repo_id,
        fps=fps,
        features=_features(cameras, image_size, names, action_dim, use_videos),
        root=root,
        robot_type="trustai_synthetic_pusher",
        use_videos=use_videos,
        data_files_size_in_mb=data_files_size_in_mb,
        video_backend="pyav",  # the decoder trustai reads with (frames.py); never probes torchcodec
    )
    with _quiet_datasets():
        for episode in range(episodes):
            task_index = episode % len(tasks)
            states = _trajectory(rng, frames_per_episode, 1.0 if task_index % 2 else -1.0, state_dim)
            actions = _actions(states, action_dim)
            recorded = 0
            for frame in range(frames_per_episode):
                images = {
                    camera: _render(rng, states[frame], c, image_size) for c, camera in enumerate(cameras)
                }
                values: dict[str, Any] | None = {
                    "observation.state": states[frame],
                    "action": actions[frame],
                    **images,
                    "task": tasks[task_index],
                }
                if edit_frame is not None:
                    values = edit_frame(episode, frame, values)
                if values is not None:
                    dataset.add_frame(values)
                    recorded += 1
            if not recorded:
                raise ValueError(f"edit_frame left out every frame of episode {episode}")
            dataset.save_episode()
        dataset.finalize()
    recipe = {
        "repo_id": repo_id,
        "episodes": episodes,
        "frames_per_episode": frames_per_episode,
        "fps": fps,
        "tasks": list(tasks),
        "cameras": list(cameras),
        "image_size": list(image_size),
        "state_dim": state_dim,
        "action_dim": action_dim,
        "seed": seed,
        "data_files_size_in_mb": data_files_size_in_mb,
    }
    if episode_attributes:
        recipe["episode_attributes"] = episode_attributes
        _add_episode_columns(root, episode_attributes)
    _pin_fingerprint(root, digest(recipe)[:16])
    return root


def _add_episode_columns(root: Path, columns: dict[str, list[str]]) -> None:
    """Append one string column per attribute to every meta/episodes file (values by episode_index)."""
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(path)
        index = table["episode_index"].to_pylist()
        for name, values in columns.items():
            table = table.append_column(name, pa.array([str(values[e]) for e in index], pa.string()))
        pq.write_table(table, path)
