"""Read a LeRobot v3 dataset folder without loading it whole.

Everything here streams: parquet files are read row batch by row batch with pyarrow and files are
hashed in chunks, so a multi-gigabyte dataset costs memory proportional to one batch.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trustai.canonical import digest, file_sha256
from trustai.errors import TrustaiUserError

INFO_PATH = "meta/info.json"
# Folders whose bytes make up a dataset; LeRobot's images/ is only a staging area while recording.
CONTENT_DIRS = ("data", "meta", "videos")
_NOT_A_DATASET_FIX = (
    "point at the root folder of a LeRobot v3 dataset (the one holding meta/info.json and data/)"
)


@dataclass(frozen=True)
class DatasetInfo:
    """What ``meta/info.json`` says about a dataset, plus where it lives."""

    root: Path
    codebase_version: str
    fps: int
    total_episodes: int
    total_frames: int
    robot_type: str | None
    features: dict[str, dict[str, Any]]

    @property
    def image_keys(self) -> list[str]:
        """Camera features stored as images inside the parquet files."""
        return [key for key, ft in self.features.items() if ft.get("dtype") == "image"]

    @property
    def video_keys(self) -> list[str]:
        """Camera features stored as mp4 files under videos/."""
        return [key for key, ft in self.features.items() if ft.get("dtype") == "video"]


def open_dataset_meta(root: Path | str) -> DatasetInfo:
    """Read and check ``root/meta/info.json`` of a LeRobot v3 dataset.

    Raises TrustaiUserError naming the path when the folder or info.json is missing, info.json is not
    valid JSON, lacks fps/features, or declares a codebase version other than v3.x.
    """
    root = Path(root)
    path = root / INFO_PATH
    if not path.is_file():
        raise TrustaiUserError(
            "not a LeRobot dataset: meta/info.json is missing", where=str(root), fix=_NOT_A_DATASET_FIX
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise TrustaiUserError(
            f"meta/info.json is not valid JSON ({type(exc).__name__})",
            where=str(path),
            fix="restore info.json from the source",
        ) from exc
    if not isinstance(raw, dict):
        raise TrustaiUserError("meta/info.json is not a JSON object", where=str(path), fix=_NOT_A_DATASET_FIX)
    version = str(raw.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise TrustaiUserError(
            f"dataset codebase_version is {version or 'missing'!r}, trustai reads v3.x only",
            where=str(path),
            fix="convert it with lerobot's convert_dataset_v21_to_v30 script",
        )
    fps, features = raw.get("fps"), raw.get("features")
    if not isinstance(fps, int | float) or fps <= 0 or not isinstance(features, dict):
        raise TrustaiUserError(
            "meta/info.json needs a positive 'fps' and a 'features' object",
            where=str(path),
            fix="restore info.json from the source",
        )
    totals = {key: raw.get(key, 0) for key in ("total_episodes", "total_frames")}
    for key, value in totals.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TrustaiUserError(
                f"meta/info.json: {key} must be a whole number, not {value!r}",
                where=str(path),
                fix="restore info.json from the source",
            )
    return DatasetInfo(
        root=root,
        codebase_version=version,
        fps=int(fps),
        total_episodes=totals["total_episodes"],
        total_frames=totals["total_frames"],
        robot_type=raw.get("robot_type"),
        features=features,
    )


def resolve_dataset_root(dataset: Any) -> Path:
    """Return the folder of ``dataset``: a path, or anything with a ``.root`` (LeRobotDataset, its meta).

    Raises TrustaiUserError when ``dataset`` is None or neither.
    """
    if isinstance(dataset, str | Path):
        return Path(dataset)
    root = getattr(dataset, "root", None)
    if root is None:
        raise TrustaiUserError(
            f"expected a dataset folder or a LeRobotDataset, got {type(dataset).__name__}",
            fix="pass the dataset (--dataset PATH) to this stage",
        )
    return Path(root)


def _content_files(root: Path) -> list[Path]:
    return sorted(
        p for d in CONTENT_DIRS if (root / d).is_dir() for p in (root / d).rglob("*") if p.is_file()
    )


def dataset_fingerprint(root: Path | str) -> str:
    """Return a sha256 that changes when any byte of the dataset's data, metadata or videos changes.

    It covers the canonical JSON of meta/info.json (so reformatting that file does not change the
    fingerprint) and the relative path and sha256 of every other file under data/, meta/ and
    videos/, in sorted order. It does not depend on where the dataset folder is.
    """
    root = Path(root)
    open_dataset_meta(root)
    info = json.loads((root / INFO_PATH).read_text(encoding="utf-8"))
    files = [
        [p.relative_to(root).as_posix(), file_sha256(p)]
        for p in _content_files(root)
        if p.relative_to(root).as_posix() != INFO_PATH
    ]
    return digest({"info": info, "files": files})


def data_files(root: Path | str) -> list[Path]:
    """Return the dataset's frame parquet files (data/chunk-*/file-*.parquet) in frame order.

    Raises TrustaiUserError when there are none.
    """
    root = Path(root)
    # Zero-padded chunk/file numbers make lexicographic order the order LeRobot wrote the frames in.
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise TrustaiUserError(
            "dataset has no frame files under data/", where=str(root), fix=_NOT_A_DATASET_FIX
        )
    return files


def iter_frame_batches(
    root: Path | str, columns: list[str], batch_size: int = 1024
) -> Iterator[pa.RecordBatch]:
    """Yield the dataset's frames as record batches of at most ``batch_size`` rows, in frame order.

    Only ``columns`` are read. Raises TrustaiUserError when a data file lacks one of them.
    """
    for path in data_files(root):
        yield from file_batches(path, columns, batch_size)


def file_batches(path: Path, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Yield record batches of ``columns`` from one frame file, at most ``batch_size`` rows each.

    Raises TrustaiUserError when the file lacks one of the columns.
    """
    parquet = pq.ParquetFile(path)
    missing = [c for c in columns if c not in parquet.schema_arrow.names]
    if missing:
        raise TrustaiUserError(
            f"frame file lacks columns {missing} (it has {parquet.schema_arrow.names})",
            where=str(path),
            fix="check the dataset against its meta/info.json features",
        )
    yield from parquet.iter_batches(batch_size=batch_size, columns=columns)


def episode_lengths(root: Path | str) -> dict[int, int]:
    """Return {episode_index: length} as recorded in meta/episodes/ (not counted from the frames)."""
    lengths: dict[int, int] = {}
    for path in sorted((Path(root) / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(path, columns=["episode_index", "length"])
        lengths.update(zip(table["episode_index"].to_pylist(), table["length"].to_pylist(), strict=True))
    return lengths


def task_names(root: Path | str) -> dict[int, str]:
    """Return {task_index: task text} from meta/tasks.parquet, or {} when the file is absent."""
    path = Path(root) / "meta" / "tasks.parquet"
    if not path.is_file():
        return {}
    # LeRobot writes tasks from a pandas frame indexed by the task text, so "task" is a column here.
    table = pq.read_table(path, columns=["task_index", "task"])
    return dict(zip(table["task_index"].to_pylist(), table["task"].to_pylist(), strict=True))
