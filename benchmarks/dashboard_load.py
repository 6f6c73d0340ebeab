"""``trustai serve``: page load time on a run with 50 checkpoints and 1,000 findings.

The run is written through the real Governance API (``write_run``): a ``run.start``, a data stage,
then per checkpoint a checkpoint stage whose evidence and findings Governance records and judges, a
card sealed, signed and anchored by ``Governance.seal``; a run end. Metrics drift with the step, so
warn and fail findings and a first blocked checkpoint appear; one check per checkpoint carries a heat
map PNG. The dashboard is then served by uvicorn on a free port and each page is timed over HTTP
(cold: first request; warm: median of the next ones) and, when Debian's Chromium is installed, in the
browser until every chart is drawn; the background integrity checks (every checkpoint verified, the
ledger's chain walked once) are timed until the run's first verdict. Side by side: reading the run's
status alone (``trustai.reports.run_status``, what ``trustai status`` prints), the floor any page
stands on.

    .venv/bin/python -m benchmarks.dashboard_load [--checkpoints 50] [--checks 20]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from trustai.core.evidence import Artifact, Evidence, InputProvenance, Stage
from trustai.core.records import RunEnd
from trustai.governance import Governance
from trustai.packs import PolicyPack, parse_pack

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# Three kinds of checkpoint check, repeated to the number asked for: each a real audit of the registry
# with its metric names; only the measurements are made up.
TEMPLATES = [
    {
        "audit": "provenance.manifest",
        "thresholds": {"seed_recorded": {"min": 1}, "train_config_recorded": {"min": 1}},
        "severity": "block",
    },
    {
        "audit": "robustness.corruptions",
        "thresholds": {"mean_action_deviation": {"max": 0.5}},
        "severity": "warn",
    },
    {"audit": "explainability.attributions", "severity": "info"},
]
DATA_CHECK = {
    "id": "data-quality",
    "audit": "data.quality",
    "stage": "data",
    "thresholds": {"timestamp_gaps": {"max": 0}},
    "severity": "block",
}


def load_pack(checks: int) -> PolicyPack:
    """A pack with the data check and ``checks`` checkpoint checks cycling through TEMPLATES."""
    listed = [DATA_CHECK]
    for i in range(checks):
        template = TEMPLATES[i % len(TEMPLATES)]
        name = template["audit"].split(".")[-1]
        listed.append({"id": f"{name}-{i}", "stage": "checkpoint", **template})
    # JSON is YAML, and unlike yaml.safe_dump it writes shared dicts out instead of as aliases.
    return parse_pack(json.dumps({"name": "dashboard-load", "checks": listed}), "dashboard-load.yaml")


def _heat_map(path: Path, step: int) -> None:
    """A small attribution-like heat map PNG (matplotlib)."""
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.random.default_rng(step).random((12, 16)) ** 2
    fig, ax = plt.subplots(figsize=(3, 2.2), dpi=80)
    ax.imshow(grid, cmap="inferno")
    ax.set_title(f"attribution, step {step}", fontsize=8)
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _measure(gov: Governance, check_id: str, audit: str, step: int, fail_from: int) -> Evidence:
    """What the audit of ``check_id`` would have measured at ``step`` (drifting with the step)."""
    index = int(check_id.rsplit("-", 1)[-1])
    artifacts = []
    if audit == "provenance.manifest":
        metrics = {"seed_recorded": int(step < fail_from), "train_config_recorded": 1}
    elif audit == "robustness.corruptions":
        metrics = {
            "mean_action_deviation": round(0.2 + 0.004 * step + 0.01 * index, 4),
            "max_action_deviation": round(0.6 + 0.006 * step, 4),
        }
    else:
        metrics = {"share/observation.images.top": 0.6, "share/observation.state": 0.4, "deletion_auc": 0.3}
        png = gov.trustai_dir / "artifacts" / f"checkpoint-{step}-{check_id}" / "heatmap.png"
        _heat_map(png, step)
        artifacts.append(Artifact.from_file(png, gov.trustai_dir))
    return Evidence(
        audit=audit,
        audit_version="1",
        stage=Stage.CHECKPOINT,
        check_id=check_id,
        metrics=metrics,
        artifacts=artifacts,
        inputs=InputProvenance(step=step, dataset="trustai/demo", dataset_fingerprint="f" * 64),
    )


def _model_folder(run_dir: Path, step: int) -> Path:
    """A checkpoint's model folder as LeRobot lays it out (config and a small weights file)."""
    folder = run_dir / "checkpoints" / f"{step:06d}" / "pretrained_model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"type": "act", "input_features": {}, "output_features": {}}')
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    return folder


