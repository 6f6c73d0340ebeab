"""A Datasheet for Datasets (Gebru et al., 2021) of a LeRobot dataset: the seven sections
(motivation, composition, collection process, preprocessing/cleaning/labelling, uses, distribution,
maintenance), each question either answered from the dataset itself (meta/info.json, tasks, episode
metadata and statistics, data-audit metrics) or marked for the provider to complete.

The same content renders to JSON (structured, for tools) and Markdown (for people); questions the
provider still has to answer carry ``PROVIDER_TODO`` in both.

The datasheet never re-reads a governed run's dataset for its fingerprint: it states the fingerprint
the run recorded at start-up, or, when that was pending (large files not read before the first step,
``trustai.lerobot.dataset_digests``), where the verified one is recorded: the ``provenance.dataset``
check of the same data stage, which reads every byte.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trustai.errors import TrustaiUserError
from trustai.lerobot.dataset_digests import VERIFYING_AUDIT
from trustai.lerobot.datasets import DatasetInfo, dataset_fingerprint, episode_lengths, task_names

PROVIDER_TODO = "[PROVIDER TO COMPLETE]"

# Every question, in datasheet order: (section, id, question). Those the dataset can answer are
# auto-filled; the provider answers the rest in an answers file.
QUESTIONS = [
    ("Motivation", "purpose", "For what purpose was the dataset created? Which task or gap does it address?"),
    ("Motivation", "creators", "Who created the dataset, on behalf of which entity, and who funded it?"),
    ("Composition", "instances", "What do the instances represent?"),
    ("Composition", "totals", "How many instances are there?"),
    ("Composition", "features", "What data does each instance consist of?"),
    ("Composition", "feature_statistics", "What are the value ranges of the recorded signals?"),
    ("Composition", "tasks", "Which tasks (language instructions) does it cover?"),
    ("Composition", "quality", "Are there errors, sources of noise or redundancies?"),
    (
        "Composition",
        "personal_data",
        "Does it contain data that might be personal or confidential (faces, contact details in "
        "instructions)?",
    ),
    (
        "Collection process",
        "collection",
        "How was the data collected (teleoperation device, scripted policy, human demonstration), by whom, "
        "and were they compensated?",
    ),
    ("Collection process", "timeframe", "Over what timeframe and at which sites was the data collected?"),
    (
        "Collection process",
        "consent",
        "Were the people recorded (operators, bystanders) informed, and did they consent? How can consent be "
        "revoked? Was a data protection impact assessment carried out?",
    ),
    (
        "Collection process",
        "sampling",
        "Is this all the data recorded, or a selection? How were episodes selected, and were failed or "
        "aborted episodes removed?",
    ),
    ("Collection process", "sensors", "Which sensors and rates were recorded?"),
    (
        "Preprocessing, cleaning, labelling",
        "preprocessing",
        "What preprocessing, cleaning or labelling was done (cropping, re-timing, task annotation), and is "
        "the raw data kept?",
    ),
    (
        "Uses",
        "intended_uses",
        "What is the dataset intended to train or evaluate, for which robots and settings?",
    ),
    ("Uses", "out_of_scope", "What should it not be used for? Which settings does it not represent?"),
    ("Distribution", "license", "Under which licence or terms is the dataset distributed, and to whom?"),
    ("Distribution", "fingerprint", "How can a copy be checked against the version documented here?"),
    (
        "Maintenance",
        "maintainer",
        "Who maintains the dataset, how can they be contacted, and how are errata, updates and deletion "
        "requests handled?",
    ),
]
# Questions answered by a data audit's metrics when that audit ran on the dataset.
AUDIT_ANSWERS = {"data.quality": "quality", "privacy.pii": "personal_data"}


@dataclass
class Entry:
    """One datasheet question and its answer; ``source`` says who answered it."""

    section: str
    id: str
    question: str
    answer: Any = None
    source: str = "todo"  # "dataset" (auto-filled), "provider" (answers file) or "todo"


@dataclass
class Datasheet:
    """A datasheet: its entries, in section order."""

    title: str
    entries: list[Entry] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many questions were auto-filled, answered by the provider, and are still to complete."""
        return {
            "questions": len(self.entries),
            "auto_filled": sum(e.source == "dataset" for e in self.entries),
            "provider_answered": sum(e.source == "provider" for e in self.entries),
            "to_complete": sum(e.source == "todo" for e in self.entries),
        }

    def to_json(self) -> dict[str, Any]:
        """The structured datasheet: title, counts and every entry (todo answers are PROVIDER_TODO)."""
        entries = [
            {**asdict(e), "answer": PROVIDER_TODO if e.source == "todo" else e.answer} for e in self.entries
        ]
        return {"title": self.title, "counts": self.counts(), "entries": entries}

    def to_markdown(self) -> str:
        """The datasheet as Markdown: one heading per section, one sub-heading per question."""
        lines = [f"# Datasheet: {self.title}", ""]
        counts = self.counts()
        lines += [
            f"{counts['auto_filled']} answers were filled in from the dataset itself, "
            f"{counts['provider_answered']} by the provider; {counts['to_complete']} are marked "
            f"{PROVIDER_TODO}.",
            "",
        ]
        section = None
        for entry in self.entries:
            if entry.section != section:
                section = entry.section
                lines += [f"## {section}", ""]
            lines += [f"### {entry.question}", "", _markdown(entry), ""]
        return "\n".join(lines)


