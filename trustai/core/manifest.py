"""Run provenance: the manifest that says exactly what produced a model — code (git commit, dirty
flag), environment (python, packages, torch, CUDA, hardware), seeds, the full training config and the
dataset fingerprint with the per-file digests it was made from, each saying whether it was read at
start-up or claimed from an existing digest (``trustai.lerobot.dataset_digests``) — and the digest of a
checkpoint's weights."""

import platform
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from trustai.core.canonical import file_sha256

WEIGHT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # weights never unpickled or signed


def git_state(cwd: Path) -> dict[str, Any]:
    """Return the git commit and dirty flag of ``cwd`` (None values outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def environment() -> dict[str, Any]:
    """Return python, installed package versions, torch/CUDA and hardware facts of this process."""
    import torch

    packages = {d.metadata["Name"].lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    cuda = torch.version.cuda if torch.cuda.is_available() else None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "cuda": cuda,
        "gpus": gpus,
        "packages": dict(sorted(packages.items())),
    }


def weights_digest(folder: Path, file_digest: Callable[[Path], str] = file_sha256) -> str:
    """Return one sha256 over the weight files of a checkpoint folder (name and digest of each);
    ``file_digest(path)`` gives a file's sha256 (default: read it; a caller that already hashed the
    folder's files passes their digests)."""
    from trustai.core.canonical import digest

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return digest({p.relative_to(folder).as_posix(): file_digest(p) for p in files})


def run_manifest(
    *,
    train_config: dict[str, Any] | None,
    seed: int | None,
    dataset_fingerprint: str | None,
    dataset: str | None,
    dataset_digests: dict[str, Any] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Return the run manifest recorded as the first ledger record of a governed run.

    ``dataset_digests`` (``DatasetDigests.record()``) lists each dataset file's digest and where it came
    from; ``dataset_fingerprint`` is None while any of them is pending (the data stage reads it)."""
    dataset_record: dict[str, Any] = {"id": dataset, "fingerprint": dataset_fingerprint}
    if dataset_digests is not None:
        dataset_record["digests"] = dataset_digests
    return {
        "git": git_state(cwd or Path.cwd()),
        "environment": environment(),
        "seed": seed,
        "train_config": train_config,
        "dataset": dataset_record,
    }
