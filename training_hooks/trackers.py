"""Findings in the experiment trackers teams already watch: each finding's metrics and verdict, and each
sealed checkpoint's gate and card digest, sent to the run's W&B run (the one LeRobot's own W&B logging
started, ``--wandb.enable=true``) and to MLflow, at the training step they belong to.

Stable names, the same in every tracker:

    trustai/<check>/<metric>     each numeric metric of the check's evidence (booleans as 0/1)
    trustai/<check>/verdict      the finding's status as a number: VERDICT_CODES (higher is worse)
    trustai/<check>/status       the finding's status as text (pass, warn, inconclusive, fail, error)
    trustai/gate                 the checkpoint's gate, as its sealed card states it, as a number: GATE_CODES
    trustai/gate/verdict         the checkpoint's gate as text (pass, warn, blocked)
    trustai/card/digest          the sealed card's sha256 (as the ledger's card record holds it)
    trustai/step                 the training step (W&B: the x axis of every trustai/* chart)

Numbers are metrics at their step in both trackers. Text goes into the W&B history row of its step;
MLflow keeps text as run tags, once as the latest value and once per step (``<name>/step-<N>``).

A tracker is a Governance observer (``Governance.observers``): it sees each evidence, finding and card
record as the ledger takes it. A checkpoint's findings are sent together with its gate when its card
is sealed; findings of stages without a card (data, monitor) are sent at once. A tracker that fails is
recorded in the ledger as a ``hook.error`` by Governance and dropped; training goes on.
"""

import json
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trustai import layout
from trustai.core.canonical import digest
from trustai.core.evidence import Stage
from trustai.core.ledger import Record
from trustai.core.records import RecordKind
from trustai.errors import TrustaiUserError
from trustai.governance import Governance

TRACKERS = ("wandb", "mlflow")
VERDICT_CODES = {"pass": 0, "warn": 1, "inconclusive": 2, "fail": 3, "error": 4}
GATE_CODES = {"pass": 0, "warn": 1, "blocked": 2}
STEP = "trustai/step"
_UNSEALED_STAGES = (Stage.DATA.value, Stage.MONITOR.value)  # no card follows their findings


def name(*parts: str) -> str:
    """The stable tracker name of a trustai value: ``trustai/<part>/<part>``."""
    return "/".join(("trustai", *parts))


class Sink(Protocol):
    """Where a tracker sends one training step's values."""

    name: str

    def log(self, step: int, numbers: dict[str, float], texts: dict[str, str]) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Step:
    numbers: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


class FindingTracker:
    """A Governance observer that turns ledger records into tracker values for one Sink."""

    def __init__(self, gov: Governance, sink: Sink):
        self.gov = gov
        self.sink = sink
        self.name = f"tracker.{sink.name}"  # how a failure is named in the ledger's hook.error
        self._lock = threading.Lock()
        self._evidence: dict[int, dict[str, Any]] = {}
        self._pending: dict[int, _Step] = {}

    def __call__(self, record: Record) -> None:
        """Take one evidence, finding or card record (others are ignored)."""
        with self._lock:
            if record.kind == RecordKind.EVIDENCE.value:
                self._evidence[record.seq] = record.payload
            elif record.kind == RecordKind.FINDING.value:
                self._finding(record.payload)
            elif record.kind == RecordKind.CARD.value:
                self._card(record.payload)

    def _finding(self, finding: dict[str, Any]) -> None:
        evidence = self._evidence.pop(finding["evidence_record"]["seq"], {})
        step = (evidence.get("inputs") or {}).get("step") or 0
        check, status = str(finding["check_id"]), str(finding["status"])
        values = self._pending.setdefault(step, _Step())
        for metric, value in (evidence.get("metrics") or {}).items():
            if isinstance(value, bool | int | float) and math.isfinite(value):
                values.numbers[name(check, metric)] = float(value)
        values.numbers[name(check, "verdict")] = float(VERDICT_CODES.get(status, max(VERDICT_CODES.values())))
        values.texts[name(check, "status")] = status
        if finding["stage"] in _UNSEALED_STAGES:
            self._send(step)

    def _card(self, card: dict[str, Any]) -> None:
        step = card.get("step") or 0
        verdict = _sealed_gate(self.gov.run_dir, card)
        values = self._pending.setdefault(step, _Step())
        values.texts[name("card", "digest")] = str(card["card_digest"])
        if verdict is not None:
            values.numbers[name("gate")] = float(GATE_CODES[verdict])
            values.texts[name("gate", "verdict")] = verdict
        self._send(step)

    def _send(self, step: int) -> None:
        values = self._pending.pop(step)
        self.sink.log(step, values.numbers, values.texts)

    def close(self) -> None:
        """Send what no card sealed (a run that ended early) and close the sink."""
        with self._lock:
            for step in sorted(self._pending):
                self._send(step)
            self.sink.close()


