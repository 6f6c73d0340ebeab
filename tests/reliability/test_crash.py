"""Crash consistency: kill -9 a governed `trustai train` (tiny ACT) at random moments. After every kill
the ledger verifies and still holds every record read from it before the kill; LeRobot's own resume
(`--resume=true --config_path=<run>/checkpoints/last/pretrained_model/train_config.json`) then finishes
the run with the chain intact, every checkpoint sealed and earlier seals left as they were."""

import os
import random
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.conftest import RUN_STEPS, GovernedRun
from tests.reliability.figures import FIGURES
from tests.reliability.keyscan import files_leaking
from tests.reliability.runs import (
    BIN,
    CORE_PACK,
    QUIET_ENV,
    fault_pack,
    ledger_rows,
    private_checkpoint,
    train_flags,
)
from tests.reliability.scale import SCALE
from trustai.attest.verify import verify_checkpoint
from trustai.core.canonical import file_sha256
from trustai.core.ledger import Ledger
from trustai.governance import Governance

STEPS = 8  # a checkpoint every 2 steps: 000002 ... 000008 (the release)
POLL_S = 0.02
PROCESS_TIMEOUT_S = 400


@dataclass(frozen=True)
class Trigger:
    """When to kill: after ``value`` new records, when a new checkpoint folder appears, or ``value``
    seconds after the start (often still importing); then ``jitter_s`` later."""

    kind: str
    value: float
    jitter_s: float

    def fired(self, new_records: int, elapsed_s: float, new_checkpoint: bool) -> bool:
        """True once the moment has come (before the jitter)."""
        if self.kind == "records":
            return new_records >= self.value
        return new_checkpoint if self.kind == "checkpoint" else elapsed_s >= self.value


def pick_trigger(rng: random.Random, resumed: bool, first: bool) -> Trigger:
    """A random kill moment, spread over the whole process: startup, data stage, steps, checkpoint
    saves, audits, sealing and release. The first kill of a session lands within a second of a
    checkpoint folder appearing (LeRobot saving it, its audits, its card and signature)."""
    kind = "checkpoint" if first else rng.choices(["records", "checkpoint", "time"], weights=[6, 3, 1])[0]
    value = {"records": rng.randint(1, 12 if resumed else 30), "checkpoint": 0, "time": rng.uniform(2, 25)}
    return Trigger(kind, value[kind], rng.uniform(0, 0.8))


@dataclass
class Chain:
    """One run folder, killed and resumed until a process finishes it."""

    run_dir: Path
    observed: dict[int, str] = field(default_factory=dict)  # seq -> hash, read from the ledger live
    signatures: dict[Path, str] = field(default_factory=dict)  # sha256 of model.sig once sealed
    processes: int = 0

    @property
    def ledger(self) -> Path:
        return self.run_dir / "trustai" / "ledger.sqlite"

    def resumable(self) -> bool:
        """LeRobot can resume: a complete checkpoint is linked as ``last``."""
        return (self.run_dir / "checkpoints" / "last" / "training_state").is_dir()

    def command(self, dataset: Path, key: Path, pack: Path) -> list[str]:
        """`trustai train` for a fresh run, or LeRobot's resume from the last checkpoint."""
        config = self.run_dir / "checkpoints" / "last" / "pretrained_model" / "train_config.json"
        flags = (
            ["--resume=true", f"--config_path={config}"]
            if self.processes
            else train_flags(dataset, self.run_dir, steps=STEPS, save_freq=2)
        )
        return [str(BIN / "trustai"), "train", "--pack", str(pack), "--key", str(key), "--", *flags]

    def checkpoints(self) -> list[Path]:
        return sorted(self.run_dir.glob("checkpoints/[0-9]*/pretrained_model"))


