"""Raw policy batches built from sampled frames of a LeRobot dataset, for audits that run a policy on
recorded data (per-sample loss, predicted vs recorded actions).

A batch is in the form ``PolicyAdapter`` takes: cameras float in [0, 1] as B×C×H×W, state B×D,
``"task"`` strings, and, for the loss, the recorded action chunk along the policy's own
``action_delta_indices`` with ``action_is_pad`` where the chunk runs past the episode's end, exactly
as LeRobot's dataset would collate it for training.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trustai.core.audit import AuditContext
from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import PolicyAdapter
from trustai.lerobot.datasets import DatasetInfo, iter_frame_batches, task_names
from trustai.lerobot.frames import Frame, Plan, iter_frames
from trustai.lerobot.policy_cache import isolated, loaded_policy


@dataclass
class PolicyBatch:
    """Observations and recorded actions of some frames, with where each row comes from."""

    keys: list[tuple[int, int]]  # (episode_index, frame_index) of each row
    tasks: list[str]
    observation: dict[str, Any]
    action: np.ndarray  # B×D: the recorded action at each row's frame
    targets: dict[str, torch.Tensor]  # "action" B×T×D and "action_is_pad" B×T for per_sample_loss


def audit_policy(ctx: AuditContext, device: str = "cpu") -> PolicyAdapter:
    """The policy a checkpoint audit examines, as the audit's own copy (trustai.lerobot.policy_cache):
    of ``ctx.policy``, else of the checkpoint at ``ctx.checkpoint_dir`` loaded onto ``device`` with the
    context's seed (once per process). Raises TrustaiUserError when there is neither."""
    if ctx.policy is not None:
        return isolated(ctx.policy)
    if ctx.checkpoint_dir is None:
        raise TrustaiUserError(
            "this audit needs a policy, and the stage gave neither a policy nor a checkpoint folder",
            fix="run it at the checkpoint stage, or pass a checkpoint (trustai audit CHECKPOINT)",
        )
    return isolated(loaded_policy(ctx.checkpoint_dir, device=device, seed=ctx.seed))


def _episode_actions(info: DatasetInfo, episodes: set[int]) -> dict[int, np.ndarray]:
    """Every recorded action of ``episodes``, as {episode: array (length, D)} in frame order."""
    rows: dict[int, list[tuple[int, np.ndarray]]] = {e: [] for e in episodes}
    for batch in iter_frame_batches(info.root, ["episode_index", "frame_index", "action"]):
        episode_index = batch["episode_index"].to_numpy()
        keep = np.flatnonzero(np.isin(episode_index, list(episodes)))
        if not len(keep):
            continue
        frames = batch["frame_index"].to_numpy()[keep]
        width = len(batch["action"][0]) if len(batch) else 0
        actions = batch["action"].flatten().to_numpy(zero_copy_only=False).reshape(-1, width)[keep]
        for e, f, a in zip(episode_index[keep].tolist(), frames.tolist(), actions, strict=True):
            rows[e].append((f, a))
    return {e: np.stack([a for _, a in sorted(r, key=lambda x: x[0])]) for e, r in rows.items() if r}


def _chunk(actions: np.ndarray, frame: int, deltas: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The action chunk at ``frame`` along ``deltas``, clamped to the episode, and its padding mask."""
    wanted = np.array(deltas) + frame
    pad = (wanted < 0) | (wanted >= len(actions))
    return actions[np.clip(wanted, 0, len(actions) - 1)], pad


def iter_policy_batches(
    info: DatasetInfo, adapter: PolicyAdapter, plan: Plan, batch_size: int = 16
) -> Iterator[PolicyBatch]:
    """Yield the frames of ``plan`` as policy batches of at most ``batch_size`` rows, in dataset order.

    Raises TrustaiUserError (from the adapter) when the dataset lacks an input the policy needs or
    holds it in another shape.
    """
    adapter.validate_dataset_features(info.features)
    tasks = task_names(info.root)
    actions = _episode_actions(info, set(plan))
    deltas = list(adapter.policy.config.action_delta_indices or [0])
    state = [adapter.state_key] if adapter.state_key else []
    pending: list[Frame] = []
    for frame in iter_frames(info, plan, adapter.camera_keys, [*state, "task_index"]):
        pending.append(frame)
        if len(pending) == batch_size:
            yield _collate(pending, adapter, tasks, actions, deltas)
            pending = []
    if pending:
        yield _collate(pending, adapter, tasks, actions, deltas)


def _collate(
    frames: list[Frame],
    adapter: PolicyAdapter,
    tasks: dict[int, str],
    actions: dict[int, np.ndarray],
    deltas: list[int],
) -> PolicyBatch:
    observation: dict[str, Any] = {}
    for camera in adapter.camera_keys:
        pixels = torch.from_numpy(np.stack([f.images[camera] for f in frames]))
        observation[camera] = pixels.permute(0, 3, 1, 2).float() / 255
    if adapter.state_key:
        observation[adapter.state_key] = torch.from_numpy(
            np.stack([f.values[adapter.state_key] for f in frames]).astype(np.float32)
        )
    texts = [tasks.get(int(f.values["task_index"]), "") for f in frames]
    observation["task"] = texts
    chunks = [_chunk(actions[f.episode], f.frame, deltas) for f in frames]
    return PolicyBatch(
        keys=[(f.episode, f.frame) for f in frames],
        tasks=texts,
        observation=observation,
        action=np.stack([actions[f.episode][f.frame] for f in frames]),
        targets={
            "action": torch.from_numpy(np.stack([c for c, _ in chunks]).astype(np.float32)),
            "action_is_pad": torch.from_numpy(np.stack([p for _, p in chunks])),
        },
    )
