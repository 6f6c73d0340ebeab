"""A checkpoint's policy loaded once per process and an isolated copy of it for every audit.

Checkpoint audits get their policy from ``trustai.lerobot.policy_batches.audit_policy``: the policy the
stage handed over (``trustai audit`` loads each checkpoint once), else the checkpoint loaded through
this process's cache, which holds the last checkpoint loaded (a Ray worker runs one checkpoint's
audits after another, so it loads each checkpoint once). Either way each audit receives its own deep
copy of the policy module: hooks it registers, ``requires_grad`` and train/eval switches and in-place
weight changes stay in its copy, so no audit sees another's. Copying is a memory copy, far cheaper
than loading (reading, deserialising and checking the weights).
"""

import copy
import threading
from pathlib import Path

from trustai import layout
from trustai.core.load_counts import count_load
from trustai.lerobot.adapter import PolicyAdapter

_lock = threading.Lock()
_cached: tuple[tuple, PolicyAdapter] | None = None  # (key, pristine adapter)


def _key(folder: Path, device: str, seed: int) -> tuple:
    """What makes a cached policy the right one: the folder, its weight files as they are now (a
    re-saved checkpoint misses), the device and the seed."""
    stats = [(p.name, p.stat()) for p in sorted(folder.glob("*.safetensors"))]
    weights = tuple((name, st.st_ino, st.st_size, st.st_mtime_ns) for name, st in stats)
    return (str(folder.resolve()), weights, device, seed)


def loaded_policy(checkpoint: Path, device: str = "cpu", seed: int = 0) -> PolicyAdapter:
    """The policy of ``checkpoint`` on ``device``, loaded at most once while it stays this process's
    latest: the shared, pristine instance (hand audits ``isolated`` copies, never this one). Raises
    TrustaiUserError as ``PolicyAdapter.from_checkpoint`` does."""
    global _cached
    folder = layout.model_folder(Path(checkpoint))
    key = _key(folder, device, seed)
    with _lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
        _cached = None  # the previous checkpoint's memory is freed before the next one is loaded
        adapter = PolicyAdapter.from_checkpoint(folder, device=device, seed=seed)
        count_load(str(folder))
        _cached = (key, adapter)
        return adapter


def isolated(adapter: PolicyAdapter) -> PolicyAdapter:
    """An audit's own copy of ``adapter``: a deep copy of the policy module (parameters, buffers,
    hooks, requires_grad flags, train/eval mode), sharing the processors, which audits only read."""
    clone = copy.copy(adapter)
    clone.policy = copy.deepcopy(adapter.policy)
    return clone
