"""Signing and verifying a checkpoint folder: trustai (`sign_folder` / `verify_folder`, with their
checks: pickle refusal, scan, size limits, bounded hashing) against bare ``model_signing`` with the same
key and hashing on the same folder, side by side in one run. Issue 12's target: within 1.1×.

    python -m benchmarks.signing_overhead [--megabytes 512] [--files 4] [--repeats 5]
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import model_signing

from trustai.attest.keys import generate_keypair
from trustai.attest.signing import SIGNATURE_NAME, sign_folder, verify_folder


def _folder(root: Path, megabytes: int, files: int) -> Path:
    folder = root / "pretrained_model"
    folder.mkdir()
    chunk = max(1, megabytes // files) << 20
    for i in range(files):
        (folder / f"model-{i:05d}.safetensors").write_bytes(os.urandom(chunk))
    (folder / "config.json").write_text('{"type": "act"}')
    return folder


def _bare_config(config: model_signing.hashing.Config) -> model_signing.hashing.Config:
    config.use_file_serialization(hashing_algorithm="sha256")
    config.set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False)
    config.set_allow_symlinks(False)
    return config


def _bare_sign(folder: Path, private: Path) -> None:
    signing = model_signing.signing.Config().use_elliptic_key_signer(private_key=private)
    signing.set_hashing_config(_bare_config(model_signing.hashing.Config())).sign(
        folder, folder / SIGNATURE_NAME
    )


def _bare_verify(folder: Path, public: Path) -> None:
    verifying = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public)
    verifying.set_hashing_config(_bare_config(model_signing.hashing.Config())).verify(
        folder, folder / SIGNATURE_NAME
    )


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Print median sign and verify times for both, and trustai's ratio to bare model_signing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=512, help="total weight bytes in the folder")
    parser.add_argument("--files", type=int, default=4, help="number of weight files")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trustai-bench-sign-") as tmp:
        root = Path(tmp)
        private, public = root / "key.pem", root / "key.pub"
        generate_keypair(private, public)
        folder = _folder(root, args.megabytes, args.files)
        _bare_sign(folder, private)  # warm the page cache and imports for both sides
        rows = {
            "sign": (
                _median_s(lambda: _bare_sign(folder, private), args.repeats),
                _median_s(lambda: sign_folder(folder, private), args.repeats),
            ),
            "verify": (
                _median_s(lambda: _bare_verify(folder, public), args.repeats),
                _median_s(lambda: verify_folder(folder, public), args.repeats),
            ),
        }
        assert verify_folder(folder, public).ok
        shutil.rmtree(folder)
    print(f"folder: {args.megabytes} MB in {args.files} files; median of {args.repeats}")
    print(f"{'':8}{'model_signing':>15}{'trustai':>12}{'ratio':>8}")
    for name, (bare, ours) in rows.items():
        print(f"{name:8}{bare:>14.3f}s{ours:>11.3f}s{ours / bare:>8.3f}")


if __name__ == "__main__":
    main()
