"""Test-wide settings: never reach a hub; keep caches inside pytest's temp folders."""

import os
from pathlib import Path

# The chaos audits live in the test suite and register as an audit plugin; subprocesses (trustai train)
# and Ray workers import them from the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("TRUSTAI_AUDIT_PLUGINS", "tests.chaos_audits")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
