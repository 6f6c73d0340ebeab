"""How often this process loaded each checkpoint's policy, so whoever runs audits (an executor, a Ray
worker) can report it: a checkpoint's policy should be loaded once per worker, however many audits
look at it."""

import threading
from collections import Counter

_loads: Counter[str] = Counter()
_lock = threading.Lock()


def count_load(checkpoint: str) -> None:
    """Record that this process loaded the policy of ``checkpoint`` (its folder path)."""
    with _lock:
        _loads[checkpoint] += 1


def load_counts() -> dict[str, int]:
    """Policy loads in this process so far, per checkpoint folder."""
    with _lock:
        return dict(_loads)


def loads_since(before: dict[str, int]) -> dict[str, int]:
    """Policy loads in this process since ``before`` (an earlier ``load_counts()``), per checkpoint."""
    now = load_counts()
    return {key: n - before.get(key, 0) for key, n in now.items() if n > before.get(key, 0)}