def read_committed(ledger: Path, after: int) -> list[tuple[int, str]]:
    """Records committed after ``after``, read-only as any observer would; [] while there is no table."""
    if not ledger.is_file():
        return []
    try:
        db = sqlite3.connect(f"{ledger.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT seq, hash FROM records WHERE seq > ? ORDER BY seq", (after,)).fetchall()
        finally:
            db.close()
    except (sqlite3.DatabaseError, UnicodeDecodeError):
        return []


def run_until(chain: Chain, proc: subprocess.Popen, trigger: Trigger | None) -> bool:
    """Watch the ledger while ``proc`` runs, noting every committed record; kill -9 it when ``trigger``
    fires. True if it was killed, False if it exited by itself."""
    start, fired_at, new_records = time.monotonic(), None, 0
    before = set(chain.run_dir.glob("checkpoints/[0-9]*"))
    while proc.poll() is None:
        seen = read_committed(chain.ledger, max(chain.observed, default=0))
        chain.observed.update(seen)
        new_records += len(seen)
        elapsed = time.monotonic() - start
        new_checkpoint = bool(set(chain.run_dir.glob("checkpoints/[0-9]*")) - before)
        if trigger and fired_at is None and trigger.fired(new_records, elapsed, new_checkpoint):
            fired_at = elapsed
        if (fired_at is not None and elapsed >= fired_at + trigger.jitter_s) or elapsed > PROCESS_TIMEOUT_S:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            assert elapsed <= PROCESS_TIMEOUT_S, f"{chain.run_dir}: training hung ({elapsed:.0f} s)"
            return True
        time.sleep(POLL_S)
    return False


def ledger_problems(chain: Chain) -> tuple[list[str], int]:
    """What is wrong with the ledger now, and how many records read before a kill are gone."""
    if ledger_rows(chain.ledger) is None and not chain.observed:
        return [], 0  # killed before the ledger's first commit: nothing was recorded, nothing lost
    ledger = Ledger(chain.ledger, create=False)
    try:
        problems = ledger.verify().problems
        stored = {r.seq: r.hash for r in ledger.records()}
    finally:
        ledger.close()
    lost = [seq for seq, h in chain.observed.items() if stored.get(seq) != h]
    return problems + [f"record {seq} was committed before the kill and is gone" for seq in lost], len(lost)


def note_signatures(chain: Chain) -> None:
    """Remember each sealed checkpoint's signature (its card record is in the ledger)."""
    if not chain.ledger.is_file():
        return
    ledger = Ledger(chain.ledger, create=False)
    try:
        sealed = {r.payload["checkpoint"] for r in ledger.records("card") if not r.payload["release"]}
    finally:
        ledger.close()
    for rel in sealed:
        chain.signatures.setdefault(chain.run_dir / rel, file_sha256(chain.run_dir / rel / "model.sig"))


def finished_problems(chain: Chain, public_key: Path) -> list[str]:
    """After the last process: a complete, verified run whose earlier seals were left alone."""
    problems, _ = ledger_problems(chain)
    ledger = Ledger(chain.ledger, create=False)
    try:
        kinds = [r.kind for r in ledger.records()]
        releases = [r.payload["step"] for r in ledger.records("card") if r.payload["release"]]
        starts = [r.payload["manifest"] for r in ledger.records("run.start")]
    finally:
        ledger.close()
    if "resume" in starts[0] or not all("resume" in m for m in starts[1:]):
        problems.append("each run.start after the first must note the resume, and only those")
    if kinds[-2:] != ["run.end", "anchor"] or STEPS not in releases:
        problems.append(f"no run.end or release card for step {STEPS} (last records {kinds[-4:]})")
    steps = [int(c.parent.name) for c in chain.checkpoints()]
    if steps != list(range(2, STEPS + 1, 2)):
        problems.append(f"checkpoints {steps}")
    for folder in chain.checkpoints():
        report = verify_checkpoint(folder, public_key)
        problems += [f"{folder.parent.name}: {p}" for c in report.steps for p in c.problems]
    for folder, digest in chain.signatures.items():
        # The last checkpoint is sealed again as the release card; every other seal must be untouched.
        if int(folder.parent.name) != STEPS and file_sha256(folder / "model.sig") != digest:
            problems.append(f"{folder.parent.name}: sealed before a kill, then signed again")
    return problems


