"""Test-wide settings: never reach a hub; keep caches inside pytest's temp folders."""

import os
import tempfile
from pathlib import Path

# The chaos audits live in the test suite and register as an audit plugin; subprocesses (trustai train)
# and Ray workers import them from the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("TRUSTAI_AUDIT_PLUGINS", "tests.chaos_audits")

# Under pytest-xdist each worker gets one core's worth of threads (torch, OpenMP), inherited by the
# training subprocesses it starts: two workers with two threads each would fight over two cores.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MUJOCO_GL", "egl")  # simulators render headless, whichever imports MuJoCo first
# Verified dataset digests are cached per session, not in the user's cache (trustai.core.digest_cache).
os.environ.setdefault("TRUSTAI_CACHE_DIR", tempfile.mkdtemp(prefix="trustai-digests-"))

# `make test` runs the suite on two pytest-xdist workers with `--dist loadgroup`. Each test module is
# one group, so its module-scoped fixtures (a governed training run, a saved checkpoint) are built once;
# the reliability trials share one session-scoped governed run, so they are one group; and the modules
# that start a local Ray cluster are one group, so two Ray clusters never compete for the two cores.
_RAY_MODULES = {"test_audit_cli", "test_distributed", "test_ledger", "test_ray_parity", "test_scale_out"}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid
        if "reliability" in item.nodeid.split("::")[0]:
            group = "reliability"
        elif module in _RAY_MODULES:
            group = "ray"
        else:
            group = module
        item.add_marker(pytest.mark.xdist_group(group))