def _sealed_gate(run_dir: Path, sealed: dict[str, Any]) -> str | None:
    """The gate the card a ``card`` record (``sealed``, its payload) sealed states: the card's own
    ``governance.gate``, from the card file whose digest the record holds; None when that card cannot be
    read or is not the one the record sealed."""
    checkpoint = Path(str(sealed["checkpoint"]))
    folder = checkpoint if checkpoint.is_absolute() else Path(run_dir) / checkpoint
    try:
        card = json.loads(layout.card_path(folder).read_text(encoding="utf-8"))
        if digest(card) != sealed["card_digest"]:
            return None
        verdict = card["governance"]["gate"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return verdict if isinstance(verdict, str) and verdict in GATE_CODES else None


class WandbSink:
    """The W&B run this process has open (LeRobot's, from ``--wandb.enable=true``), bound at the first
    value: trustai values get ``trustai/step`` as their x axis, so checkpoint audits that land after
    LeRobot logged later steps still chart at their own step."""

    name = "wandb"

    def __init__(self) -> None:
        self._defined = False

    def log(self, step: int, numbers: dict[str, float], texts: dict[str, str]) -> None:
        """Log one step's values into the open W&B run (RuntimeError when none is open)."""
        import wandb

        run = wandb.run
        if run is None:
            raise RuntimeError("no W&B run is open (LeRobot's W&B logging is off or has finished)")
        if not self._defined:
            run.define_metric(STEP, hidden=True)
            run.define_metric("trustai/*", step_metric=STEP)
            self._defined = True
        row = {STEP: step, **numbers, **texts}
        # W&B drops rows whose step is below its current one: such late values take the current row.
        if step >= run.step:
            run.log(row, step=step)
        else:
            run.log(row)

    def close(self) -> None:
        """Nothing to close: the W&B run is LeRobot's, which finishes it."""


class MlflowSink:
    """An MLflow run at MLflow's tracking URI (``MLFLOW_TRACKING_URI``): the active run when there is
    one, else the run tagged with this trustai run's id in ``MLFLOW_EXPERIMENT_NAME`` (default
    ``trustai``), created on the first value and found again when the run resumes."""

    name = "mlflow"

    def __init__(self, gov: Governance):
        self.gov = gov
        self._client: Any = None
        self._run_id: str | None = None
        self._created = False

    def _open(self) -> str:
        import mlflow
        from mlflow import MlflowClient

        self._client = MlflowClient()
        active = mlflow.active_run()
        if active is not None:
            return active.info.run_id
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "trustai")
        found = self._client.get_experiment_by_name(experiment_name)
        experiment = found.experiment_id if found else self._client.create_experiment(experiment_name)
        run_id = self.gov.run_id or ""
        same = self._client.search_runs([experiment], filter_string=f"tags.`trustai.run_id` = '{run_id}'")
        if same:
            return same[0].info.run_id
        self._created = True
        tags = {"trustai.run_id": run_id, "trustai.run_dir": str(Path(self.gov.run_dir).resolve())}
        return self._client.create_run(
            experiment, run_name=Path(self.gov.run_dir).name, tags=tags
        ).info.run_id

    def log(self, step: int, numbers: dict[str, float], texts: dict[str, str]) -> None:
        """Log one step's numbers as metrics at ``step`` and its texts as tags."""
        from mlflow.entities import Metric, RunTag

        if self._run_id is None:
            self._run_id = self._open()
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in numbers.items()]
        metrics.append(Metric(STEP, float(step), stamp, step))
        tags = [RunTag(k, v) for k, v in texts.items()]
        tags += [RunTag(f"{k}/step-{step}", v) for k, v in texts.items()]
        self._client.log_batch(self._run_id, metrics=metrics, tags=tags)

    def close(self) -> None:
        """End the MLflow run if this tracker created it."""
        if self._created and self._run_id is not None:
            self._client.set_terminated(self._run_id)


def parse_trackers(given: str | Sequence[str] | None) -> list[str]:
    """Tracker names from ``wandb,mlflow`` (or a list of names); TrustaiUserError for an unknown one."""
    if not given:
        return []
    names = given.split(",") if isinstance(given, str) else list(given)
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise TrustaiUserError(
            f"unknown tracker {unknown[0]!r}",
            where="--track",
            fix=f"name one or more of {', '.join(TRACKERS)}",
        )
    return list(dict.fromkeys(names))


@contextmanager
def tracking(gov: Governance, trackers: Sequence[str], *, wandb_enabled: bool) -> Iterator[None]:
    """Send ``gov``'s findings to ``trackers`` (names from ``parse_trackers``) while the block runs;
    close them after. TrustaiUserError, before anything runs, for W&B when LeRobot's W&B logging is
    off (``wandb_enabled`` False)."""
    if "wandb" in trackers and not wandb_enabled:
        raise TrustaiUserError(
            "--track wandb needs LeRobot's W&B logging",
            where="lerobot-train flags",
            fix="add --wandb.enable=true (and --wandb.mode=offline to keep the run local)",
        )
    sinks: list[Sink] = [WandbSink() if n == "wandb" else MlflowSink(gov) for n in trackers]
    observers = [FindingTracker(gov, sink) for sink in sinks]
    gov.observers.extend(observers)
    try:
        yield
    finally:
        for observer in observers:
            if observer in gov.observers:  # a tracker that failed was dropped (and recorded)
                gov.observers.remove(observer)
                try:
                    observer.close()
                except Exception as exc:
                    gov.hook_error(observer.name, exc)