def _markdown(entry: Entry) -> str:
    if entry.source == "todo":
        return f"**{PROVIDER_TODO}**"
    answer = entry.answer
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        header = list(answer[0])
        rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        rows += ["| " + " | ".join(_cell(row.get(k)) for k in header) + " |" for row in answer]
        return "\n".join(rows)
    if isinstance(answer, dict):
        return "\n".join(f"- **{k}**: {_cell(v)}" for k, v in answer.items())
    suffix = " _(auto-filled from the dataset)_" if entry.source == "dataset" else ""
    return f"{answer}{suffix}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def load_answers(path: Path | str | None) -> dict[str, str]:
    """Provider answers from a YAML or JSON mapping of question id to answer text ({} when no path)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrustaiUserError(f"cannot read provider answers ({exc})", where=str(path)) from exc
    known = {qid for _, qid, _ in QUESTIONS}
    if not isinstance(data, dict) or not set(data) <= known:
        raise TrustaiUserError(
            "provider answers must map question ids to text",
            where=str(path),
            fix=f"use the ids: {', '.join(sorted(known))}",
        )
    return {str(k): str(v) for k, v in data.items() if v not in (None, "")}


def _vector_stats(info: DatasetInfo) -> list[dict[str, Any]]:
    """Mean/std/min/max of every float vector dimension from meta/stats.json (empty when absent)."""
    path = info.root / "meta" / "stats.json"
    if not path.is_file():
        return []
    stats = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for key, feature in info.features.items():
        if key not in stats or not str(feature.get("dtype", "")).startswith("float"):
            continue
        names = feature.get("names") if isinstance(feature.get("names"), list) else None
        values = {s: np.ravel(stats[key][s]) for s in ("mean", "std", "min", "max") if s in stats[key]}
        for i in range(len(values.get("mean", []))):
            label = names[i] if names and i < len(names) else str(i)
            rows.append({"feature": f"{key}/{label}", **{s: float(v[i]) for s, v in values.items()}})
    return rows


def _dataset_answers(
    info: DatasetInfo, fingerprint: str | None, manifest: dict[str, Any] | None
) -> dict[str, Any]:
    """Answers the dataset itself gives: meta/info.json, tasks, episode lengths, statistics, and its
    fingerprint as the run knows it (``fingerprint_answer``)."""
    lengths = np.array(list(episode_lengths(info.root).values()) or [0], dtype=np.float64)
    tasks = task_names(info.root)
    robot = f"robot type {info.robot_type}" if info.robot_type else "robot type not recorded"
    return {
        "instances": f"Episodes recorded at {info.fps} frames per second ({robot}) in LeRobot dataset "
        f"format {info.codebase_version}; each frame holds the features below.",
        "totals": {
            "episodes": info.total_episodes,
            "frames": info.total_frames,
            "tasks": len(tasks),
            "hours": round(info.total_frames / info.fps / 3600, 4),
            "episode length min / median / max (frames)": (
                f"{int(lengths.min())} / {float(np.median(lengths)):g} / {int(lengths.max())}"
            ),
        },
        "features": [
            {"feature": key, "dtype": ft.get("dtype"), "shape": ft.get("shape"), "names": ft.get("names")}
            for key, ft in info.features.items()
        ],
        "feature_statistics": _vector_stats(info),
        "tasks": [{"task_index": index, "task": text} for index, text in sorted(tasks.items())],
        "sensors": {
            "robot_type": info.robot_type,
            "fps": info.fps,
            "image cameras": info.image_keys,
            "video cameras": info.video_keys,
        },
        "fingerprint": fingerprint_answer(fingerprint, manifest),
    }


def fingerprint_answer(fingerprint: str | None, manifest: dict[str, Any] | None) -> str:
    """How a copy is checked against this dataset: the trustai fingerprint when known; else (a governed
    run whose start-up left some file's digest pending) which check records the verified fingerprint and
    where, with how many files were pending according to the run manifest."""
    what = "trustai dataset fingerprint (sha256 over meta/info.json and every data/, meta/ and videos/ file)"
    fingerprint = fingerprint or ((manifest or {}).get("dataset") or {}).get("fingerprint")
    if fingerprint is not None:
        return f"{what}: {fingerprint}"
    sources = ((manifest or {}).get("dataset") or {}).get("digests") or {}
    pending = (sources.get("sources") or {}).get("pending")
    files = len(sources.get("files") or [])
    why = f"{pending} of {files} files had" if pending else "some file had"
    return (
        f"{what}: pending when this datasheet was written ({why} no trusted digest at start-up and was not "
        f"read before training; see the run manifest's dataset.digests). The {VERIFYING_AUDIT} check of "
        "this data stage reads every byte and records the verified fingerprint in its evidence (table "
        "fingerprint, column verified) in the run's ledger; the model cards state it as "
        "training_data.fingerprint."
    )


def build_datasheet(
    info: DatasetInfo,
    *,
    fingerprint: str | None,
    manifest: dict[str, Any] | None,
    audit_metrics: dict[str, dict[str, Any]],
    answers: dict[str, str],
) -> Datasheet:
    """Fill a datasheet for the dataset at ``info.root``.

    ``fingerprint`` is the dataset's fingerprint as the run knows it and ``manifest`` the run's manifest:
    within a governed run (a manifest) the dataset is never re-read for it, and a fingerprint still
    pending is answered by naming the check that verifies it; outside a run (no manifest) nothing else
    fingerprints the dataset, so it is read here. ``audit_metrics`` maps an audit name
    (``data.quality``, ``privacy.pii``) to the metrics it measured on this dataset; ``answers`` holds the
    provider's answers by question id. A question is answered from the dataset when it can be, else
    from ``answers``, else marked PROVIDER_TODO.
    """
    if fingerprint is None and manifest is None:
        fingerprint = dataset_fingerprint(info.root)
    facts = _dataset_answers(info, fingerprint, manifest)
    for audit, qid in AUDIT_ANSWERS.items():
        if audit in audit_metrics:
            facts[qid] = {"measured by": audit, **audit_metrics[audit]}
    sheet = Datasheet(title=info.root.name)
    for section, qid, question in QUESTIONS:
        if qid in facts:
            sheet.entries.append(Entry(section, qid, question, facts[qid], "dataset"))
        elif qid in answers:
            sheet.entries.append(Entry(section, qid, question, answers[qid], "provider"))
        else:
            sheet.entries.append(Entry(section, qid, question, None, "todo"))
    return sheet
