"""Read a LeRobot v3 dataset folder without loading it whole.

Everything here streams: parquet files are read row batch by row batch with pyarrow and files are
hashed in chunks, so a multi-gigabyte dataset costs memory proportional to one batch.
"""

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trustai.core.canonical import digest, file_sha256
from trustai.errors import TrustaiUserError

INFO_PATH = "meta/info.json"
# Folders whose bytes make up a dataset; LeRobot's images/ is only a staging area while recording.
CONTENT_DIRS = ("data", "meta", "videos")
_NOT_A_DATASET_FIX = (
    "point at the root folder of a LeRobot v3 dataset (the one holding meta/info.json and data/)"
)
_RESTORE_FIX = "restore info.json from the source"

# Limits on what a dataset declares, checked before any work that scales with it: a hostile or broken
# meta/info.json must get a clear refusal, not a MemoryError. Each is far above any real recording.
# info.json is read whole; LeRobot writes a few kilobytes (tens with long lists of dimension names).
MAX_INFO_BYTES = 16 << 20
# Audits loop over features; a robot has tens (joints, cameras, sensors), not thousands.
MAX_FEATURES = 4096
# Axes of one feature; LeRobot's largest are 3 (height, width, channels).
MAX_SHAPE_RANK = 8
# Values per frame of a camera feature (image, video): an 8K RGBA frame (7680x4320x4) fits.
MAX_CAMERA_VALUES = 1 << 27
# Values per frame of any other feature (state, action, ...): audits keep a name, a column and a test
# per value (drift.features), so this bounds their memory; real state and action vectors hold tens.
MAX_VECTOR_VALUES = 1 << 16
# Episodes: per-episode tables (lengths, attributes) are held in memory; Open X-Embodiment, the
# largest open collection, has about a million.
MAX_EPISODES = 1 << 22
# Frames: 4.3 billion is over four years of recording at 30 fps.
MAX_FRAMES = 1 << 32
# Files and folders under data/, meta/ and videos/, listed and hashed one by one: LeRobot v3 packs many
# episodes per file (data files of ~100 MB, videos of ~500 MB), so even 10 TB is some 100,000 files.
MAX_DATASET_FILES = 1 << 18
_CAMERA_DTYPES = ("image", "video")


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
    valid JSON, lacks fps/features, or declares a codebase version other than v3.x; and naming the
    feature or count and the limit when info.json or the folder exceeds one of the ``MAX_*`` limits
    (feature shapes, episode and frame counts, number of files).
    """
    root = Path(root)
    path = root / INFO_PATH
    if not path.is_file():
        raise TrustaiUserError(
            "not a LeRobot dataset: meta/info.json is missing", where=str(root), fix=_NOT_A_DATASET_FIX
        )
    if path.stat().st_size > MAX_INFO_BYTES:
        raise TrustaiUserError(
            f"larger than {MAX_INFO_BYTES} bytes (refused, not read)",
            where=str(path),
            fix=_RESTORE_FIX,
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise TrustaiUserError(
            f"meta/info.json is not valid JSON ({type(exc).__name__})", where=str(path), fix=_RESTORE_FIX
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
    if not isinstance(fps, int | float) or not 0 < fps < math.inf or not isinstance(features, dict):
        raise TrustaiUserError(
            "meta/info.json needs a positive 'fps' and a 'features' object", where=str(path), fix=_RESTORE_FIX
        )
    _check_features(features, str(path))
    totals = {"total_episodes": MAX_EPISODES, "total_frames": MAX_FRAMES}
    for key, limit in totals.items():
        value = raw.get(key, 0)
        if not _is_count(value):
            raise TrustaiUserError(
                f"{key} must be a whole number, not {value!r}",
                where=str(path),
                fix=_RESTORE_FIX,
            )
        if value > limit:
            raise TrustaiUserError(
                f"{key} is {value}, over trustai's limit of {limit}",
                where=str(path),
                fix=_RESTORE_FIX,
            )
    _check_file_count(root)
    return DatasetInfo(
        root=root,
        codebase_version=version,
        fps=int(fps),
        total_episodes=raw.get("total_episodes", 0),
        total_frames=raw.get("total_frames", 0),
        robot_type=raw.get("robot_type"),
        features=features,
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_features(features: dict[str, Any], where: str) -> None:
    """Raise TrustaiUserError naming the first feature that is not an object with a bounded shape."""
    if len(features) > MAX_FEATURES:
        raise TrustaiUserError(
            f"declares {len(features)} features, over trustai's limit of {MAX_FEATURES}",
            where=where,
            fix=_RESTORE_FIX,
        )
    for key, feature in features.items():
        if not isinstance(feature, dict):
            raise TrustaiUserError(f"feature {key!r} is not an object", where=where, fix=_RESTORE_FIX)
        shape = feature.get("shape", [])
        if not isinstance(shape, list) or len(shape) > MAX_SHAPE_RANK or not all(map(_is_count, shape)):
            raise TrustaiUserError(
                f"feature {key!r} has shape {shape!r}; a shape is a list of at most "
                f"{MAX_SHAPE_RANK} whole numbers",
                where=where,
                fix=_RESTORE_FIX,
            )
        camera = feature.get("dtype") in _CAMERA_DTYPES
        limit = MAX_CAMERA_VALUES if camera else MAX_VECTOR_VALUES
        if math.prod(shape) > limit:
            raise TrustaiUserError(
                f"feature {key!r} has shape {shape} ({math.prod(shape)} values per frame), "
                f"over trustai's limit of {limit} for a {'camera' if camera else 'non-camera'} feature",
                where=where,
                fix=_RESTORE_FIX,
            )


def _check_file_count(root: Path) -> None:
    """Raise TrustaiUserError when data/, meta/ and videos/ hold more than MAX_DATASET_FILES entries;
    counting stops there, so a folder of millions costs no more than the limit."""
    count = 0
    folders = [root / d for d in CONTENT_DIRS if (root / d).is_dir()]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    count += 1
                    if count > MAX_DATASET_FILES:
                        raise TrustaiUserError(
                            f"the dataset holds more than {MAX_DATASET_FILES} files and folders under "
                            f"{', '.join(CONTENT_DIRS)}, over trustai's limit",
                            where=str(root),
                            fix="check the folder is one LeRobot v3 dataset, not a parent of many",
                        )
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(Path(entry.path))
        except OSError as err:
            raise TrustaiUserError(
                f"cannot list the folder ({err.strerror or err})",
                where=str(folder),
                fix="make the dataset's folders readable",
            ) from None


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


def content_files(root: Path) -> list[tuple[str, Path]]:
    """Every file under data/, meta/ and videos/ (links followed to files, not into folders), as its path
    relative to ``root`` in POSIX form and its full path, in the fingerprint's order (by path parts)."""
    found: list[tuple[str, Path]] = []
    for top in CONTENT_DIRS:
        # os.walk and string paths, not rglob and relative_to: start-up lists every file of the dataset,
        # and pathlib costs about a millisecond per file there.
        for folder, _, names in os.walk(root / top):
            rel = os.path.relpath(folder, root).replace(os.sep, "/")
            found += [
                (f"{rel}/{n}", Path(folder, n)) for n in names if os.path.isfile(os.path.join(folder, n))
            ]
    return sorted(found, key=lambda item: item[0].split("/"))


