"""What the dashboard shows of each run, read from the run's ledger (``trustai.core.run_record``) and
status (``trustai.reports.run_status``: checkpoints, findings, gates), and from the cards sealed in
its checkpoints. Nothing here writes: the ledger is opened read-only, files are only read, and a path
is served only when it resolves (links followed) inside the run folder it was asked for.
"""

import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustai.reports.integrity import artifact_intact
from trustai.reports.run_status import CheckpointStatus, RunStatus, status_of

from trustai import layout
from trustai.core.evidence import Stage
from trustai.core.run_record import EvidenceItem, RunLedger
from trustai.errors import TrustaiUserError

MAX_CARD_BYTES = 16 << 20  # a card or README larger than this is not shown
# What the file route serves, by suffix: evidence artifacts, cards and rendered reports. Anything else
# in a run folder (weights, the ledger, optimizer state) is not the dashboard's to hand out.
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".html": "text/html",
    ".json": "application/json",
    ".md": "text/markdown",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".csv": "text/csv",
}
REPORT_SUFFIXES = (".html", ".pdf", ".md")
_STEP_STAGES = (Stage.TRAIN.value, Stage.CHECKPOINT.value, Stage.RELEASE.value)


@dataclass(frozen=True)
class RunView:
    """One run as its ledger stands now."""

    key: int  # the run's place on the command line: its address on the dashboard
    root: Path  # the run folder, resolved
    ledger: RunLedger
    status: RunStatus

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.root.name

    @property
    def head(self) -> int:
        """The seq of the ledger's last record (0 when empty): it changes with every record."""
        return self.ledger.head.seq if self.ledger.head else 0

    @property
    def policy_type(self) -> str | None:
        """The policy type the run trains (``act``, ``diffusion``, ...), from its manifest."""
        config = self.ledger.manifest.get("train_config")
        policy = config.get("policy") if isinstance(config, dict) else None
        kind = policy.get("type") if isinstance(policy, dict) else None
        return str(kind) if kind is not None else None

    @property
    def training(self) -> str:
        """``ended after N steps``, or ``running or stopped`` before the run's end record."""
        return f"ended after {self.status.steps} steps" if self.status.ended else "running or stopped"

    @property
    def first_blocked(self) -> CheckpointStatus | None:
        """The first checkpoint, in step order, whose gate is blocked."""
        return next((c for c in self.status.checkpoints if c.gate.blocked), None)

    def checkpoint(self, name: str) -> CheckpointStatus | None:
        """The checkpoint named ``name`` (``000040``), or None."""
        return next((c for c in self.status.checkpoints if c.name == name), None)

    def evidence(self, finding_seq: int) -> EvidenceItem | None:
        """The evidence item judged by the finding record ``finding_seq``, or None."""
        return next((i for i in self.ledger.evidence if i.finding and i.finding.seq == finding_seq), None)

    def reports(self) -> list[str]:
        """Compliance reports rendered into the run folder (``trustai report -o RUN/...``), as paths
        relative to it: its top level and the folders right below it, trustai's own aside."""
        found = []
        for pattern in ("*report*", "*/*report*"):
            for path in self.root.glob(pattern):
                rel = path.relative_to(self.root)
                if rel.parts[0] in (layout.TRUSTAI_DIR, layout.CHECKPOINTS_DIR):
                    continue
                if path.suffix in REPORT_SUFFIXES and contained(self.root, rel.as_posix()) is not None:
                    found.append(rel.as_posix())
        return sorted(found)


@dataclass(frozen=True)
class MetricLine:
    """One metric of one check over training steps, with the finding's status at each step."""

    metric: str
    steps: list[int]
    values: list[float | None]
    statuses: list[str]


@dataclass(frozen=True)
class CheckSeries:
    """A check's numeric metrics over the steps it was measured at, and its pack's thresholds."""

    check_id: str
    severity: str
    lines: list[MetricLine]
    thresholds: dict[str, dict[str, float]]  # metric -> {"min": x} and/or {"max": y}


