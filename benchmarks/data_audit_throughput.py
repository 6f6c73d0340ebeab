"""Throughput of trustai's streaming data audits against a raw pyarrow scan of the same parquet files.

A synthetic LeRobot dataset (PNG cameras in the parquet files, spread over several files) is read:

- raw scan: every column of every frame file through ``pyarrow.parquet.ParquetFile.iter_batches``,
  nothing decoded — the I/O and decompression floor;
- scan + PNG decode: the same, plus decoding every camera image — the floor of any pixel audit;
- each data audit on the whole dataset (``max_frames`` covers every frame): data.quality,
  privacy.pii, drift.features (the dataset against itself, so twice the frames) and data.datasheet
  (which runs data.quality and privacy.pii itself).

Each figure is the best of ``--repeats`` runs; frames/s counts the frames each run streamed.

    .venv/bin/python -m benchmarks.data_audit_throughput [--episodes 20] [--frames 50] [--ray]
"""

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def best_time(work: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls of ``work``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def raw_scan(files: list[Path]) -> int:
    """Read every column of every file, decoding nothing; return the rows read."""
    import pyarrow.parquet as pq

    return sum(len(batch) for f in files for batch in pq.ParquetFile(f).iter_batches(batch_size=64))


def scan_and_decode(files: list[Path], cameras: list[str]) -> int:
    """Read every file and decode every camera PNG; return the images decoded."""
    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    decoded = 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=64, columns=cameras):
            for camera in cameras:
                for cell in batch[camera].to_pylist():
                    with Image.open(io.BytesIO(cell["bytes"])) as image:
                        np.asarray(image)
                    decoded += 1
    return decoded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--frames", type=int, default=50, help="frames per episode")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="drift.features computes features on Ray")
    args = parser.parse_args()

    from trustai.core.audit import AuditContext, get_audit
    from trustai.core.evidence import Stage
    from trustai.lerobot.datasets import data_files, open_dataset_meta
    from trustai.lerobot.synthetic import make_synthetic_dataset

    get_audit("drift.features")
    import evidently  # noqa: F401  (imported before timing: its import alone takes seconds)

    cameras = [f"observation.images.cam{i}" for i in range(args.cameras)]
    with tempfile.TemporaryDirectory(prefix="trustai-bench-") as tmp:
        root = make_synthetic_dataset(
            Path(tmp) / "ds",
            episodes=args.episodes,
            frames_per_episode=args.frames,
            cameras=cameras,
            image_size=(args.height, args.width),
            data_files_size_in_mb=1,
        )
        info = open_dataset_meta(root)
        files = data_files(root)
        total = info.total_frames

        def audit(name: str, **params: object) -> Callable[[], object]:
            cls = get_audit(name)
            ctx = AuditContext(stage=Stage.DATA, artifact_dir=Path(tmp) / name, dataset=root, reference=root)
            return lambda: cls().measure(ctx, cls.Params.model_validate(params))

        runs: list[tuple[str, int, Callable[[], object]]] = [
            ("raw pyarrow scan (no decoding)", total, lambda: raw_scan(files)),
            ("pyarrow scan + PNG decode", total, lambda: scan_and_decode(files, cameras)),
            ("data.quality", total, audit("data.quality", max_frames_for_images=total * len(cameras))),
            ("privacy.pii", total, audit("privacy.pii", max_frames=total)),
            (
                "drift.features (vs itself)",
                2 * total,
                audit("drift.features", max_frames=total, use_ray=args.ray),
            ),
            ("data.datasheet (+quality, pii)", 2 * total, audit("data.datasheet")),
        ]
        print(
            f"dataset: {info.total_episodes} episodes, {total} frames, {len(cameras)} PNG cameras "
            f"{args.height}x{args.width}, {len(files)} frame files; best of {args.repeats}"
            + ("; drift features on Ray" if args.ray else "")
        )
        print(f"{'':34}{'seconds':>10}{'frames/s':>12}{'vs raw scan':>14}")
        raw_rate = None
        for label, frames, work in runs:
            seconds = best_time(work, args.repeats)
            rate = frames / seconds
            raw_rate = raw_rate or rate
            print(f"{label:34}{seconds:10.3f}{rate:12.0f}{rate / raw_rate:14.3f}")


if __name__ == "__main__":
    main()
