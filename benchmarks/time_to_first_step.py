"""Time from ``trustai train`` to the first training step, governed vs plain LeRobot, for datasets of
growing size: the governed/plain ratio should stay flat, because the start-up fingerprint reads a
number of files, not their bytes (trustai.lerobot.dataset_digests), and the data stage runs beside the
loop (trustai.runtime.process_executor).

Each dataset is the same small synthetic LeRobot dataset plus padding files under ``videos/padding/``
(1 GB each) that LeRobot never opens but the fingerprint covers. The padding is sparse, so it takes no
disk space; note that sha256 still reads every byte of a sparse file (zeros, from no disk), so a full
re-hash of it runs at the hashing speed printed below, faster than real files that must come off disk.

Per size, in one process, one after the other: plain LeRobot; ``trustai train`` with the default pack
and runtime on a cold digest cache (first start: large files are claimed ``pending`` and read by the
data stage, off the critical path); again on the cache that run filled (a restart or resume); and with
``--runtime inline`` (every byte read before the first step, the old behaviour).

    .venv/bin/python -m benchmarks.time_to_first_step [--sizes 1 4 16] [--device cpu]
"""

import argparse
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

GB = 1 << 30


def add_padding(root: Path, gigabytes: int) -> None:
    """``gigabytes`` sparse 1 GB files under ``root/videos/padding/``."""
    folder = root / "videos" / "padding"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(gigabytes):
        with open(folder / f"file-{i:03d}.mp4", "wb") as f:
            f.truncate(GB)


def sha256_rate(path: Path) -> float:
    """Bytes per second sha256 reads ``path`` at."""
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return path.stat().st_size / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16], help="dataset sizes in GB")
    parser.add_argument("--device", default="cpu", help="--policy.device for both runs (cpu, cuda)")
    args = parser.parse_args()

    from accelerate import Accelerator
    from lerobot.scripts.lerobot_train import train
    from trustai.training_hooks.lerobot_train import accelerator_kwargs, governed_train, parse_train_config

    from trustai.attest.keys import generate_keypair
    from trustai.cli.demo import demo_train_flags
    from trustai.lerobot.synthetic import make_synthetic_dataset

    logging.disable(logging.WARNING)
    first_step: list[float] = []
    backward = Accelerator.backward

    def stamped(self: Accelerator, loss: object, **kwargs: object) -> None:
        if not first_step:
            first_step.append(time.perf_counter())
        backward(self, loss, **kwargs)

    Accelerator.backward = stamped  # GovernedAccelerator.backward reaches it through super()

    tmp = Path(tempfile.mkdtemp(prefix="trustai-ttfs-"))
    try:
        generate_keypair(tmp / "k.pem", tmp / "k.pub")
        base = make_synthetic_dataset(tmp / "base", repo_id="trustai/ttfs", episodes=4, frames_per_episode=20)

        def flags(dataset: Path, out: str) -> list[str]:
            return [*demo_train_flags(dataset, tmp / out, 2, 1000), f"--policy.device={args.device}"]

        def plain(dataset: Path, out: str) -> float:
            first_step.clear()
            t0 = time.perf_counter()
            cfg = parse_train_config(flags(dataset, out))
            train(cfg, accelerator=Accelerator(**accelerator_kwargs(cfg)))
            return first_step[0] - t0

        def governed(dataset: Path, out: str, **runtime: str) -> float:
            first_step.clear()
            t0 = time.perf_counter()
            governed_train(flags(dataset, out), "default", tmp / "k.pem", **runtime)
            return first_step[0] - t0

        # First-time imports (LeRobot's and trustai's) and allocator growth, not measured.
        os.environ["TRUSTAI_CACHE_DIR"] = str(tmp / "cache-warm-up")
        plain(base, "warm-up")
        governed(base, "warm-up-governed")
        rows = []
        for size in args.sizes:
            dataset = Path(shutil.copytree(base, tmp / f"ds-{size}"))
            add_padding(dataset, size)
            os.environ["TRUSTAI_CACHE_DIR"] = str(tmp / f"cache-{size}")  # cold: nothing cached yet
            row = {"size": size, "plain": plain(dataset, f"plain-{size}")}
            row["cold"] = governed(dataset, f"cold-{size}")
            row["warm"] = governed(dataset, f"warm-{size}")  # the cold run's data stage filled the cache
            row["inline"] = governed(dataset, f"inline-{size}", runtime="inline")
            rows.append(row)
            rate = sha256_rate(dataset / "videos" / "padding" / "file-000.mp4")
            shutil.rmtree(dataset)
            for out in ("plain", "cold", "warm", "inline"):
                shutil.rmtree(tmp / f"{out}-{size}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"time to first step (s), tiny ACT on {args.device}, default pack, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"sha256 of sparse padding: {rate / GB:.2f} GB/s"
    )
    print(
        f"{'dataset':>8}{'plain':>8}{'cold':>8}{'ratio':>7}{'warm':>8}{'ratio':>7}{'inline':>8}{'ratio':>7}"
    )
    for r in rows:
        cells = "".join(f"{r[k]:8.2f}{r[k] / r['plain']:7.2f}" for k in ("cold", "warm", "inline"))
        print(f"{r['size']:>6}GB{r['plain']:8.2f}{cells}")
    print("cold: first start, empty digest cache; warm: a restart; inline: --runtime inline (all read first)")


if __name__ == "__main__":
    main()