@dataclass(frozen=True)
class ArtifactView:
    """A file an audit produced, as the dashboard links it."""

    path: str  # relative to the run folder
    media_type: str
    sha256: str
    intact: bool  # present inside the run's trustai folder with the recorded sha256

    @property
    def kind(self) -> str:
        """``image``, ``html`` or ``file``: how it is shown inline."""
        if self.media_type.startswith("image/") and Path(self.path).suffix in MEDIA_TYPES:
            return "image"
        return "html" if self.media_type == "text/html" else "file"


@dataclass(frozen=True)
class CardView:
    """A checkpoint's sealed card and Hugging Face README, or why they cannot be shown."""

    card: dict[str, Any] | None
    readme: str | None
    problem: str | None


@dataclass(frozen=True)
class DiffRow:
    """One thing two cards state, side by side."""

    name: str
    a: Any
    b: Any

    @property
    def changed(self) -> bool:
        """True when the two cards differ on it."""
        return self.a != self.b


def contained(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it resolves (links followed) to a regular file inside ``root``, else None."""
    if not rel or "\x00" in rel or Path(rel).is_absolute():
        return None
    try:
        target = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a link loop, a name the filesystem refuses
        return None
    return target if target.is_relative_to(root.resolve()) and target.is_file() else None


def _read_bounded(path: Path) -> str:
    """The text of a regular file of at most MAX_CARD_BYTES; ValueError saying why not."""
    with path.open("rb") as f:
        data = f.read(MAX_CARD_BYTES + 1)
    if len(data) > MAX_CARD_BYTES:
        raise ValueError(f"larger than {MAX_CARD_BYTES} bytes (not shown)")
    return data.decode("utf-8", errors="replace")


def _ledger_fingerprint(root: Path) -> tuple:
    """What changes when the run's ledger or checkpoints change: the ledger and its write-ahead log
    (size, mtime) and the checkpoint folders' names."""
    ledger = layout.ledger_path(root)
    stats = []
    for path in (ledger, ledger.with_name(ledger.name + "-wal")):
        try:
            info = path.stat()
            stats.append((info.st_size, info.st_mtime_ns))
        except OSError:
            stats.append(None)
    checkpoints = root / layout.CHECKPOINTS_DIR
    names = tuple(sorted(os.listdir(checkpoints))) if checkpoints.is_dir() else ()
    return (*stats, names)


class Runs:
    """The runs a dashboard serves, each read again only when its ledger or checkpoints changed."""

    def __init__(self, run_dirs: Sequence[Path]):
        """Raises TrustaiUserError when a folder is not a governed run (no ``trustai/ledger.sqlite``)."""
        self.roots: list[Path] = []
        for given in run_dirs:
            root = Path(given).resolve()
            if not layout.ledger_path(root).is_file():
                raise TrustaiUserError(
                    "not a governed run: no trustai ledger here",
                    where=str(given),
                    fix="pass output folders of governed runs (each holds trustai/ledger.sqlite)",
                )
            if root not in self.roots:
                self.roots.append(root)
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[tuple, RunView]] = {}

    def __len__(self) -> int:
        return len(self.roots)

    def view(self, key: int) -> RunView:
        """The run at ``key`` as its ledger stands now (IndexError for no such run)."""
        root = self.roots[key]
        fingerprint = _ledger_fingerprint(root)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        ledger = RunLedger.load(layout.ledger_path(root))
        view = RunView(key, root, ledger, status_of(ledger))
        with self._lock:
            self._cache[key] = (fingerprint, view)
        return view


