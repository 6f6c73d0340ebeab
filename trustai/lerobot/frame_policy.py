"""A policy evaluated on many variations of one fixed batch of frames, as attacks and attributions need.

``FramePolicy.actions(overrides)`` takes N = k·rows rows of replacement inputs (perturbed cameras,
noisy state, language token embeddings) and fills every other input from the frames, row ``i`` from
frame ``i % rows``: the order in which captum and the batched attacks expand their inputs.

Two facts about LeRobot policies shape it:

* A row's actions may depend on its position in the batch: LeRobot's Diffusion policy draws the
  DDPM scheduler's per-step noise for the whole batch from the global RNG, so row ``i`` of a bigger
  batch gets other noise than it gets among the frames alone. ``FramePolicy`` checks this once and,
  when it is so, evaluates one copy of the frames per policy call, so every row always sees the noise
  it had in the clean evaluation; other policies take up to ``max_rows`` rows per call.
* Language reaches a VLA as token ids, which have no gradient. The embedding layer that turns the
  task's tokens into vectors (``PolicyAdapter.language_embedding``, named by the policy type's
  driver; its first call on the frames' tokenised task is recorded) is where language becomes
  differentiable: ``language_embeddings`` returns the frames' own token
  embeddings, and an override ``{"task": tensor}`` substitutes them (π0.5 also writes its discretised
  state into these tokens).
"""

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from trustai.lerobot.adapter import Batch, PolicyAdapter
from trustai.lerobot.checkpoint_inputs import batch_rows, repeat_rows

TASK = "task"


class FramePolicy:
    """``adapter`` on variations of ``frames``; see the module docstring."""

    def __init__(self, adapter: PolicyAdapter, frames: Batch, max_rows: int = 64):
        """Evaluate the clean frames once (``clean_actions``), learn whether rows may share a call with
        other copies of the frames and, for a language policy, find its token embedding layer."""
        self.adapter, self.frames = adapter, frames
        self.rows = batch_rows(frames, adapter)
        self._embedding: torch.nn.Module | None = None
        self._embeddings: Tensor | None = None
        with torch.no_grad(), self._watch_embeddings():
            self.clean_actions = adapter.actions(frames)
        with torch.no_grad():
            doubled = adapter.actions(repeat_rows(frames, 2))[self.rows :]
        independent = torch.allclose(doubled, self.clean_actions, rtol=1e-4, atol=1e-5)
        self.chunk_rows = self.rows * (max(1, max_rows // self.rows) if independent else 1)

    @property
    def language_embeddings(self) -> Tensor | None:
        """The frames' task token embeddings (rows × tokens × width), or None for a policy without
        language or whose language does not pass through an ``nn.Embedding``."""
        return self._embeddings

    def actions(self, overrides: dict[str, Tensor]) -> Tensor:
        """Actions (N, chunk, A) for N = k·rows rows of ``overrides`` (input key -> N-row tensor; the
        key ``"task"`` carries token embeddings), other inputs from the frames. Differentiable."""
        n = len(next(iter(overrides.values())))
        if n % self.rows:
            raise ValueError(f"got {n} rows, not a multiple of the {self.rows} frames")
        return torch.cat([self._call(overrides, start) for start in range(0, n, self.chunk_rows)])

    def _call(self, overrides: dict[str, Tensor], start: int) -> Tensor:
        part = {key: value[start : start + self.chunk_rows] for key, value in overrides.items()}
        inputs = repeat_rows(self.frames, len(next(iter(part.values()))) // self.rows)
        embeddings = part.pop(TASK, None)
        inputs.update(part)
        with self._substitute_embeddings(embeddings):
            return self.adapter.actions(inputs)

    @contextlib.contextmanager
    def _watch_embeddings(self) -> Iterator[None]:
        if not self.adapter.has_language:
            yield
            return

        def seen(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
            tokens = args[0]
            first_call = self._embedding is None
            if (
                first_call
                and not tokens.is_floating_point()
                and tokens.ndim == 2
                and len(tokens) == self.rows
            ):
                self._embedding, self._embeddings = module, output.detach()

        embedding = self.adapter.language_embedding
        if embedding is None:
            yield
            return
        handle = embedding.register_forward_hook(seen)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def _substitute_embeddings(self, embeddings: Tensor | None) -> Iterator[None]:
        if embeddings is None:
            yield
            return
        if self._embedding is None:
            raise ValueError("this policy has no token embedding layer to substitute language embeddings in")
        handle = self._embedding.register_forward_hook(
            lambda module, args, output: embeddings.to(output.dtype)
        )
        try:
            yield
        finally:
            handle.remove()
