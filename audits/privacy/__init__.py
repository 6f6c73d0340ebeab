"""Privacy audits: personal data in a dataset (``privacy.pii``), how much a trained policy gives
away about the episodes it was trained on (``privacy.membership_inference``), and the (ε, δ) a
differentially private training run has spent (``privacy.dp``)."""

from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel, ConfigDict, Field
from trustai.audits.privacy.dp_budget import PRIVACY_UNIT, DPParams, DPState, dp_epsilon
from trustai.audits.privacy.membership import AttackModel, art_attack, threshold_attack
from trustai.audits.privacy.pii import TEXT_KINDS, face_detector, scan_text

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.errors import TrustaiUserError
from trustai.lerobot.datasets import (
    DatasetInfo,
    data_files,
    episode_lengths,
    open_dataset_meta,
    resolve_dataset_root,
    task_names,
)
from trustai.lerobot.frames import Plan, even_sample, iter_frames, rgb_cameras
from trustai.lerobot.policy_batches import audit_policy, iter_policy_batches
from trustai.runtime.file_map import map_files


class PiiParams(BaseModel):
    """Parameters of ``privacy.pii``."""

    model_config = ConfigDict(extra="forbid")

    max_frames: int = Field(
        2000, ge=0, description="frames decoded at most (every camera of each), spread evenly"
    )
    cameras: list[str] | None = Field(None, description="cameras to scan (default: every RGB camera)")
    scale_factor: float = Field(1.1, gt=1, description="Haar cascade image-pyramid step")
    min_neighbors: int = Field(5, ge=1, description="Haar cascade detections needed to accept a face")
    min_face_px: int = Field(20, ge=8, description="smallest face side, in pixels")
    max_listed_frames: int = Field(1000, ge=0, description="flagged frames listed at most (all are counted)")
    use_ray: bool = Field(False, description="scan each frame file as a Ray task (same result)")


def _chosen_cameras(info: DatasetInfo, wanted: list[str] | None) -> list[str]:
    cameras = rgb_cameras(info)
    if wanted is None:
        return cameras
    unknown = sorted(set(wanted) - set(cameras))
    if unknown:
        raise TrustaiUserError(
            f"cameras {unknown} are not RGB cameras of this dataset",
            where=str(info.root),
            fix=f"use some of: {', '.join(cameras) or '(none)'}",
        )
    return wanted


@dataclass
class _FaceScan:
    """Per-episode counts of a face scan, and the first flagged (frame, camera) pairs."""

    checked: Counter[int] = field(default_factory=Counter)  # frames decoded
    frames_with_faces: Counter[int] = field(default_factory=Counter)
    faces: Counter[int] = field(default_factory=Counter)
    listed: list[dict[str, Any]] = field(default_factory=list)


def _faces_of_file(
    path: Path, *, info: DatasetInfo, cameras: list[str], plan: Plan, params: PiiParams
) -> _FaceScan:
    """The face scan of the planned frames stored in one frame file (the map step)."""
    detector = face_detector(params.scale_factor, params.min_neighbors, params.min_face_px)
    scan = _FaceScan()
    for frame in iter_frames(info, plan, cameras, files=[path]):
        scan.checked[frame.episode] += 1
        found = {camera: detector.detect(frame.images[camera]) for camera in cameras}
        found = {camera: boxes for camera, boxes in found.items() if boxes}
        if found:
            scan.frames_with_faces[frame.episode] += 1
        for camera, boxes in found.items():
            scan.faces[frame.episode] += len(boxes)
            if len(scan.listed) < params.max_listed_frames:
                scan.listed.append(
                    {
                        "episode_index": frame.episode,
                        "frame_index": frame.frame,
                        "camera": camera,
                        "faces": len(boxes),
                        "boxes": [list(b) for b in boxes],
                    }
                )
    return scan


def _merge_faces(parts: list[_FaceScan], max_listed: int) -> _FaceScan:
    """The per-file face scans, in file order, as one scan of the whole dataset (the merge step)."""
    merged = _FaceScan()
    for part in parts:
        merged.checked.update(part.checked)
        merged.frames_with_faces.update(part.frames_with_faces)
        merged.faces.update(part.faces)
        merged.listed += part.listed[: max_listed - len(merged.listed)]
    return merged


