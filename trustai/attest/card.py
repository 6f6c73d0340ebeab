"""Model cards built from the ledger: ``trustai/card.json`` (structured, Model Card Toolkit-like
fields plus governance) and a Hugging Face ``README.md`` (YAML front matter with ``model-index``), both
written into a checkpoint's ``pretrained_model`` folder together with copies of the evidence they cite
(where: ``trustai.layout``).

Every number in the card comes from an evidence record and carries that record's ``{seq, hash}``. A
resumed run's card states the latest ``run.start``: the pack and manifest the run trains under now.

The card binds the checkpoint's identity inside the signature (``run``: the run id, the model folder's
path relative to the run, its step, whether it is the release) and the ledger it cites (``ledger``:
the path from the card's folder, and the head it saw), so a copied, moved or rolled-back checkpoint
no longer verifies (trustai.attest.verify).

The card states its gate by the one gate rule (``trustai.core.gate``: pass, warn or blocked), over the
findings it carries, so it says what ``trustai status``, the dashboard and the trackers say. Its
training data fingerprint is the run manifest's; when that was pending at start-up, it is the one the
data stage's dataset check (``provenance.dataset``) verified, citing that evidence, and until then the
card says it is pending.
"""

import json
import math
import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from trustai import __version__, layout
from trustai.core.canonical import pretty_json
from trustai.core.evidence import Stage, utc_now
from trustai.core.gate import Gate, gate
from trustai.core.ledger import Record
from trustai.core.run_record import EvidenceItem

CARD_SCHEMA = "trustai.attest.card/v2"  # v2: the ``run`` identity section
PROVIDER_TODO = "TO BE COMPLETED BY THE PROVIDER"


def checkpoint_ref(run_dir: Path, folder: Path) -> str:
    """How cards and card records name a model folder: its path relative to the run folder when inside
    it (``checkpoints/000040/pretrained_model``), else its absolute path (e.g. Ray Train storage)."""
    folder, run_dir = Path(folder).resolve(), Path(run_dir).resolve()
    return folder.relative_to(run_dir).as_posix() if folder.is_relative_to(run_dir) else str(folder)


def _belongs(item: EvidenceItem, step: int | None, release: bool) -> bool:
    """Whether evidence goes on the card of the checkpoint at ``step``: the run's data and monitor
    evidence, its own step's train and checkpoint evidence, and release evidence on a release card."""
    return (
        item.stage in (Stage.DATA, Stage.MONITOR)
        or (item.stage == Stage.RELEASE and release)
        or (item.stage in (Stage.TRAIN, Stage.CHECKPOINT) and item.step == step)
    )


@dataclass(frozen=True)
class _Judged:
    """A card's finding as the gate reads it."""

    check_id: str
    severity: str
    status: str


def card_gate(findings: list[dict[str, Any]]) -> Gate:
    """The gate (``trustai.core.gate``) over a card's ``governance.findings``, in the order they were
    judged."""
    return gate(_Judged(f["check_id"], f["severity"], f["status"]) for f in findings)


class FingerprintState(StrEnum):
    """How a run's ledger knows its training dataset's fingerprint."""

    RECORDED = "recorded"  # the run manifest's, from start-up
    VERIFIED = "verified"  # pending at start-up; the dataset check read every byte and confirmed it
    PENDING = "pending"  # pending at start-up; no dataset check evidence yet
    UNCONFIRMED = "not verified"  # pending at start-up; the dataset check did not confirm it
    ABSENT = "not recorded"  # the manifest records none (no dataset, or a run before fingerprints)


@dataclass(frozen=True)
class DatasetFingerprint:
    """The training dataset's fingerprint as a run's ledger establishes it: ``value`` (None unless
    ``state`` is recorded or verified), and ``evidence``, the dataset check's evidence record it rests on
    (verified or not verified; None when the fingerprint is the manifest's or still pending)."""

    value: str | None
    state: FingerprintState
    evidence: Record | None = None


