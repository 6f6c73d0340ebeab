"""Low-dimensional per-frame features of a LeRobot dataset, for drift detection: every dimension of
the float observation vectors (``observation.state``, ...) and of ``action``, and per RGB camera the
mean brightness (Rec. 601 luma), contrast (luma standard deviation) and per-channel means, 0-255.
Each vector dimension also has a step feature, ``<name>:step``: its absolute change since the
previous frame of the episode, so jitter (a noisier controller or sensor) shows even where the values
themselves keep their range.

Features are computed per frame file on a sample of pairs of consecutive frames spread evenly over
the dataset, so the work splits over files (and over Ray workers, through trustai.runtime.file_map)
and memory stays at one record batch.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from trustai.errors import TrustaiUserError
from trustai.lerobot.datasets import DatasetInfo, data_files, episode_lengths
from trustai.lerobot.frames import Plan, even_sample, iter_frames, rgb_cameras
from trustai.runtime.file_map import map_files

IMAGE_STATS = ("brightness", "contrast", "mean_r", "mean_g", "mean_b")
STEP_SUFFIX = ":step"
INDEX_COLUMNS = ("episode_index", "frame_index")
_LUMA = np.array([[0.299, 0.587, 0.114]], dtype=np.float32)  # Rec. 601


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns become features: float vectors with their dimension names, and RGB cameras."""

    vectors: dict[str, list[str]]
    cameras: list[str]

    @property
    def names(self) -> list[str]:
        """Per-frame feature names, ``<column>/<dimension>`` and ``<camera>/<statistic>``, in a stable
        order."""
        return self.vector_names + [f"{camera}/{stat}" for camera in self.cameras for stat in IMAGE_STATS]

    @property
    def vector_names(self) -> list[str]:
        """Names of the vector dimensions, ``<column>/<dimension>``."""
        return [f"{column}/{dim}" for column, dims in self.vectors.items() for dim in dims]

    @property
    def step_names(self) -> list[str]:
        """Names of the step features, ``<column>/<dimension>:step``, one per vector dimension."""
        return [name + STEP_SUFFIX for name in self.vector_names]

    def group(self, name: str) -> str:
        """``action``, ``image`` or ``state`` (any other observation vector) for a feature name (step
        features included)."""
        column = name.removesuffix(STEP_SUFFIX).rsplit("/", 1)[0]
        if column in self.cameras:
            return "image"
        return "action" if column == "action" else "state"


def _dimension_names(feature: dict) -> list[str]:
    size = int(np.prod(feature.get("shape") or [1]))
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:  # LeRobot's older {"motors": [...]} layout
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == size and all(isinstance(n, str) for n in names):
        return names
    return [str(i) for i in range(size)]


def feature_spec(info: DatasetInfo, images: bool = True) -> FeatureSpec:
    """The drift features of ``info``: float ``observation.*`` vectors and ``action``, and (with
    ``images``) every camera that is not a depth map."""
    vectors = {
        key: _dimension_names(feature)
        for key, feature in info.features.items()
        if (key == "action" or key.startswith("observation."))
        and str(feature.get("dtype", "")).startswith("float")
    }
    return FeatureSpec(vectors, rgb_cameras(info) if images else [])


def check_compatible(reference: FeatureSpec, current: FeatureSpec, where: str) -> None:
    """Raise TrustaiUserError naming every feature one dataset has and the other lacks."""
    only_ref = [n for n in reference.names if n not in set(current.names)]
    only_cur = [n for n in current.names if n not in set(reference.names)]
    if only_ref or only_cur:
        parts = [f"only in the reference: {only_ref[:8]}"] if only_ref else []
        parts += [f"only in the current data: {only_cur[:8]}"] if only_cur else []
        raise TrustaiUserError(
            "reference and current datasets do not have the same features (" + "; ".join(parts) + ")",
            where=where,
            fix="compare recordings of the same robot setup: same cameras and state/action layout",
        )