def dataset_fingerprint(root: Path | str, file_digest: Callable[[Path], str] = file_sha256) -> str:
    """Return a sha256 that changes when any byte of the dataset's data, metadata or videos changes.

    It covers the canonical JSON of meta/info.json (so reformatting that file does not change the
    fingerprint) and the relative path and sha256 of every other file under data/, meta/ and
    videos/, in sorted order. It does not depend on where the dataset folder is. ``file_digest(path)``
    gives a file's sha256 (default: read the file).
    """
    root = Path(root)
    open_dataset_meta(root)
    files = [(rel, file_digest(path)) for rel, path in content_files(root) if rel != INFO_PATH]
    return fingerprint_of(root, files)


def fingerprint_of(root: Path, files: list[tuple[str, str]]) -> str:
    """``dataset_fingerprint`` of the dataset at ``root`` from digests already held: ``files`` is the
    (relative path, sha256) of every content file but meta/info.json, in ``content_files`` order."""
    info = json.loads((root / INFO_PATH).read_text(encoding="utf-8"))
    return digest({"info": info, "files": [[rel, sha] for rel, sha in files]})


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
    """Return {episode_index: length} as recorded in meta/episodes/ (not counted from the frames).

    Raises TrustaiUserError when meta/episodes/ holds more than MAX_EPISODES rows (checked from the
    file footers, before reading any) or a length that is not a whole number up to MAX_FRAMES.
    """
    paths = sorted((Path(root) / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
    if rows > MAX_EPISODES:
        raise TrustaiUserError(
            f"meta/episodes/ records {rows} episodes, over trustai's limit of {MAX_EPISODES}",
            where=str(Path(root) / "meta" / "episodes"),
            fix="restore meta/episodes/ from the source",
        )
    lengths: dict[int, int] = {}
    for path in paths:
        table = pq.read_table(path, columns=["episode_index", "length"])
        lengths.update(zip(table["episode_index"].to_pylist(), table["length"].to_pylist(), strict=True))
    bad = next(((e, n) for e, n in lengths.items() if not (_is_count(n) and n <= MAX_FRAMES)), None)
    if bad is not None:
        raise TrustaiUserError(
            f"meta/episodes/: episode {bad[0]} has length {bad[1]!r}, not a whole number up to {MAX_FRAMES}",
            where=str(Path(root) / "meta" / "episodes"),
            fix="restore meta/episodes/ from the source",
        )
    return lengths


def task_names(root: Path | str) -> dict[int, str]:
    """Return {task_index: task text} from meta/tasks.parquet, or {} when the file is absent."""
    path = Path(root) / "meta" / "tasks.parquet"
    if not path.is_file():
        return {}
    # LeRobot writes tasks from a pandas frame indexed by the task text, so "task" is a column here.
    table = pq.read_table(path, columns=["task_index", "task"])
    return dict(zip(table["task_index"].to_pylist(), table["task"].to_pylist(), strict=True))
