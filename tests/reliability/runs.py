"""Real governed runs for the reliability trials, and the ways the trials touch them: a private copy
of a run, the `trustai` command line, a read-only look at a ledger."""

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from trustai.training_hooks.lerobot_train import governed_train

from trustai.cli.demo import demo_train_flags
from trustai.packs import PolicyPack, parse_pack

BIN = Path(sys.executable).parent
# One thread per process: on a shared 2-core machine torch's spinning threads fight each other and
# every other engineer's jobs, and a tiny ACT trains 3x faster on one.
QUIET_ENV = {"OMP_NUM_THREADS": "1", "COLUMNS": "250", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def train_flags(dataset: Path, run_dir: Path, *, steps: int, save_freq: int) -> list[str]:
    """The demo's lerobot-train flags for a tiny ACT, with a batch small enough for the tiny dataset."""
    return [
        "--batch_size=2" if f.startswith("--batch_size=") else f
        for f in demo_train_flags(dataset, run_dir, steps=steps, save_freq=save_freq)
    ]


# The suite's own small pack (the shipped ones grow heavy checkpoint audits): one cheap check per stage.
CORE_PACK = """\
name: reliability-core
version: 1
description: One cheap check per stage, for reliability trials.
checks:
  - {id: data-quality, audit: data.quality, stage: data, severity: block,
     thresholds: {nonfinite_state_values: {max: 0}, nonfinite_action_values: {max: 0}}}
  - {id: training-health, audit: train.health, stage: train, severity: block,
     thresholds: {nonfinite_loss_steps: {max: 0}}}
  - {id: provenance, audit: provenance.manifest, stage: checkpoint, severity: block,
     thresholds: {seed_recorded: {min: 1}, dataset_fingerprinted: {min: 1}}}
  - {id: release-provenance, audit: provenance.manifest, stage: release, severity: warn,
     thresholds: {train_config_recorded: {min: 1}}}
"""


def core_pack(extra_checks: str = "") -> PolicyPack:
    """CORE_PACK plus ``extra_checks`` (YAML list items under ``checks:``)."""
    return parse_pack(CORE_PACK + extra_checks, "reliability-core.yaml")


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run in-process training on one torch thread, restoring the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def governed_run(
    run_dir: Path, dataset: Path, pack: PolicyPack, key: Path, *, steps: int = 4, runtime: str = "inline"
) -> Path:
    """Train a tiny ACT under ``pack`` in this process, one checkpoint every 2 steps; return the run."""
    with one_torch_thread():
        return governed_train(
            train_flags(dataset, run_dir, steps=steps, save_freq=2), pack, key, runtime=runtime
        )


def copy_run(run_dir: Path, dest: Path) -> Path:
    """A private copy of a run without training_state: files hard-linked (tamper with ``own`` first),
    the ledger and its -wal/-shm copied byte for byte, since SQLite writes into those."""
    shutil.copytree(
        run_dir, dest, ignore=shutil.ignore_patterns("training_state"), symlinks=True, copy_function=os.link
    )
    for path in (dest / "trustai").glob("ledger.sqlite*"):
        own(path)
    return dest


def private_checkpoint(run_dir: Path, dest: Path, step: str = "000004") -> Path:
    """The pretrained_model folder of checkpoint ``step`` in a private copy of the run; every file in it
    but the weights is private too (safe to edit, re-seal and re-sign)."""
    folder = copy_run(run_dir, dest) / "checkpoints" / step / "pretrained_model"
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "model.safetensors":
            own(path)
    return folder


def own(path: Path) -> Path:
    """Replace a hard link with a private copy of its bytes, so editing it leaves the original alone."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)
    return path


def trustai(*args: object, timeout: float = 300, umask: int = -1) -> subprocess.CompletedProcess:
    """Run the `trustai` command line (optionally under ``umask``); output captured as text."""
    return subprocess.run(
        [BIN / "trustai", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **QUIET_ENV},
        umask=umask,
    )


def ledger_rows(path: Path) -> list[tuple] | None:
    """Every stored row of a ledger, bytes for text, read-only; None when SQLite cannot read it."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        db.text_factory = bytes
        try:
            columns = "seq, ts, kind, stage, payload, payload_sha256, prev_hash, hash"
            return db.execute(f"SELECT {columns} FROM records ORDER BY seq").fetchall()
        finally:
            db.close()
    except (sqlite3.DatabaseError, UnicodeDecodeError):  # a damaged schema can garble the message
        return None


def open_ledger_for_edit(path: Path) -> sqlite3.Connection:
    """A connection without the append-only triggers, as an attacker with file access has."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER IF EXISTS records_no_update")
    db.execute("DROP TRIGGER IF EXISTS records_no_delete")
    return db


def fault_pack(attempts_file: Path, *, hang_s: float) -> PolicyPack:
    """The core pack plus audits that raise, hang past ``hang_s``, fail to allocate (977 TiB: more
    than any address space, so it fails at once whatever the overcommit policy) or kill their worker,
    at every stage. ``attempts_file`` gets one line per crash_worker attempt."""
    faults = f"""
  - {{id: fault-data-raise, audit: chaos.raise, stage: data}}
  - {{id: fault-train-raise, audit: chaos.raise, stage: train}}
  - {{id: fault-raise, audit: chaos.raise, stage: checkpoint}}
  - {{id: fault-hang, audit: chaos.hang, stage: checkpoint, timeout_s: {hang_s}, params: {{seconds: 60}}}}
  - {{id: fault-memory, audit: chaos.exhaust_memory, stage: checkpoint, params: {{gigabytes: 1.0e6}}}}
  - {{id: fault-crash-worker, audit: chaos.crash_worker, stage: checkpoint,
      params: {{attempts_file: "{attempts_file}"}}}}
  - {{id: fault-release-hang, audit: chaos.hang, stage: release, timeout_s: {hang_s},
      params: {{seconds: 60}}}}
"""
    return core_pack(faults)


def expected_faults(checkpoints: int) -> dict[str, int]:
    """How many times each fault check of ``fault_pack`` runs in a run with ``checkpoints`` checkpoints."""
    per_checkpoint = ("fault-train-raise", "fault-raise", "fault-hang", "fault-memory", "fault-crash-worker")
    return {"fault-data-raise": 1, "fault-release-hang": 1} | dict.fromkeys(per_checkpoint, checkpoints)
