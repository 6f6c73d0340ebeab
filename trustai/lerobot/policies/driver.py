"""``PolicyDriver``: what trustai needs to know to run one LeRobot policy type deterministically and
differentiably, and the helpers several drivers share.

A driver turns a preprocessed batch into the policy's *normalised* action chunk (the postprocessor
then maps it to dataset units) without LeRobot's ``@torch.no_grad`` wrappers, so gradients reach the
camera pixels; flow-matching and diffusion noise come from a seeded ``torch.Generator``, never from
the caller's RNG.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from lerobot.policies.pretrained import PreTrainedPolicy

Batch = dict[str, Any]
Pipeline = Callable[[Any], Any]


@dataclass(frozen=True)
class Backbone:
    """A model, processor or tokenizer a checkpoint loads by name from outside its own folder.

    ``name`` is a local folder or a Hugging Face hub id, written under ``key`` in ``file`` (relative
    to the checkpoint folder, or absolute); ``what`` says what it is.
    """

    name: str
    file: str
    key: str
    what: str


def _same_batch(policy: PreTrainedPolicy, raw: Batch, processed: Batch, preprocessor: Any) -> Batch:
    return processed


def _no_backbones(config: dict[str, Any], preprocessor: dict[str, Any], folder: Any) -> list[Backbone]:
    return []


@dataclass(frozen=True)
class PolicyDriver:
    """How one LeRobot policy type is run by ``PolicyAdapter``.

    * ``chunk(policy, processed, generator)``: the normalised action chunk (B, chunk, action_dim),
      differentiable w.r.t. camera pixels; noise drawn only from ``generator``.
    * ``chunk_size(policy)``: actions per observation that ``chunk`` returns.
    * ``has_language``: the policy reads the ``"task"`` string.
    * ``state_differentiable``: gradients reach ``observation.state`` (False where the state is read
      as text tokens); a non-differentiable state is detached before the preprocessor sees it.
    * ``prepare(policy, raw, processed, preprocessor)``: policy-specific inputs added after the
      preprocessor (a time axis, differentiable pixels the preprocessor quantised).
    * ``pixels_rebuilt``: the preprocessor turns camera pixels into model inputs outside autograd
      (GR00T quantises them to uint8) and ``prepare`` rebuilds them differentiably from the raw
      pixels, so the preprocessor is handed detached pixels.
    * ``language_embedding(policy)``: the ``nn.Embedding`` that turns the task's tokens into vectors
      (where language becomes differentiable), or None.
    * ``backbones(config_json, preprocessor_json, folder)``: what loading the checkpoint fetches by
      name from outside its folder (checked to be local before anything is built).
    * ``offline_config(config)``: switch off, in a loaded config, pretrained weights that building
      the policy would fetch although ``model.safetensors`` overwrites them.
    * ``offline_pipeline(config, preprocessor)``: point steps of a preprocessor LeRobot built for
      ``config`` that name a hub model at the local one ``config`` names instead (training builds them).
    * ``autocast(policy)``: the autocast LeRobot's own inference runs the policy under.
    """

    chunk: Callable[[PreTrainedPolicy, Batch, torch.Generator], Tensor]
    chunk_size: Callable[[PreTrainedPolicy], int]
    has_language: bool
    state_differentiable: bool = True
    prepare: Callable[[PreTrainedPolicy, Batch, Batch, Any], Batch] = _same_batch
    pixels_rebuilt: bool = False
    language_embedding: Callable[[PreTrainedPolicy], nn.Module] | None = None
    backbones: Callable[[dict[str, Any], dict[str, Any], Any], list[Backbone]] = field(default=_no_backbones)
    offline_config: Callable[[Any], None] = lambda config: None
    offline_pipeline: Callable[[Any, Any], None] = lambda config, preprocessor: None
    autocast: Callable[[PreTrainedPolicy], contextlib.AbstractContextManager[Any]] = lambda policy: (
        contextlib.nullcontext()
    )


def shared_noise(generator: torch.Generator, rows: int, shape: tuple[int, ...]) -> Tensor:
    """One seeded noise sample repeated for every row, so a row's actions do not depend on its position."""
    noise = torch.randn((1, *shape), generator=generator, device=generator.device)
    return noise.expand(rows, *shape)


def tokenizer_backbones(preprocessor: dict[str, Any], what: str) -> list[Backbone]:
    """The tokenizer the preprocessor's ``tokenizer_processor`` step loads by name, if any."""
    return [
        Backbone(step["config"]["tokenizer_name"], "policy_preprocessor.json", "tokenizer_name", what)
        for step in preprocessor.get("steps", [])
        if step.get("registry_name") == "tokenizer_processor"
        and isinstance(step.get("config", {}).get("tokenizer_name"), str)
    ]
