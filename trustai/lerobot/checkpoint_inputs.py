"""What a checkpoint audit looks at: the policy, one raw batch of (held-out) dataset frames, and the
dataset statistics that deviations are measured in.

Frames come from ``trustai.lerobot.frames.even_sample`` and
``trustai.lerobot.policy_batches.iter_policy_batches``
(the same sampling the fairness and privacy audits use), merged into a single batch in the form
``PolicyAdapter`` takes: cameras float in [0, 1] as B×C×H×W, state B×D, ``"task"`` strings, and
the recorded ``"action"`` chunk with ``"action_is_pad"`` for ``per_sample_loss``.
"""

import json
from dataclasses import dataclass
from typing import Any

import torch
from lerobot.utils.constants import OBS_IMAGES, OBS_STATE
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from trustai.core.audit import AuditContext
from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import Batch, PolicyAdapter
from trustai.lerobot.datasets import episode_lengths, open_dataset_meta, resolve_dataset_root
from trustai.lerobot.frames import even_sample
from trustai.lerobot.policy_batches import audit_policy, iter_policy_batches

STATS_PATH = "meta/stats.json"
# A dimension that never moves in the data (std ~ 0) would turn float noise into huge normalised
# deviations; its std is floored at this fraction of the largest dimension's std.
STD_FLOOR_FRACTION = 0.01


class FrameParams(BaseModel):
    """Params shared by checkpoint audits that run the policy on dataset frames."""

    model_config = ConfigDict(extra="forbid")

    frames: int = Field(8, ge=1, le=100_000, description="frames sampled evenly from the chosen episodes")
    episodes: list[int] | None = Field(None, description="held-out episodes to sample from; all when None")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$", description="where the policy runs")


@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension mean and (floored) standard deviation of one dataset feature."""

    mean: Tensor
    std: Tensor


def held_out_batch(ctx: AuditContext, params: FrameParams) -> tuple[PolicyAdapter, Batch]:
    """The policy (``ctx.policy``, else the checkpoint in ``ctx.checkpoint_dir``) and ``params.frames``
    frames spread evenly over ``params.episodes`` of ``ctx.dataset``, as one raw policy batch.

    Raises ValueError when the stage gave no dataset, TrustaiUserError when the checkpoint is unusable,
    an episode does not exist, or the dataset's features do not fit the policy's inputs.
    """
    if ctx.dataset is None:
        raise ValueError("this audit needs dataset frames, and the stage gave no dataset")
    adapter = audit_policy(ctx, params.device)
    info = open_dataset_meta(resolve_dataset_root(ctx.dataset))
    lengths = episode_lengths(info.root)
    chosen = lengths.keys() if params.episodes is None else params.episodes
    unknown = sorted(set(chosen) - lengths.keys())
    if unknown:
        raise TrustaiUserError(
            f"episodes {unknown} are not in the dataset (it has {len(lengths)})",
            where=str(info.root),
            fix="choose held-out episodes that the dataset holds",
        )
    plan = even_sample({e: lengths[e] for e in chosen}, params.frames)
    parts = [{**b.observation, **b.targets} for b in iter_policy_batches(info, adapter, plan, params.frames)]
    if not parts:
        raise TrustaiUserError("no frames to audit", where=str(info.root), fix="choose non-empty episodes")
    return adapter, concat_rows(parts)


def concat_rows(batches: list[Batch]) -> Batch:
    """Concatenate raw batches with the same keys along their rows (tensors and lists)."""
    merged: Batch = {}
    for key, first in batches[0].items():
        values = [b[key] for b in batches]
        merged[key] = torch.cat(values) if isinstance(first, Tensor) else [v for part in values for v in part]
    return merged


def repeat_rows(batch: Batch, repeats: int) -> Batch:
    """Tile every row of ``batch`` ``repeats`` times: row ``i`` of the result is row ``i % rows`` of
    ``batch``, the order in which captum and the batched attacks expand their inputs."""
    return concat_rows([batch] * repeats)


def input_label(key: str) -> str:
    """A short name for a policy input in metric names and tables: the camera name after
    ``observation.images.``, ``state`` for ``observation.state``, else the key itself."""
    return {OBS_STATE: "state"}.get(key, key.removeprefix(f"{OBS_IMAGES}."))


def batch_rows(batch: Batch, adapter: PolicyAdapter) -> int:
    """Number of observations in a raw policy batch."""
    return len(batch[adapter.modalities[0].name])


def feature_stats(dataset: Any, adapter: PolicyAdapter, key: str) -> FeatureStats:
    """Mean and std of feature ``key`` from the dataset's meta/stats.json, or, when there is no dataset
    or it lacks them, from the policy's own normalisation statistics (its pre/post-processors).

    The std is floored at ``STD_FLOOR_FRACTION`` of its largest dimension. Raises ValueError when
    neither source has statistics for ``key``.
    """
    stats = _dataset_stats(dataset, key) or _policy_stats(adapter, key)
    if stats is None:
        raise ValueError(f"no mean/std statistics for {key} in the dataset or the policy's processors")
    mean, std = (torch.as_tensor(stats[name], dtype=torch.float32).flatten() for name in ("mean", "std"))
    floor = max(STD_FLOOR_FRACTION * float(std.max()), 1e-6)
    return FeatureStats(mean=mean, std=std.clamp_min(floor))


def _dataset_stats(dataset: Any, key: str) -> dict[str, Any] | None:
    if dataset is None:
        return None
    path = resolve_dataset_root(dataset) / STATS_PATH
    if not path.is_file():
        return None
    entry = json.loads(path.read_text(encoding="utf-8")).get(key, {})
    return entry if {"mean", "std"} <= entry.keys() else None


def _policy_stats(adapter: PolicyAdapter, key: str) -> dict[str, Any] | None:
    for pipeline in (adapter.preprocessor, adapter.postprocessor):
        for step in getattr(pipeline, "steps", []):
            entry = (getattr(step, "stats", None) or {}).get(key, {})
            if {"mean", "std"} <= entry.keys():
                return entry
    return None