def training_fingerprint(
    manifest: dict[str, Any], start: Record | None, evidence: list[EvidenceItem], dataset_check: str
) -> DatasetFingerprint:
    """The fingerprint of the training dataset the run ``manifest`` (of the ``run.start`` record
    ``start``) names: the manifest's own, else, when it was pending at start-up, the one that
    ``dataset_check``'s latest data-stage evidence since that start verified (among ``evidence``, in
    ledger order). Tolerates an edited payload: what cannot be read is not verified."""
    dataset = manifest.get("dataset") or {}
    recorded = dataset.get("fingerprint")
    if recorded is not None:
        return DatasetFingerprint(recorded, FingerprintState.RECORDED)
    if not ((dataset.get("digests") or {}).get("sources") or {}).get("pending"):
        return DatasetFingerprint(None, FingerprintState.ABSENT)
    after = start.seq if start else 0
    checked = [
        i.record
        for i in evidence
        if i.stage == Stage.DATA and i.payload.get("audit") == dataset_check and i.record.seq > after
    ]
    if not checked:
        return DatasetFingerprint(None, FingerprintState.PENDING)
    latest = checked[-1]
    payload = latest.payload
    rows = (payload.get("tables") or {}).get("fingerprint") or [{}]
    verified = (rows[0] if isinstance(rows, list) and isinstance(rows[0], dict) else {}).get("verified")
    measured = (payload.get("metrics") or {}).get("fingerprint_verified") is True
    if payload.get("error") is None and measured and isinstance(verified, str) and verified:
        return DatasetFingerprint(verified, FingerprintState.VERIFIED, latest)
    return DatasetFingerprint(None, FingerprintState.UNCONFIRMED, latest)


def _training_data(
    manifest: dict[str, Any], start: Record | None, chosen: list[EvidenceItem], dataset_check: str
) -> dict[str, Any]:
    """The card's ``training_data``: the dataset and its fingerprint (``training_fingerprint``), citing
    ``run.start`` and, when the fingerprint was pending at start-up, ``dataset_check``'s evidence
    (``fingerprint_record``); a fingerprint not verified is said in words."""
    found = training_fingerprint(manifest, start, chosen, dataset_check)
    stated = {
        FingerprintState.PENDING: f"pending: verified by {dataset_check}",
        FingerprintState.UNCONFIRMED: f"not verified: {dataset_check} did not confirm it",
    }
    section = {
        "dataset": (manifest.get("dataset") or {}).get("id"),
        "fingerprint": stated.get(found.state, found.value),
        "record": start.cite() if start else None,
    }
    if found.evidence is not None:
        section["fingerprint_record"] = found.evidence.cite()
    return section


def _policy_summary(config_path: Path) -> dict[str, Any]:
    """Read the facts a card states about the policy from LeRobot's config.json."""
    if not config_path.is_file():
        return {"type": None}
    cfg = json.loads(config_path.read_text(encoding="utf-8"))
    feats = cfg.get("input_features", {})
    return {
        "type": cfg.get("type"),
        "inputs": {k: v.get("shape") for k, v in feats.items()},
        "outputs": {k: v.get("shape") for k, v in cfg.get("output_features", {}).items()},
        "chunk_size": cfg.get("chunk_size"),
    }


def _privacy_section(chosen: list[EvidenceItem]) -> dict[str, Any] | None:
    """The card's differential-privacy statement (ε, δ, accountant, privacy unit and what they cover)
    from the latest ``privacy.dp`` evidence among the card's records; None when training was not DP."""
    latest = next(
        (i.record for i in reversed(chosen) if i.payload["audit"] == "privacy.dp" and not i.payload["error"]),
        None,
    )
    if latest is None:
        return None
    metrics, tables = latest.payload["metrics"], latest.payload["tables"]
    mechanism = tables["mechanism"][0]
    keys = ("target_epsilon", "noise_multiplier", "max_grad_norm", "sample_rate", "steps", "budget_exhausted")
    return {
        "epsilon": metrics["epsilon"],
        "delta": metrics["delta"],
        "accountant": mechanism["accountant"],
        "privacy_unit": mechanism["privacy_unit"],
        **{k: metrics[k] for k in keys},
        "frozen_parameters": [row["parameter"] for row in tables["frozen_parameters"]],
        "guarantee": (
            f"({metrics['epsilon']:.4g}, {metrics['delta']:g})-differential privacy of the weights with "
            f"respect to adding or removing one training {mechanism['privacy_unit']} (DP-SGD with Opacus, "
            f"{mechanism['accountant']} accountant). Other statistics in this card, such as training "
            "health, are computed from the raw training data and are not covered."
        ),
        "record": latest.cite(),
    }