def _image_stats(image: np.ndarray) -> tuple[float, ...]:
    """Brightness, contrast and per-channel means of an H×W×3 uint8 RGB image (``IMAGE_STATS``)."""
    # OpenCV's vectorised kernels, accumulating in float64: an order of magnitude faster than numpy
    # here, which would otherwise cost more than decoding the PNG.
    luma = cv2.transform(np.ascontiguousarray(image, dtype=np.float32), _LUMA)
    mean, std = cv2.meanStdDev(luma)
    red, green, blue, _ = cv2.mean(np.ascontiguousarray(image))
    return float(mean[0, 0]), float(std[0, 0]), red, green, blue


def paired_sample(lengths: Mapping[int, int], max_frames: int) -> dict[int, set[int]]:
    """Choose at most ``max_frames`` frames as pairs of consecutive frames spread evenly over the
    episodes in ``lengths`` (every frame when the budget allows), so steps between frames can be
    measured however large the dataset is. When the budget is smaller than the dataset, episodes of
    a single frame (which have no pair) are left out."""
    if sum(lengths.values()) <= max_frames:
        return {e: set(range(n)) for e, n in lengths.items() if n > 0}
    plan = even_sample({e: n - 1 for e, n in lengths.items()}, max_frames // 2)
    return {e: firsts | {f + 1 for f in firsts} for e, firsts in plan.items()}


def file_features(path: Path, *, info: DatasetInfo, spec: FeatureSpec, plan: Plan) -> pd.DataFrame:
    """Feature rows (columns ``episode_index``, ``frame_index`` and ``spec.names``) of the planned
    frames stored in one frame file."""
    index: list[tuple[int, int]] = []
    rows: list[np.ndarray] = []
    for frame in iter_frames(info, plan, spec.cameras, list(spec.vectors), files=[path]):
        index.append((frame.episode, frame.frame))
        vectors = [np.asarray(frame.values[column], dtype=np.float64).reshape(-1) for column in spec.vectors]
        stats = [_image_stats(frame.images[camera]) for camera in spec.cameras]
        rows.append(np.concatenate([*vectors, np.asarray(stats, dtype=np.float64).reshape(-1)]))
    # One array per file, not a DataFrame built from Python rows: pandas' per-row conversion cost
    # more than the image statistics.
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(spec.names))
    frame = pd.DataFrame(values, columns=spec.names)
    ids = np.array(index, dtype=np.int64).reshape(len(index), 2)
    frame.insert(0, "frame_index", ids[:, 1])
    frame.insert(0, "episode_index", ids[:, 0])
    return frame


def _file_job(
    job: tuple[int, Path], datasets: Sequence[tuple[DatasetInfo, Plan]], spec: FeatureSpec
) -> pd.DataFrame:
    index, path = job
    info, plan = datasets[index]
    return file_features(path, info=info, spec=spec, plan=plan)


def dataset_features(
    infos: Sequence[DatasetInfo], spec: FeatureSpec, max_frames: int, use_ray: bool = False
) -> list[pd.DataFrame]:
    """Feature rows of each dataset (see ``file_features``) in episode and frame order, at most
    ``max_frames`` frames chosen by ``paired_sample``.

    The work is one task per frame file, of all datasets at once (one Ray fan-out with ``use_ray``);
    the datasets and their sampling plans travel once, shared by every task, not once per file.
    """
    datasets = [(info, paired_sample(episode_lengths(info.root), max_frames)) for info in infos]
    jobs = [(index, path) for index, info in enumerate(infos) for path in data_files(info.root)]
    parts = map_files(partial(_file_job, datasets=datasets, spec=spec), jobs, use_ray=use_ray)
    return [
        pd.concat([part for (owner, _), part in zip(jobs, parts, strict=True) if owner == index])
        .sort_values(list(INDEX_COLUMNS), kind="stable")
        .reset_index(drop=True)
        for index in range(len(infos))
    ]


def with_steps(frames: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """``frames`` (rows of ``dataset_features``) with the step features added: each vector
    dimension's absolute change since the previous frame of the same episode, NaN where that frame
    was not sampled."""
    follows = (frames["episode_index"].diff() == 0) & (frames["frame_index"].diff() == 1)
    steps = frames[spec.vector_names].diff().abs().where(follows, axis=0)
    steps.columns = spec.step_names
    return pd.concat([frames, steps], axis=1)