def write_run(
    run_dir: Path,
    signing_key: Path,
    *,
    checkpoints: int,
    checks: int,
    every: int = 10,
    fail_at: int | None = None,
) -> Iterator[int]:
    """Write a governed run into ``run_dir`` one checkpoint at a time: yields each checkpoint's step
    once its card is sealed; the run ends (``run.end``, closing anchor) when the generator is exhausted.
    From checkpoint index ``fail_at`` (default: two thirds in) the block checks fail."""
    pack = load_pack(checks)
    fail_from = every * (fail_at if fail_at is not None else max(1, 2 * checkpoints // 3) + 1)
    gov = Governance(run_dir, pack, signing_key=signing_key)
    try:
        gov.start(
            {
                "train_config": {"policy": {"type": "act"}, "steps": every * checkpoints},
                "dataset": {"id": "trustai/demo", "fingerprint": "f" * 64},
                "seed": 1000,
            }
        )
        gov.run_stage(Stage.DATA, step=0, checks=[])
        data = Evidence(audit="data.quality", audit_version="1", stage=Stage.DATA, check_id="data-quality")
        gov.record(pack.checks[0], data.model_copy(update={"metrics": {"timestamp_gaps": 0}}))
        step = 0
        for n in range(1, checkpoints + 1):
            step = every * n
            folder = _model_folder(run_dir, step)
            gov.run_stage(Stage.CHECKPOINT, step=step, checks=[])
            for check in pack.checks_for(Stage.CHECKPOINT):
                gov.record(check, _measure(gov, check.id, check.audit, step, fail_from))
            gov.seal(folder, step=step, release=n == checkpoints)
            yield step
        gov.end(RunEnd(release_checkpoint=str(folder), steps=step))
    finally:
        gov.close()


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app: object) -> tuple[str, object]:
    """Serve ``app`` with uvicorn in a daemon thread on a free port; return its URL and the server."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server


def _fetch(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url) as response:
        response.read()
    return time.perf_counter() - t0


def _browser_load(base: str, path: str, repeats: int) -> list[float] | None:
    """Seconds from navigation to every chart drawn, in Chromium; None without Chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        for _ in range(repeats):
            t0 = time.perf_counter()
            page.goto(base + path)
            page.wait_for_function(
                "[...document.querySelectorAll('div.chart')].every(d => d.querySelector('.main-svg'))"
            )
            times.append(time.perf_counter() - t0)
        browser.close()
    return times


def main() -> None:
    """Write the run, serve it, time each page, print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from trustai.reports.run_status import run_status

    from trustai.attest.keys import generate_keypair
    from trustai.dashboard.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
        run_dir = tmp_path / "run"
        t0 = time.perf_counter()
        for _ in write_run(run_dir, tmp_path / "k.pem", checkpoints=args.checkpoints, checks=args.checks):
            pass
        status = run_status(run_dir)
        findings = len(status.run_findings) + sum(len(c.findings) for c in status.checkpoints)
        print(
            f"run written in {time.perf_counter() - t0:.1f} s: {len(status.checkpoints)} checkpoints, "
            f"{findings} findings"
        )
        status_times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_status(run_dir)
            status_times.append(time.perf_counter() - t0)

        base, server = start_server(create_app([run_dir], public_key=tmp_path / "k.pub"))
        t0 = time.perf_counter()
        while '"integrity":"checking"' in urllib.request.urlopen(f"{base}/api/runs/0").read().decode():
            time.sleep(0.05)
        integrity_s = time.perf_counter() - t0
        pages = {
            "runs list": "/",
            "run (charts)": "/runs/0",
            "checkpoint": f"/runs/0/checkpoints/{status.checkpoints[-1].name}",
            "finding": f"/runs/0/findings/{status.checkpoints[-1].findings[2].record}",
            "card diff": f"/runs/0/diff?a={status.checkpoints[0].name}&b={status.checkpoints[-1].name}",
            "poll (JSON)": "/api/runs/0",
        }
        floor = statistics.median(status_times)
        print(f"floor: reading the run's status (trustai status): {floor * 1000:.0f} ms")
        print(
            f"integrity checks (background, first time): {integrity_s:.2f} s for {args.checkpoints} "
            f"checkpoints, {integrity_s / args.checkpoints * 1000:.0f} ms each ({integrity_s / floor:.1f}x "
            "the floor)"
        )
        print(f"{'page':<16}{'cold ms':>10}{'warm ms':>10}{'warm / floor':>14}")
        for name, path in pages.items():
            cold = _fetch(base + path)
            warm = statistics.median(_fetch(base + path) for _ in range(args.repeats))
            print(f"{name:<16}{cold * 1000:>10.0f}{warm * 1000:>10.0f}{warm / floor:>13.2f}x")
        browser = _browser_load(base, "/runs/0", args.repeats)
        if browser is not None:
            print(
                f"run page in Chromium, navigation to every chart drawn: median "
                f"{statistics.median(browser) * 1000:.0f} ms over {len(browser)} loads "
                f"({statistics.median(browser) / floor:.1f}x the floor)"
            )
        server.should_exit = True


if __name__ == "__main__":
    main()