def build_card(
    gov: Any, checkpoint_dir: Path, *, step: int | None, release: bool, dataset_check: str
) -> dict[str, Any]:
    """Return the card.json content for ``checkpoint_dir`` from the run's ledger; ``dataset_check`` names
    the audit whose data-stage evidence verifies a fingerprint pending at start-up."""
    run = gov.recorded()
    start, manifest = run.start, run.manifest
    chosen = [item for item in run.evidence if _belongs(item, step, release)]
    metrics, findings, evidence = [], [], []
    for item in chosen:
        ev, fi, p = item.record, item.finding, item.payload
        evidence.append(
            {
                "file": layout.evidence_name(ev.seq, p["check_id"]),
                "record": ev.cite(),
                "artifacts": p["artifacts"],
            }
        )
        for name, value in sorted(p["metrics"].items()):
            metrics.append(
                {
                    "check_id": p["check_id"],
                    "stage": p["stage"],
                    "metric": name,
                    "value": value,
                    "record": ev.cite(),
                }
            )
        if fi is not None:
            f = fi.payload
            findings.append(
                {
                    k: f[k]
                    for k in ("check_id", "audit", "stage", "status", "severity", "message", "references")
                }
                | {"record": fi.cite()}
            )
    decided = card_gate(findings)
    head = run.head
    return {
        "schema": CARD_SCHEMA,
        "created": utc_now(),
        "generator": f"trustai {__version__}",
        "run": {
            "id": run.run_id,
            "checkpoint": checkpoint_ref(gov.run_dir, checkpoint_dir),
            "step": step,
            "release": release,
        },
        "model_details": {
            "name": gov.run_dir.name,
            "policy": _policy_summary(checkpoint_dir / "config.json"),
            "step": step,
            "release": release,
            "framework": "lerobot " + manifest.get("environment", {}).get("packages", {}).get("lerobot", "?"),
            "git": manifest.get("git"),
            "provider": PROVIDER_TODO,
            "license": PROVIDER_TODO,
        },
        "intended_use": {
            "primary_uses": PROVIDER_TODO,
            "primary_users": PROVIDER_TODO,
            "out_of_scope": PROVIDER_TODO,
        },
        "training_data": _training_data(manifest, start, chosen, dataset_check),
        "training": {
            "seed": manifest.get("seed"),
            "config": manifest.get("train_config"),
            "environment": {k: v for k, v in manifest.get("environment", {}).items() if k != "packages"},
        },
        "quantitative_analysis": {"performance_metrics": metrics},
        "privacy": _privacy_section(chosen),
        "governance": {
            "policy_pack": start.payload["policy_pack"] | {"checks": None} if start else None,
            "findings": findings,
            "gate": decided.verdict.value,
            "blocking": list(decided.blocking),
            "warnings": list(decided.warnings),
        },
        "considerations": {
            "limitations": [f"{f['check_id']}: {f['message']}" for f in findings if f["status"] != "pass"],
            "ethical_considerations": PROVIDER_TODO,
        },
        "evidence": evidence,
        "ledger": {
            "path": os.path.relpath(run.ledger_path, layout.card_dir(checkpoint_dir)),
            "head": head.cite() if head else None,
        },
    }


def table_cell(text: str) -> str:
    """``text`` as one Markdown table cell: its lines joined by spaces and ``|`` escaped, so a multi-line
    or ``|``-containing message stays in its cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _index_value(value: Any) -> int | float | str:
    """A metric as the Hub's model-index takes it: booleans as 0/1, a value that is not a finite number
    (NaN, infinity, text) as text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return str(value)