def scan_for_key(chain: Chain, logs: Path, private_key: Path) -> list[str]:
    """Count a finished run folder and its logs into the key figures; name each file leaking the key."""
    leaks = files_leaking(private_key, [chain.run_dir, *logs.glob(f"{chain.run_dir.name}-*.log")])
    fig = FIGURES.row("keys")
    fig.trials += 1
    fig.lost += len(leaks)
    fig.detected += not leaks
    return [f"private key material in {p}" for p in leaks]


def test_kill_9_loses_no_committed_record_and_resume_seals_the_rest(
    keys: tuple[Path, Path], dataset: Path, tmp_path: Path
) -> None:
    rng = random.Random(f"{SCALE.seed}-crash")
    pack = tmp_path / "reliability-core.yaml"
    pack.write_text(CORE_PACK, encoding="utf-8")
    fig = FIGURES.row("crash")
    failures: list[str] = []
    kinds: dict[str, int] = {}
    runs, resumes, completed = 0, 0, 0
    chain, kills_left = Chain(tmp_path / "run-0"), SCALE.kills
    while True:
        trigger = (
            pick_trigger(rng, resumed=chain.processes > 0, first=kills_left == SCALE.kills)
            if kills_left
            else None
        )
        log = tmp_path / f"{chain.run_dir.name}-{chain.processes}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                chain.command(dataset, keys[0], pack),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **QUIET_ENV},
                start_new_session=True,  # its own process group: the kill reaches only what we started
            )
            killed = run_until(chain, proc, trigger)
        chain.processes += 1
        if killed:
            kills_left -= 1
            fig.trials += 1
            kinds[trigger.kind] = kinds.get(trigger.kind, 0) + 1
            problems, lost = ledger_problems(chain)
            fig.lost += lost
            fig.detected += not problems
            failures += [f"{chain.run_dir.name} kill {fig.trials} ({trigger}): {p}" for p in problems]
            note_signatures(chain)
            if chain.resumable():
                resumes += 1
                continue
        elif proc.returncode != 0:
            fig.crashed += 1
            failures.append(f"{log.name}: exit {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        else:
            completed += 1
            problems = finished_problems(chain, keys[1])
            fig.crashed += bool(problems)
            failures += [f"{chain.run_dir.name} after resuming: {p}" for p in problems]
        failures += scan_for_key(chain, tmp_path, keys[0])
        if not kills_left and (not killed or not chain.resumable()):
            break
        runs += 1
        chain = Chain(tmp_path / f"run-{runs}")
    fig.notes.append(f"kill moments: {kinds}; {resumes} resumes, {completed} runs finished after kills")
    FIGURES.row("keys").notes.append(
        f"{runs + 1} killed, resumed or finished `trustai train` run folders and logs scanned"
    )
    assert not failures, "\n".join(failures)


def test_a_lost_evidence_file_does_not_break_later_cards(governed: GovernedRun, tmp_path: Path) -> None:
    """A kill between an evidence record's commit and the write of its file leaves the record without
    the file; later cards are written from the ledger, so sealing still works and verifies."""
    folder = private_checkpoint(governed.run_dir, tmp_path / "run")
    run_dir = folder.parents[2]
    for evidence in (run_dir / "trustai" / "evidence").glob("*.json"):
        evidence.unlink()
    governance = Governance(
        run_dir, fault_pack(tmp_path / "attempts.txt", hang_s=1), signing_key=governed.private_key
    )
    try:
        governance.seal(folder, step=RUN_STEPS, release=True)
    finally:
        governance.close()
    report = verify_checkpoint(folder, governed.public_key)
    assert report.ok, [(c.name, c.problems) for c in report.steps]
