"""Shared fixtures of the reliability suite: keys, a tiny dataset and one real governed run (with
fault-injecting audits) that the tamper, hostile-input, key and fault trials share; and the summary
table of figures at the end of the session."""

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.figures import FIGURES
from tests.reliability.runs import fault_pack, governed_run
from tests.reliability.scale import SCALE
from trustai.attest.keys import generate_keypair
from trustai.lerobot.synthetic import make_synthetic_dataset

RUN_STEPS = 4  # two checkpoints: 000002 and 000004 (the release)


@dataclass(frozen=True)
class GovernedRun:
    """A finished governed run and what made it."""

    run_dir: Path
    private_key: Path
    public_key: Path
    log: Path  # everything trustai logged while it trained
    attempts: Path  # one line per chaos.crash_worker attempt

    @property
    def checkpoints(self) -> list[Path]:
        """The pretrained_model folders, in step order."""
        return sorted(self.run_dir.glob("checkpoints/[0-9]*/pretrained_model"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures of every reliability family that ran."""
    if FIGURES:
        terminalreporter.write_sep("=", f"trustai reliability figures ({SCALE.name}, seed {SCALE.seed})")
        terminalreporter.write_line(FIGURES.render())


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session folder for keys, datasets and runs."""
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="session")
def keys(work: Path) -> tuple[Path, Path]:
    """(private, public) signing key pair."""
    private, public = work / "keys" / "signing-key.pem", work / "keys" / "signing-key.pub"
    generate_keypair(private, public)
    return private, public


@pytest.fixture(scope="session")
def dataset(work: Path) -> Path:
    """A tiny synthetic LeRobot dataset: 2 episodes of 12 frames, one 24x32 camera."""
    return make_synthetic_dataset(
        work / "dataset",
        repo_id="trustai/reliability",
        episodes=2,
        frames_per_episode=12,
        image_size=(24, 32),
    )


@pytest.fixture(scope="session")
def governed(work: Path, keys: tuple[Path, Path], dataset: Path) -> GovernedRun:
    """One governed run, inline runtime, whose pack adds audits that raise, hang, exhaust memory and
    try to kill their worker; everything trustai logs while it trains goes to ``log``."""
    attempts, log = work / "inline-attempts.txt", work / "governed.log"
    handler = logging.FileHandler(log, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    # trustai's own logger: LeRobot's train() clears the root logger's handlers when it starts.
    root = logging.getLogger("trustai")
    root.addHandler(handler)
    try:
        run_dir = governed_run(
            work / "governed-run", dataset, fault_pack(attempts, hang_s=1), keys[0], steps=RUN_STEPS
        )
    finally:
        root.removeHandler(handler)
        handler.close()
    return GovernedRun(run_dir, keys[0], keys[1], log, attempts)
