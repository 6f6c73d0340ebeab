"""Small, deterministic, real LeRobot v3 datasets for tests and demos, with optional planted faults.

The scene is a block pushed left or right. ``observation.state`` holds the block position
(block_x, block_y) followed by arm joints that follow it; ``action`` is the next state (what a
position-controlled arm is told to reach). Each camera shows the block as a square whose pixel
position follows block_x / block_y, plus sensor noise, so image attribution and frozen-camera
checks have something real to find.
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from trustai.canonical import digest
from trustai.datasets import data_files
from trustai.errors import TrustaiUserError

# The block moves this far (state units) over a full-length episode; the image maps [-1.2, 1.2].
_TRAVEL = 0.8
_EXTENT = 1.2
_NOISE_STD = 3.0  # camera noise in 0-255 levels: consecutive frames of a live camera never match exactly


@dataclass
class DatasetFaults:
    """Problems to plant in a synthetic dataset, so tests can check that audits find them.

    ``nan_in_state_frames``: (episode, frame) pairs whose first state value becomes NaN (the action,
    derived before planting, stays finite). ``frozen_camera_episode``: every camera of that episode
    repeats its first frame. ``short_episode``: that episode has a quarter of the frames (at least
    2). ``drop_frames``: (episode, frame) pairs, frame >= 1, where the recorder lost one frame just
    before ``frame``: that frame's and all later timestamps of the episode shift by 1/fps.
    ``face_frames``: (episode, frame) pairs whose first camera shows a real human face (the portrait
    of Grace Hopper that ships with matplotlib) filling the image height, instead of the scene.
    ``lighting_offset``: every camera image is brighter by this many 0-255 levels (a lighting change).
    """

    nan_in_state_frames: list[tuple[int, int]] = field(default_factory=list)
    frozen_camera_episode: int | None = None
    short_episode: int | None = None
    drop_frames: list[tuple[int, int]] = field(default_factory=list)
    face_frames: list[tuple[int, int]] = field(default_factory=list)
    lighting_offset: float = 0.0


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


def _trajectory(
    rng: np.random.Generator, length: int, frames_per_episode: int, direction: float, state_dim: int
) -> np.ndarray:
    """States of one episode, shape (length, state_dim), float32."""
    steps = np.arange(length)
    speed = _TRAVEL / max(frames_per_episode - 1, 1)
    x = rng.uniform(-0.4, 0.4) + direction * speed * steps
    y = rng.uniform(-0.3, 0.3) + np.cumsum(rng.normal(0.0, 0.01, length))
    columns = [x, y]
    for _ in range(2, state_dim):
        phase, gain = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6)
        columns.append(gain * x + 0.2 * np.sin(2 * np.pi * steps / max(frames_per_episode, 2) + phase))
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
    lighting: float = 0.0,
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
    image += rng.normal(0.0, _NOISE_STD, image.shape) + lighting
    return np.clip(image, 0, 255).astype(np.uint8)


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


def _check_faults(faults: DatasetFaults, lengths: list[int]) -> None:
    episodes = len(lengths)
    for name in ("frozen_camera_episode", "short_episode"):
        episode = getattr(faults, name)
        if episode is not None and not 0 <= episode < episodes:
            raise ValueError(f"{name}={episode} is outside episodes 0..{episodes - 1}")
    for name, first in (("nan_in_state_frames", 0), ("drop_frames", 1), ("face_frames", 0)):
        for episode, frame in getattr(faults, name):
            if not (0 <= episode < episodes and first <= frame < lengths[episode]):
                raise ValueError(f"{name} entry {(episode, frame)} is outside the dataset")


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


def _rewrite_frames(root: Path, hf_fingerprint: str, drops: list[tuple[int, int]], fps: int) -> None:
    """Make the frame files reproducible and plant timestamp gaps.

    LeRobot writes each episode through a Hugging Face ``datasets`` map whose cache fingerprint is
    random and lands in the parquet schema metadata, so two identical recordings differ in bytes;
    it is replaced by ``hf_fingerprint``. LeRobot 0.6.1's add_frame rejects a "timestamp" key and
    sets frame_index / fps itself, so a recording gap can only be planted here, after the fact.
    Episode statistics in meta/ keep the pre-shift timestamps, as they would if the recorder's clock
    had jumped.
    """
    for path in data_files(root):
        source = pq.ParquetFile(path)
        # Read every row group before rewriting: the writer truncates the file it reads from.
        groups = [source.read_row_group(i) for i in range(source.num_row_groups)]
        hf_meta = json.loads(source.schema_arrow.metadata[b"huggingface"])
        schema = source.schema_arrow.with_metadata(
            {b"huggingface": json.dumps({**hf_meta, "fingerprint": hf_fingerprint}).encode()}
        )
        ts_index = schema.get_field_index("timestamp")
        with pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=True) as writer:
            for group in groups:
                episode = group["episode_index"].to_numpy()
                frame = group["frame_index"].to_numpy()
                timestamps = group["timestamp"].to_numpy().copy()
                for ep, fr in drops:
                    timestamps[(episode == ep) & (frame >= fr)] += np.float32(1 / fps)
                column = pa.array(timestamps, type=schema.field(ts_index).type)
                group = group.set_column(ts_index, schema.field(ts_index), column)
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
    faults: DatasetFaults | None = None,
    episode_attributes: Mapping[str, Sequence[str]] | None = None,
    data_files_size_in_mb: int | None = None,
) -> Path:
    """Record a LeRobot v3 dataset at ``root`` (which must not exist yet) and return ``root``.

    Episode ``e`` carries ``tasks[e % len(tasks)]``; even task indices push the block left, odd
    ones right. The same arguments always produce byte-identical data/ and meta/ files. The result
    loads with ``LeRobotDataset(repo_id, root=root)`` and trains LeRobot policies such as ACT.
    Cameras are PNG images in the parquet files unless ``use_videos`` (which needs LeRobot's video
    encoder). ``episode_attributes`` maps a column name to one value per episode (``site``,
    ``operator``, ...), written as extra columns of meta/episodes. ``data_files_size_in_mb`` is
    LeRobot's own cap on frame files, to spread small datasets over several files.
    """
    root = Path(root)
    if root.exists():
        raise TrustaiUserError(
            "dataset folder already exists", where=str(root), fix="pass a path that does not exist yet"
        )
    if episodes < 1 or frames_per_episode < 2 or not tasks or state_dim < 1 or action_dim < 1:
        raise ValueError("need episodes >= 1, frames_per_episode >= 2, a task, state_dim and action_dim >= 1")
    faults = faults or DatasetFaults()
    lengths = [
        max(2, frames_per_episode // 4) if e == faults.short_episode else frames_per_episode
        for e in range(episodes)
    ]
    _check_faults(faults, lengths)
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
    )
    with _quiet_datasets():
        for episode, length in enumerate(lengths):
            task_index = episode % len(tasks)
            states = _trajectory(rng, length, frames_per_episode, 1.0 if task_index % 2 else -1.0, state_dim)
            actions = _actions(states, action_dim)
            observed = states.copy()
            for episode_nan, frame in faults.nan_in_state_frames:
                if episode_nan == episode:
                    observed[frame, 0] = np.nan
            first_images: list[np.ndarray] = []
            for frame in range(length):
                images = [
                    _render(rng, states[frame], c, image_size, faults.lighting_offset)
                    for c in range(len(cameras))
                ]
                if frame == 0:
                    first_images = images
                if episode == faults.frozen_camera_episode:
                    images = first_images
                if (episode, frame) in faults.face_frames:
                    images = [_face(image_size), *images[1:]]
                dataset.add_frame(
                    {
                        "observation.state": observed[frame],
                        "action": actions[frame],
                        **dict(zip(cameras, images, strict=True)),
                        "task": tasks[task_index],
                    }
                )
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
        "faults": asdict(faults),
        "data_files_size_in_mb": data_files_size_in_mb,
    }
    if episode_attributes:
        recipe["episode_attributes"] = episode_attributes
        _add_episode_columns(root, episode_attributes)
    _rewrite_frames(root, digest(recipe)[:16], faults.drop_frames, fps)
    return root


def _add_episode_columns(root: Path, columns: dict[str, list[str]]) -> None:
    """Append one string column per attribute to every meta/episodes file (values by episode_index)."""
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(path)
        index = table["episode_index"].to_pylist()
        for name, values in columns.items():
            table = table.append_column(name, pa.array([str(values[e]) for e in index], pa.string()))
        pq.write_table(table, path)


def tiny_act(root: Path, *, dim_model: int = 32) -> tuple[Any, Any, Any]:
    """A random-weights ACT for the LeRobot dataset at ``root`` and its pre/post-processors, normalised
    with the dataset's statistics: ResNet-18 without pretrained weights, one encoder and one decoder
    layer, no VAE, chunks of 5, feed-forward width ``2 * dim_model``; seeded, so every call builds the
    same weights. The small policy tests and benchmarks train and audit offline; returned in train mode.
    """
    from lerobot.configs import FeatureType
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.feature_utils import dataset_to_policy_features

    meta = LeRobotDatasetMetadata("trustai/synthetic", root=root)
    features = dataset_to_policy_features(meta.features)
    torch.manual_seed(0)
    config = ACTConfig(
        input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
        output_features={k: f for k, f in features.items() if f.type is FeatureType.ACTION},
        device="cpu",
        pretrained_backbone_weights=None,
        dim_model=dim_model,
        n_heads=2,
        dim_feedforward=2 * dim_model,
        n_encoder_layers=1,
        n_decoder_layers=1,
        use_vae=False,
        chunk_size=5,
        n_action_steps=5,
    )
    policy = ACTPolicy(config)
    return policy, *make_pre_post_processors(config, dataset_stats=meta.stats)