def _scan_faces(info: DatasetInfo, cameras: list[str], params: PiiParams) -> _FaceScan:
    if not cameras:
        return _FaceScan()
    plan = even_sample(episode_lengths(info.root), params.max_frames)
    scan = partial(_faces_of_file, info=info, cameras=cameras, plan=plan, params=params)
    return _merge_faces(
        map_files(scan, data_files(info.root), use_ray=params.use_ray), params.max_listed_frames
    )


def _scan_tasks(info: DatasetInfo) -> tuple[list[dict[str, Any]], Counter[str], dict[int, int]]:
    """Flagged task rows (kinds and spans only), matches per kind, and matches per episode."""
    rows, kinds = [], Counter[str]()
    per_text: dict[str, int] = {}
    for index, text in sorted(task_names(info.root).items()):
        matches = scan_text(text)
        if matches:
            kinds.update(m.kind for m in matches)
            per_text[text] = len(matches)
            rows.append(
                {
                    "task_index": index,
                    "kinds": sorted({m.kind for m in matches}),
                    "spans": [[m.kind, m.start, m.end] for m in matches],
                }
            )
    per_episode: dict[int, int] = {}
    for path in sorted((info.root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(path, columns=["episode_index", "tasks"]).to_pydict()
        for episode, texts in zip(table["episode_index"], table["tasks"], strict=True):
            per_episode[episode] = sum(per_text.get(t, 0) for t in texts)
    return rows, kinds, per_episode


# What a face scan measures: undecided when no frame was decoded.
FACE_METRICS = ("faces", "frames_with_faces", "episodes_with_faces", "episodes_with_personal_data")


@register
class PersonalData(Audit):
    """Personal data in a LeRobot dataset: faces in camera frames and personal-data patterns (emails,
    phone numbers, IBANs, payment cards, IP addresses) in task texts."""

    name = "privacy.pii"
    version = "1"
    stages = frozenset({Stage.DATA, Stage.MONITOR})
    Params = PiiParams
    metrics = declare(
        {
            "frames_checked": Metric("count", "higher_is_better", "frames decoded (every chosen camera)"),
            "cameras_checked": Metric("count", "higher_is_better", "cameras scanned for faces"),
            "faces": Metric("count", "lower_is_better", "faces detected"),
            "frames_with_faces": Metric("count", "lower_is_better", "frames with a face on any camera"),
            "episodes_with_faces": Metric("count", "lower_is_better", "episodes with a face"),
            "tasks_checked": Metric("count", "neutral", "task texts scanned"),
            "tasks_with_personal_data": Metric("count", "lower_is_better", "task texts with personal data"),
            "personal_data_matches": Metric(
                "count", "lower_is_better", "personal-data matches in task texts"
            ),
            "episodes_with_personal_data": Metric(
                "count", "lower_is_better", "episodes with faces or personal data in their tasks"
            ),
        },
        {
            f"text_{kind}": Metric("count", "lower_is_better", f"{kind} matches in task texts")
            for kind in TEXT_KINDS
        },
    )

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Scan an evenly spread sample of at most ``max_frames`` frames (every chosen camera) for
        faces, and every task text for personal-data patterns. Streams the dataset.

        Metrics: ``PersonalData.metrics``; when the dataset has cameras but no frame was decoded, the
        face metrics (``FACE_METRICS``) are inconclusive. Tables: ``flagged_frames``
        (episode_index, frame_index, camera, faces, boxes; at most max_listed_frames rows),
        ``flagged_tasks`` (task_index, kinds, spans: never the matched text), ``flagged_episodes``
        (per-episode counts, flagged episodes only).
        """
        assert isinstance(params, PiiParams)
        info = open_dataset_meta(resolve_dataset_root(ctx.dataset))
        cameras = _chosen_cameras(info, params.cameras)
        faces = _scan_faces(info, cameras, params)
        task_rows, kinds, text_hits = _scan_tasks(info)
        episodes = sorted({e for e, n in text_hits.items() if n} | set(faces.frames_with_faces))
        episode_rows = [
            {
                "episode_index": e,
                "frames_checked": faces.checked[e],
                "frames_with_faces": faces.frames_with_faces[e],
                "faces": faces.faces[e],
                "task_personal_data_matches": text_hits.get(e, 0),
            }
            for e in episodes
        ]
        metrics: dict[str, float | int | bool | None] = {
            "frames_checked": faces.checked.total(),
            "cameras_checked": len(cameras),
            "faces": faces.faces.total(),
            "frames_with_faces": faces.frames_with_faces.total(),
            "episodes_with_faces": len(faces.frames_with_faces),
            "tasks_checked": len(task_names(info.root)),
            "tasks_with_personal_data": len(task_rows),
            "personal_data_matches": kinds.total(),
            **{f"text_{kind}": kinds[kind] for kind in TEXT_KINDS},
            "episodes_with_personal_data": len(episodes),
        }
        tables = {
            "flagged_frames": faces.listed,
            "flagged_tasks": task_rows,
            "flagged_episodes": episode_rows,
        }
        # Cameras whose frames were never decoded were not looked at: "no face" there is not a finding.
        unseen = None
        if cameras and not faces.checked:
            unseen = (
                f"no frame of camera(s) {', '.join(cameras)} was decoded (max_frames {params.max_frames}), "
                "so faces there would go unseen"
            )
        return Measurement(
            metrics=metrics,
            tables=tables,
            inconclusive=unseen,
            inconclusive_metrics=list(FACE_METRICS) if unseen else None,
        )


class MembershipParams(BaseModel):
    """Parameters of ``privacy.membership_inference``."""

    model_config = ConfigDict(extra="forbid")

    train_episodes: list[int] | None = Field(
        None, description="episodes the policy trained on (default: the run's training split)"
    )
    holdout_episodes: list[int] | None = Field(
        None, description="episodes it never saw (default: every other episode of the dataset)"
    )
    max_samples: int = Field(64, ge=4, description="frames sampled on each side (members, non-members)")
    attack_model: AttackModel = Field("rf", description="ART attack model: rf, gb, lr or dt")
    batch_size: int = Field(16, ge=1)
    device: str = "cpu"


def _training_episodes(ctx: AuditContext) -> list[int] | None:
    """The training split as the stage knows it: a LeRobotDataset's episode selection, else the
    ``dataset.episodes`` of the run's LeRobot train config; None when training used every episode."""
    selected = getattr(ctx.dataset, "episodes", None)
    if selected is not None:
        return [int(e) for e in selected]
    config = ((ctx.manifest or {}).get("train_config") or {}).get("dataset") or {}
    episodes = config.get("episodes")
    return [int(e) for e in episodes] if episodes is not None else None


def _split(ctx: AuditContext, params: MembershipParams, known: set[int]) -> tuple[list[int], list[int]]:
    train = params.train_episodes if params.train_episodes is not None else _training_episodes(ctx)
    holdout = params.holdout_episodes
    if train is None:
        train = sorted(known - set(holdout or []))
    if holdout is None:
        holdout = sorted(known - set(train))
    unknown = sorted((set(train) | set(holdout)) - known)
    if unknown:
        raise TrustaiUserError(
            f"episodes {unknown} are not in the dataset (it has {len(known)} episodes)",
            fix="name episodes that exist in train_episodes / holdout_episodes",
        )
    if set(train) & set(holdout):
        raise TrustaiUserError(
            f"episodes {sorted(set(train) & set(holdout))} are both training and held-out episodes",
            fix="make train_episodes and holdout_episodes disjoint",
        )
    if not train:
        raise TrustaiUserError(
            "membership inference needs episodes the policy trained on; there are no training episodes",
            fix="name them in train_episodes, or leave holdout_episodes to the episodes it never saw",
        )
    return sorted(train), sorted(holdout)


@register
class MembershipInference(Audit):
    """How well an attacker can tell the episodes a policy trained on from episodes it never saw,
    from the policy's per-sample loss: the loss-threshold attack and ART's learned black-box attack."""

    name = "privacy.membership_inference"
    version = "1"
    stages = frozenset({Stage.CHECKPOINT, Stage.RELEASE})
    Params = MembershipParams
    metrics = declare(
        {
            "loss_threshold_auc": Metric(
                "AUC", "lower_is_better", "loss-threshold attack AUC (0.5: learns nothing)"
            ),
            "loss_threshold_tpr_at_1pct_fpr": Metric(
                "fraction",
                "lower_is_better",
                "loss-threshold attack true-positive rate at 1% false positives",
            ),
            "art_blackbox_auc": Metric(
                "AUC", "lower_is_better", "ART black-box attack AUC (0.5: learns nothing)"
            ),
            "art_blackbox_tpr_at_1pct_fpr": Metric(
                "fraction", "lower_is_better", "ART black-box attack true-positive rate at 1% false positives"
            ),
            "member_frames": Metric("count", "neutral", "frames sampled from training episodes"),
            "non_member_frames": Metric("count", "neutral", "frames sampled from held-out episodes"),
            "member_loss_mean": Metric("loss", "neutral", "mean per-sample loss on training frames"),
            "non_member_loss_mean": Metric("loss", "neutral", "mean per-sample loss on held-out frames"),
            "loss_gap": Metric("loss", "lower_is_better", "non_member_loss_mean minus member_loss_mean"),
        }
    )

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Compute the policy's loss on up to ``max_samples`` frames of the training episodes and of
        held-out episodes, then attack.

        Metrics: ``MembershipInference.metrics``; the loss-threshold attack uses every sampled frame,
        ART's MembershipInferenceBlackBox (input_type="loss") fits on half and scores the other half.
        Inconclusive, with no metrics, when there are no held-out episodes (the policy trained on every
        episode): without non-members there is no attack to measure. Table ``episodes``: mean loss
        per episode.
        """
        assert isinstance(params, MembershipParams)
        info = open_dataset_meta(resolve_dataset_root(ctx.dataset))
        lengths = episode_lengths(info.root)
        train, holdout = _split(ctx, params, set(lengths))
        if not holdout:
            return Measurement(
                inconclusive="no held-out episodes: the policy trained on every episode of this dataset "
                "(train on a subset with LeRobot's --dataset.episodes, or pass holdout_episodes)"
            )
        policy = audit_policy(ctx, params.device)
        losses: dict[int, list[float]] = {}
        for side in (train, holdout):
            plan = even_sample({e: lengths[e] for e in side}, params.max_samples)
            for batch in iter_policy_batches(info, policy, plan, params.batch_size):
                with torch.no_grad():
                    values = policy.per_sample_loss({**batch.observation, **batch.targets})
                for (episode, _), loss in zip(batch.keys, values.tolist(), strict=True):
                    losses.setdefault(episode, []).append(loss)
        members = np.array([v for e in train for v in losses.get(e, [])])
        non_members = np.array([v for e in holdout for v in losses.get(e, [])])
        threshold = threshold_attack(members, non_members)
        learned = art_attack(members, non_members, params.attack_model, seed=ctx.seed)
        metrics: dict[str, float | int | bool | None] = {
            "loss_threshold_auc": threshold.auc,
            "loss_threshold_tpr_at_1pct_fpr": threshold.tpr_at_low_fpr,
            "art_blackbox_auc": learned.auc,
            "art_blackbox_tpr_at_1pct_fpr": learned.tpr_at_low_fpr,
            "member_frames": len(members),
            "non_member_frames": len(non_members),
            "member_loss_mean": float(members.mean()),
            "non_member_loss_mean": float(non_members.mean()),
            "loss_gap": float(non_members.mean() - members.mean()),
        }
        rows = [
            {
                "episode_index": e,
                "split": "train" if e in train else "holdout",
                "frames": len(losses[e]),
                "mean_loss": float(np.mean(losses[e])),
            }
            for e in sorted(losses)
        ]
        return Measurement(metrics=metrics, tables={"episodes": rows})


@register
class DifferentialPrivacy(Audit):
    """The (ε, δ) a DP-SGD training run has spent so far, by its accountant, against its budget.

    The run is made private by trustai.training_hooks.privacy (GovernedAccelerator.prepare); this
    audit reads it from the train stage's training statistics (``ctx.training["privacy"]``, a DPState
    as a dict).
    """

    name = "privacy.dp"
    version = "1"
    stages = frozenset({Stage.TRAIN})
    Params = DPParams
    metrics = declare(
        {
            "epsilon": Metric(
                "ε", "lower_is_better", "privacy spent after the steps taken (by the accountant)"
            ),
            "target_epsilon": Metric("ε", "neutral", "the privacy budget"),
            "delta": Metric("δ", "lower_is_better", "the δ of (ε, δ)"),
            "noise_multiplier": Metric("σ", "neutral", "DP-SGD noise multiplier"),
            "max_grad_norm": Metric("grad norm", "neutral", "per-sample gradient clipping norm"),
            "sample_rate": Metric("fraction", "neutral", "Poisson sampling rate of a batch"),
            "steps": Metric("count", "neutral", "steps taken"),
            "steps_planned": Metric("count", "neutral", "steps the run planned"),
            "steps_within_budget": Metric("count", "neutral", "steps the budget allows"),
            "budget_exhausted": Metric(
                "bool", "lower_is_better", "the budget stopped training before its planned steps"
            ),
            "expected_batch_size": Metric("count", "neutral", "expected frames per batch"),
            "dataset_frames": Metric("count", "neutral", "frames in the training dataset"),
            "frozen_parameter_count": Metric(
                "count", "neutral", "parameters left out of DP training (frozen)"
            ),
        }
    )

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Metrics: ``DifferentialPrivacy.metrics``. Tables: ``epsilon_by_step`` (every
        ``epsilon_every`` steps and the current step), ``mechanism`` (accountant, privacy unit,
        sampling, per-sample gradients, clipping mode, where σ came from), ``replaced_modules``,
        ``frozen_parameters``, ``clipping_layers`` (how each layer's per-frame norms are taken)."""
        assert isinstance(params, DPParams)
        privacy = (ctx.training or {}).get("privacy")
        if privacy is None:
            raise ValueError(
                "privacy.dp needs a DP training run: GovernedAccelerator makes LeRobot training private "
                "when the policy pack has a privacy.dp check"
            )
        state = DPState(**privacy)
        mechanism = {
            "noise_multiplier": state.noise_multiplier,
            "sample_rate": state.sample_rate,
            "delta": state.delta,
            "accountant": state.accountant,
        }
        every = params.epsilon_every or max(1, state.steps_planned // 50)
        marks = sorted({*range(every, state.steps + 1, every), state.steps} - {0})
        exhausted = (
            state.steps_within_budget < state.steps_planned and state.steps >= state.steps_within_budget
        )
        metrics: dict[str, float | int | bool | None] = {
            "epsilon": dp_epsilon(state.steps, **mechanism),
            "target_epsilon": state.target_epsilon,
            "delta": state.delta,
            "noise_multiplier": state.noise_multiplier,
            "max_grad_norm": state.max_grad_norm,
            "sample_rate": state.sample_rate,
            "steps": state.steps,
            "steps_planned": state.steps_planned,
            "steps_within_budget": state.steps_within_budget,
            "budget_exhausted": exhausted,
            "expected_batch_size": state.expected_batch_size,
            "dataset_frames": state.dataset_frames,
            "frozen_parameter_count": len(state.frozen_parameters),
        }
        mechanism_row = {
            "accountant": state.accountant,
            "privacy_unit": PRIVACY_UNIT,
            "sampling": "poisson",
            "grad_sample_mode": "hooks",
            "clipping": state.clipping,
            "ghost_clipped_layers": sum(row["clipping"] == "ghost" for row in state.clipping_layers),
            "noise_source": state.noise_source,
        }
        return Measurement(
            metrics=metrics,
            tables={
                "epsilon_by_step": [{"step": k, "epsilon": dp_epsilon(k, **mechanism)} for k in marks],
                "mechanism": [mechanism_row],
                "replaced_modules": list(state.replaced_modules),
                "frozen_parameters": list(state.frozen_parameters),
                "clipping_layers": list(state.clipping_layers),
            },
        )
