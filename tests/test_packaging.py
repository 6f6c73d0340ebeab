"""The design card's root folders map into the one namespace trustai.* in editable and wheel installs."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import trustai.audits
import trustai.policies
import trustai.reports
import trustai.training_hooks

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_maps_root_folders_into_trustai():
    assert Path(trustai.audits.__file__).parent == ROOT / "audits"
    assert Path(trustai.training_hooks.__file__).parent == ROOT / "training_hooks"
    assert Path(trustai.reports.__file__).parent == ROOT / "reports"
    assert Path(trustai.policies.__file__).parent == ROOT / "policies"
    names = ("audits", "training_hooks", "reports", "policies")
    probe = f"import importlib.util as u; print(any(u.find_spec(m) for m in {names!r}))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # conftest adds the repo for tests/
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", env=env)
    assert out.stdout.strip() == "False", "no generic top-level module may be importable"


def test_wheel_holds_only_the_trustai_namespace(tmp_path):
    src = tmp_path / "src"  # build from a copy so the checkout gets no build/ or egg-info litter
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "demo-output")
    )
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path / "dist", src]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("trustai-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"trustai", next(t for t in top if t.endswith(".dist-info"))}
    for expected in [
        "trustai/audits/data/__init__.py",
        "trustai/training_hooks/lerobot.py",
        "trustai/reports/__init__.py",
        "trustai/policies/default.yaml",
        "trustai/policies/eu-ai-act-high-risk.yaml",
        "trustai/cli/__init__.py",
    ]:
        assert expected in names, expected
    assert not any(n.startswith("tests/") for n in names)