def model_index_metrics(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Every trustai result of a card as a model-index metric: each measured metric
    (``<check>/<metric>``), each finding's verdict (``<check>/verdict``, per stage) and the gate
    (``trustai/gate``)."""
    metrics = [
        {
            "type": f"{m['check_id']}/{m['metric']}",
            "name": f"{m['check_id']} {m['metric']} ({m['stage']})",
            "value": _index_value(m["value"]),
        }
        for m in card["quantitative_analysis"]["performance_metrics"]
        if m["value"] is not None
    ]
    metrics += [
        {
            "type": f"{f['check_id']}/verdict",
            "name": f"{f['check_id']} verdict ({f['stage']}, {f['severity']})",
            "value": f["status"],
        }
        for f in card["governance"]["findings"]
    ]
    gate = card["governance"]["gate"]
    metrics.append({"type": "trustai/gate", "name": "trustai governance gate", "value": gate})
    return metrics


def render_readme(card: dict[str, Any]) -> str:
    """Return the Hugging Face README.md (front matter with model-index) for a card."""
    details = card["model_details"]
    data = card["training_data"]
    dataset = data["dataset"] or "unknown"
    verified = data.get("fingerprint_record")
    verified_by = f" (ledger record {verified['seq']})" if verified else ""
    front = {
        "library_name": "lerobot",
        "pipeline_tag": "robotics",
        "tags": [
            "robotics",
            "lerobot",
            "trustai",
            *([details["policy"]["type"]] if details["policy"]["type"] else []),
        ],
        "datasets": [dataset],
        "model-index": [
            {
                "name": details["name"],
                "results": [
                    {
                        "task": {"type": "robotics", "name": "robot manipulation policy"},
                        "dataset": {"type": dataset, "name": dataset},
                        "metrics": model_index_metrics(card),
                    }
                ],
            }
        ],
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {details['name']} ({details['policy']['type']}, step {details['step']})",
        "",
        f"Governance gate: **{card['governance']['gate']}**. Generated by {card['generator']} from the "
        "signed evidence in `trustai/`; every figure cites its ledger record.",
        "",
        "| check | stage | status | severity | finding | ledger record |",
        "|---|---|---|---|---|---|",
    ]
    for f in card["governance"]["findings"]:
        lines.append(
            f"| {f['check_id']} | {f['stage']} | {f['status']} | {f['severity']} | "
            f"{table_cell(f['message'])} | {f['record']['seq']} `{f['record']['hash'][:12]}` |"
        )
    lines += [
        "",
        "## Intended use",
        "",
        card["intended_use"]["primary_uses"],
        "",
        "## Training data",
        "",
        f"Dataset `{dataset}`, fingerprint `{data['fingerprint'] or 'not recorded'}`{verified_by}.",
        "",
    ]
    if card.get("privacy"):
        lines += ["## Privacy", "", card["privacy"]["guarantee"], ""]
    return "\n".join(lines)


def write_card(
    gov: Any, checkpoint_dir: Path, *, step: int | None, release: bool, dataset_check: str
) -> tuple[Path, dict[str, Any]]:
    """Write card.json, README.md and copies of the cited evidence and artifacts into the checkpoint
    (``dataset_check``: see ``build_card``)."""
    card = build_card(gov, checkpoint_dir, step=step, release=release, dataset_check=dataset_check)
    card_dir = layout.card_dir(checkpoint_dir)
    if card_dir.exists():
        shutil.rmtree(card_dir)
    (card_dir / layout.EVIDENCE_DIR).mkdir(parents=True)
    for item in card["evidence"]:
        # Written from the ledger record, not copied from the run's evidence file: a crash between the
        # record's commit and that file's write would otherwise break every later card of the run.
        record = gov.ledger.get(item["record"]["seq"])
        (card_dir / item["file"]).write_text(pretty_json(record.payload), encoding="utf-8")
        for art in item["artifacts"]:
            (card_dir / art["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(gov.trustai_dir / art["path"], card_dir / art["path"])
    path = layout.card_path(checkpoint_dir)
    path.write_text(pretty_json(card), encoding="utf-8")
    (checkpoint_dir / "README.md").write_text(render_readme(card), encoding="utf-8")
    return path, card
