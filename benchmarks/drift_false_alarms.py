"""False alarms and detections of drift.features on recordings of the same process and on shifted ones.

Pair i is a reference recorded with seed 2i and a current recording with seed 2i+1 of the same
scripted controller (trustai.lerobot.synthetic, same parameters): any drift found there is a false
alarm. Each shift is applied afterwards to a copy of that same current recording, by rewriting its
frame files, so a shifted pair differs from its same-process pair only by the shift:

- lighting: every camera image brighter by ``--lighting`` levels of 0-255;
- camera offset: the scene moved ``--offset`` pixels right and down, as a camera mounted a little
  off would see it (the uncovered border repeats the edge pixels);
- action noise: Gaussian noise of ``--action-noise`` (state units; the block travels 0.8 in an
  episode) added to every used action dimension, as a jittery controller would command.

With ``--video`` the same-process pairs are recorded again with mp4 cameras (LeRobot's encoder) for
a second false-alarm figure. With ``--baseline`` every pair is also judged the way drift.features v1
did: Evidently's DataDriftPreset on the sampled frames, dataset drift at half the features drifted.

    .venv/bin/python -m benchmarks.drift_false_alarms [--pairs 20] [--episodes 10] [--frames 20]
"""

import argparse
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

Shift = Callable[[Path, np.random.Generator], None]


def _rewrite(root: Path, edit: Callable[[dict[str, list]], dict[str, list]]) -> None:
    """Replace every frame file of ``root`` by ``edit`` of its columns (same schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trustai.lerobot.datasets import data_files

    for path in data_files(root):
        table = pq.read_table(path)
        columns = edit(table.to_pydict())
        pq.write_table(pa.Table.from_pydict(columns, schema=table.schema), path)


def _edit_images(root: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Apply ``change`` (H×W×3 uint8 -> same) to every PNG camera image of ``root``."""
    from PIL import Image

    from trustai.lerobot.datasets import open_dataset_meta
    from trustai.lerobot.frames import decode_png

    cameras = open_dataset_meta(root).image_keys

    def edit(columns: dict[str, list]) -> dict[str, list]:
        for camera in cameras:
            for cell in columns[camera]:
                buffer = io.BytesIO()
                Image.fromarray(change(decode_png(cell))).save(buffer, format="PNG")
                cell["bytes"] = buffer.getvalue()
        return columns

    _rewrite(root, edit)


def lighting(levels: float) -> Shift:
    """Every image brighter by ``levels``."""

    def shift(root: Path, rng: np.random.Generator) -> None:
        _edit_images(
            root, lambda image: np.clip(image.astype(np.int16) + round(levels), 0, 255).astype(np.uint8)
        )

    return shift


