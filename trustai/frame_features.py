"""Low-dimensional per-frame features of a LeRobot dataset, for drift detection: every dimension of
the float observation vectors (``observation.state``, ...) and of ``action``, and per RGB camera the
mean brightness (Rec. 601 luma), contrast (luma standard deviation) and per-channel means, 0-255.

Features are computed per frame file on an even sample of frames, so the work splits over files
(and over Ray workers, through trustai.filemap) and memory stays at one record batch.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from trustai.datasets import DatasetInfo, data_files, episode_lengths
from trustai.errors import TrustaiUserError
from trustai.filemap import map_files
from trustai.frames import Plan, even_sample, iter_frames, rgb_cameras

IMAGE_STATS = ("brightness", "contrast", "mean_r", "mean_g", "mean_b")
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns become features: float vectors with their dimension names, and RGB cameras."""

    vectors: dict[str, list[str]]
    cameras: list[str]

    @property
    def names(self) -> list[str]:
        """Feature names, ``<column>/<dimension>`` and ``<camera>/<statistic>``, in a stable order."""
        return [f"{column}/{dim}" for column, dims in self.vectors.items() for dim in dims] + [
            f"{camera}/{stat}" for camera in self.cameras for stat in IMAGE_STATS
        ]

    def group(self, name: str) -> str:
        """``action``, ``image`` or ``state`` (any other observation vector) for a feature name."""
        column = name.rsplit("/", 1)[0]
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


def _image_stats(image: np.ndarray) -> list[float]:
    pixels = image.reshape(-1, 3).astype(np.float64)
    luma = pixels @ _LUMA
    return [float(luma.mean()), float(luma.std()), *map(float, pixels.mean(axis=0))]


def file_features(path: Path, *, info: DatasetInfo, spec: FeatureSpec, plan: Plan) -> pd.DataFrame:
    """Feature rows (columns ``spec.names``) of the planned frames stored in one frame file."""
    rows = []
    for frame in iter_frames(info, plan, spec.cameras, list(spec.vectors), files=[path]):
        values: list[float] = []
        for column in spec.vectors:
            values += np.asarray(frame.values[column], dtype=np.float64).reshape(-1).tolist()
        for camera in spec.cameras:
            values += _image_stats(frame.images[camera])
        rows.append(values)
    return pd.DataFrame(rows, columns=spec.names, dtype=np.float64)


def _file_job(job: tuple[DatasetInfo, Plan, Path], spec: FeatureSpec) -> pd.DataFrame:
    info, plan, path = job
    return file_features(path, info=info, spec=spec, plan=plan)


def dataset_features(
    infos: Sequence[DatasetInfo], spec: FeatureSpec, max_frames: int, use_ray: bool = False
) -> list[pd.DataFrame]:
    """Feature rows of each dataset, at most ``max_frames`` frames spread evenly over it.

    The work is one task per frame file, of all datasets at once (one Ray fan-out with ``use_ray``).
    """
    jobs = [
        (index, (info, even_sample(episode_lengths(info.root), max_frames), path))
        for index, info in enumerate(infos)
        for path in data_files(info.root)
    ]
    parts = map_files(partial(_file_job, spec=spec), [job for _, job in jobs], use_ray=use_ray)
    return [
        pd.concat(
            [part for (owner, _), part in zip(jobs, parts, strict=True) if owner == index], ignore_index=True
        )
        for index in range(len(infos))
    ]
