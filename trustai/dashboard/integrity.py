"""A run's integrity state on the dashboard: the checks a report states on its first page
(``trustai.reports.integrity``: the ledger's chain and signed anchors through ``trustai.attest.verify``,
the run's evidence and artifact files, every sealed checkpoint's signature, card, evidence copies and
identity), run again whenever a file of the run changes, in a background thread so pages never wait.

Green (``verified``) only when every check held with a public key. While training runs, records after
the last anchor (a stage not sealed yet) and checkpoints LeRobot wrote that are not sealed yet are
``in progress``, not failures; every other failed check is ``failed``. Without a public key nothing
signed can be checked: ``not checked``.
"""

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from trustai.reports.integrity import FAILED, NOT_CHECKED, check_integrity
from trustai.reports.model import load_run

from trustai import layout
from trustai.attest.anchor import check_anchors
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError

VERIFIED, IN_PROGRESS, BROKEN = "verified", "in progress", "failed"
UNCHECKED, CHECKING = "not checked", "checking"
_ANCHORS = "ledger anchors"  # the names check_integrity gives its verdicts start with these
_UNSEALED = "checkpoints on disk the ledger accounts for"
_SKIPPED = ("-shm",)  # SQLite's shared-memory file changes when anyone reads the ledger


@dataclass(frozen=True)
class IntegrityState:
    """One run's integrity: ``state`` (verified, in progress, failed, not checked, checking), a sentence
    saying why, and each check that did not hold as ``name: problem``."""

    state: str
    summary: str
    problems: tuple[str, ...] = ()


_CHECKING = IntegrityState(CHECKING, "checking the run's files and signatures")


def run_fingerprint(run_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file of the run's trustai folder and checkpoints with its size and mtime: what the
    integrity checks read. Any edit, addition or removal changes it."""
    found = []
    for top in (layout.trustai_dir(run_dir), Path(run_dir) / layout.CHECKPOINTS_DIR):
        for folder, _, names in os.walk(top):
            for name in names:
                if name.endswith(_SKIPPED):
                    continue
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                except OSError:  # removed while we looked: the next look sees the change
                    continue
                found.append((path, info.st_size, info.st_mtime_ns))
    return tuple(sorted(found))


def _in_progress(run: RunLedger, public_key: Path) -> bool:
    """True when the anchors fail only because records after the last anchor await their seal while
    training has not ended (no signature is wrong, nothing contradicts the chain)."""
    anchors = check_anchors(run, public_key)
    training = run.start is not None and (run.end is None or run.end.seq < run.start.seq)
    return training and not anchors.signatures and not anchors.inconsistent


def assess(run_dir: Path, public_key: Path | None) -> IntegrityState:
    """Run the integrity checks over the run as it is now and say what they add up to."""
    try:
        run = load_run(run_dir)
        found = check_integrity(run, public_key)
    except TrustaiUserError as exc:
        return IntegrityState(BROKEN, "the ledger cannot be read", (str(exc),))
    failed = [v for v in found.verdicts if v.status == FAILED]
    problems = tuple(f"{v.name}: {p}" for v in failed for p in v.problems or ("failed",))
    if public_key is None:
        if failed:
            return IntegrityState(BROKEN, f"{len(failed)} checks failed (no public key)", problems)
        return IntegrityState(UNCHECKED, "no public key: signatures and anchors not checked")
    pending = [v for v in failed if v.name.startswith((_ANCHORS, _UNSEALED))]
    if failed and len(pending) == len(failed) and _in_progress(run.ledger, public_key):
        return IntegrityState(IN_PROGRESS, "training: the newest records await their signed seal", problems)
    if failed:
        return IntegrityState(BROKEN, f"{len(failed)} of {len(found.verdicts)} checks failed", problems)
    unchecked = [v for v in found.verdicts if v.status == NOT_CHECKED]
    if unchecked:
        return IntegrityState(UNCHECKED, "; ".join(f"{v.name}: not checked" for v in unchecked))
    return IntegrityState(VERIFIED, f"all {len(found.verdicts)} checks held (key sha256:{found.key})")


class IntegrityWatch:
    """The integrity state of each run asked about, kept by one background thread that looks at the
    run's files every ``every_s`` seconds and runs the checks again whenever they changed: a request
    never waits on them. ``CHECKING`` until the checks of the files as last seen are done."""

    def __init__(self, public_key: Path | None, every_s: float = 1.0):
        self.public_key = public_key
        self.every_s = every_s
        self._lock = threading.Lock()
        self._states: dict[Path, tuple[tuple | None, IntegrityState]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def state(self, run_dir: Path) -> IntegrityState:
        """The run's integrity as last checked, or ``CHECKING`` while its files are being checked."""
        with self._lock:
            if run_dir not in self._states:
                self._states[run_dir] = (None, _CHECKING)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="trustai-integrity", daemon=True)
                self._thread.start()
            return self._states[run_dir][1]

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                runs = list(self._states.items())
            for run_dir, (seen, _) in runs:
                fingerprint = run_fingerprint(run_dir)
                if fingerprint == seen:
                    continue
                with self._lock:
                    self._states[run_dir] = (None, _CHECKING)
                try:
                    result = assess(run_dir, self.public_key)
                except Exception as exc:  # whatever stopped the checks, the run is not shown as verified
                    result = IntegrityState(BROKEN, "the integrity checks could not run", (repr(exc),))
                with self._lock:
                    self._states[run_dir] = (fingerprint, result)
            self._stop.wait(self.every_s)

    def close(self) -> None:
        """Stop watching (a check under way finishes on its own, unread)."""
        self._stop.set()