def camera_offset(pixels: int) -> Shift:
    """The scene moved ``pixels`` right and down; the uncovered border repeats the edge."""

    def moved(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        padded = np.pad(image, ((pixels, 0), (pixels, 0), (0, 0)), mode="edge")
        return padded[:height, :width]

    def shift(root: Path, rng: np.random.Generator) -> None:
        _edit_images(root, moved)

    return shift


def action_noise(std: float) -> Shift:
    """Gaussian noise of ``std`` on every action dimension that is not constant zero (unused)."""

    def shift(root: Path, rng: np.random.Generator) -> None:
        def edit(columns: dict[str, list]) -> dict[str, list]:
            actions = np.asarray(columns["action"], np.float32)
            used = np.any(actions != 0, axis=0)
            actions[:, used] += rng.normal(0.0, std, (len(actions), int(used.sum()))).astype(np.float32)
            columns["action"] = actions.tolist()
            return columns

        _rewrite(root, edit)

    return shift


def evidently_frame_drift(reference: Path, current: Path, max_frames: int) -> tuple[int, int]:
    """drift.features v1's judgement: Evidently's DataDriftPreset on the sampled frames' features;
    returns (features drifted, features). v1 called it dataset drift at half of them or more."""
    import warnings

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    from trustai.audits.drift.features import dataset_features, feature_spec

    from trustai.lerobot.datasets import open_dataset_meta

    infos = [open_dataset_meta(reference), open_dataset_meta(current)]
    spec = feature_spec(infos[0])
    ref, cur = (frame[spec.names] for frame in dataset_features(infos, spec, max_frames))
    definition = DataDefinition(numerical_columns=spec.names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([DataDriftPreset(drift_share=0.5)], include_tests=True).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
    drifted = sum(
        t["status"] == "FAIL"
        for t in snapshot.dict()["tests"]
        if t["metric_config"]["params"].get("type", "").endswith(":ValueDrift")
    )
    return drifted, len(spec.names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20, help="pairs per condition")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per recording")
    parser.add_argument("--frames", type=int, default=20, help="frames per episode")
    parser.add_argument("--lighting", type=float, default=20.0, help="brightness shift, 0-255 levels")
    parser.add_argument("--offset", type=int, default=3, help="camera offset, pixels right and down")
    parser.add_argument("--action-noise", type=float, default=0.02, help="action noise std, state units")
    parser.add_argument("--video", action="store_true", help="also same-process pairs with mp4 cameras")
    parser.add_argument("--baseline", action="store_true", help="also judge every pair as v1 did")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the datasets here, reusing those already there (default: a temporary folder)",
    )
    args = parser.parse_args()

    from trustai.core.audit import AuditContext, get_audit
    from trustai.core.evidence import Stage
    from trustai.lerobot.synthetic import make_synthetic_dataset

    audit = get_audit("drift.features")
    shifts: dict[str, Shift] = {
        f"lighting +{args.lighting:g}": lighting(args.lighting),
        f"camera offset {args.offset}px": camera_offset(args.offset),
        f"action noise std {args.action_noise:g}": action_noise(args.action_noise),
    }
    conditions = ["same process (PNG)", *(["same process (video)"] if args.video else []), *shifts]
    alarms: dict[str, list[bool]] = {c: [] for c in conditions}
    flagged: dict[str, list[int]] = {c: [] for c in conditions}
    tested: dict[str, int] = {}
    baseline: dict[str, list[tuple[int, int]]] = {c: [] for c in conditions}
    audit_seconds: list[float] = []

    with tempfile.TemporaryDirectory(prefix="trustai-drift-bench-") as tmp:
        work = args.keep or Path(tmp)

        def record(name: str, seed: int, video: bool = False) -> Path:
            if (work / name).is_dir():  # kept from an earlier run with --keep
                return work / name
            return make_synthetic_dataset(
                work / name,
                episodes=args.episodes,
                frames_per_episode=args.frames,
                seed=seed,
                use_videos=video,
            )

        def judge(condition: str, reference: Path, current: Path) -> None:
            ctx = AuditContext(
                stage=Stage.MONITOR,
                artifact_dir=work / "reports" / current.name,
                dataset=current,
                reference=reference,
            )
            start = time.perf_counter()
            result = audit().measure(ctx, audit.Params())
            audit_seconds.append(time.perf_counter() - start)
            alarms[condition].append(bool(result.metrics["dataset_drift"]))
            tested[condition] = int(result.metrics["features"])
            flagged[condition].append(int(result.metrics["drifted_features"]))
            if args.baseline:
                baseline[condition].append(
                    evidently_frame_drift(reference, current, audit.Params().max_frames)
                )

        for i in range(args.pairs):
            reference, current = record(f"ref-{i}", 2 * i), record(f"cur-{i}", 2 * i + 1)
            judge(conditions[0], reference, current)
            if args.video:
                judge(
                    "same process (video)",
                    record(f"vref-{i}", 2 * i, True),
                    record(f"vcur-{i}", 2 * i + 1, True),
                )
            for k, (condition, shift) in enumerate(shifts.items()):
                shifted = work / f"cur-{i}-{condition.replace(' ', '_')}"
                if not shifted.is_dir():
                    partial = work / "partial"
                    shutil.rmtree(partial, ignore_errors=True)
                    shift(shutil.copytree(current, partial), np.random.default_rng([i, k]))
                    partial.rename(shifted)
                judge(condition, reference, shifted)
            print(f"pair {i + 1}/{args.pairs} done", flush=True)

    print(
        f"\n{args.pairs} pairs per condition; each recording {args.episodes} episodes x {args.frames} "
        f"frames, one 48x64 camera; drift.features defaults ({audit.Params().model_dump()}); "
        f"median audit {np.median(audit_seconds):.1f} s"
    )
    targets = {"false alarms": ("<=", 0.05), "detections": (">=", 0.95)}
    print(f"{'condition':28}{'measures':>14}{'pairs':>7}{'alarms':>8}{'rate':>7}{'target':>8}", end="")
    print(f"{'met':>5}{'flagged':>9}" + (f"{'v1 rate':>9}{'v1 flagged':>12}" if args.baseline else ""))
    for condition in conditions:
        kind = "false alarms" if condition.startswith("same") else "detections"
        op, target = targets[kind]
        rate = float(np.mean(alarms[condition]))
        met = rate <= target if op == "<=" else rate >= target
        line = (
            f"{condition:28}{kind:>14}{len(alarms[condition]):7}{sum(alarms[condition]):8}{rate:7.0%}"
            f"{op + format(target, '.0%'):>8}{'yes' if met else 'NO':>5}"
            f"{f'{np.mean(flagged[condition]):.1f}/{tested[condition]}':>9}"
        )
        if args.baseline:
            v1 = baseline[condition]
            v1_rate = np.mean([drifted >= total / 2 for drifted, total in v1])
            line += f"{v1_rate:9.0%}{f'{np.mean([d for d, _ in v1]):.1f}/{v1[0][1]}':>12}"
        print(line)
    print("flagged: features drifted, mean over pairs / features tested")


if __name__ == "__main__":
    main()