def _number(value: Any) -> float | None:
    """A metric as a plotted number: booleans as 0/1, anything not finite or not a number as None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def check_series(view: RunView) -> list[CheckSeries]:
    """Each check measured at training steps (train, checkpoint and release stages), with a line per
    numeric metric over those steps (the latest evidence of each step) and its pack's thresholds."""
    latest: dict[str, dict[int, EvidenceItem]] = {}
    for item in view.ledger.evidence:
        if item.stage in _STEP_STAGES and isinstance(item.step, int):
            latest.setdefault(item.check_id, {})[item.step] = item
    checks = {c.id: c for c in view.status.checks}
    series = []
    for check_id, by_step in latest.items():
        steps = sorted(by_step)
        metrics = sorted({m for i in by_step.values() for m in i.payload.get("metrics") or {}})
        lines = []
        for metric in metrics:
            values = [_number((by_step[s].payload.get("metrics") or {}).get(metric)) for s in steps]
            if any(v is not None for v in values):
                lines.append(MetricLine(metric, steps, values, [by_step[s].status for s in steps]))
        check = checks.get(check_id)
        thresholds = (
            {m: t.model_dump(exclude_none=True) for m, t in check.thresholds.items()} if check else {}
        )
        if lines:
            series.append(CheckSeries(check_id, str(check.severity) if check else "?", lines, thresholds))
    return series


def artifacts(view: RunView, item: EvidenceItem) -> list[ArtifactView]:
    """The files an evidence record lists, each checked against its recorded sha256."""
    trustai_dir = layout.trustai_dir(view.root)
    found = []
    for artifact in item.payload.get("artifacts") or []:
        if not isinstance(artifact, dict):
            continue
        found.append(
            ArtifactView(
                path=f"{layout.TRUSTAI_DIR}/{artifact.get('path')}",
                media_type=str(artifact.get("media_type", "")),
                sha256=str(artifact.get("sha256", "")),
                intact=artifact_intact(trustai_dir, artifact),
            )
        )
    return found


def card_of(view: RunView, checkpoint: CheckpointStatus) -> CardView:
    """The checkpoint's card.json and README.md, read only when its folder lies inside the run."""
    folder = Path(checkpoint.folder)
    if folder.is_absolute():
        return CardView(None, None, f"{folder}: outside the run folder (not read)")
    card_file = contained(view.root, (folder / layout.MODEL_CARD).as_posix())
    if card_file is None:
        return CardView(None, None, "no card sealed in this checkpoint yet")
    try:
        card = json.loads(_read_bounded(card_file))
    except (ValueError, RecursionError) as exc:
        return CardView(None, None, f"{layout.MODEL_CARD}: unreadable ({exc})")
    readme_file = contained(view.root, (folder / "README.md").as_posix())
    try:
        readme = _read_bounded(readme_file) if readme_file else None
    except ValueError as exc:
        readme = str(exc)
    return CardView(card if isinstance(card, dict) else None, readme, None)


def _card_facts(card: dict[str, Any] | None) -> tuple[dict, dict, Any]:
    """(check, stage, metric) -> value, (check, stage) -> status, and the gate a card states."""
    if not isinstance(card, dict):
        return {}, {}, None
    analysis = card.get("quantitative_analysis")
    metrics = analysis.get("performance_metrics") if isinstance(analysis, dict) else None
    governance = card.get("governance") if isinstance(card.get("governance"), dict) else {}
    values = {
        (m.get("check_id"), m.get("stage"), m.get("metric")): m.get("value")
        for m in (metrics if isinstance(metrics, list) else [])
        if isinstance(m, dict)
    }
    findings = governance.get("findings")
    statuses = {
        (f.get("check_id"), f.get("stage")): f.get("status")
        for f in (findings if isinstance(findings, list) else [])
        if isinstance(f, dict)
    }
    return values, statuses, governance.get("gate")


def card_diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """What two cards state side by side: their gates, each finding's status and each metric."""
    values_a, statuses_a, gate_a = _card_facts(a)
    values_b, statuses_b, gate_b = _card_facts(b)

    def rows(left: dict, right: dict) -> list[DiffRow]:
        keys = sorted({*left, *right}, key=lambda k: tuple(str(p) for p in k))
        return [DiffRow(" / ".join(str(p) for p in k), left.get(k, "—"), right.get(k, "—")) for k in keys]

    return {
        "gate": DiffRow("gate", gate_a, gate_b),
        "findings": rows(statuses_a, statuses_b),
        "metrics": rows(values_a, values_b),
    }
