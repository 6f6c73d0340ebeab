"""Captum attributions of a policy's action to each of its inputs, and a deletion test of their
faithfulness.

The attributed scalar per frame (``target``) is either the L2 norm of the whole action chunk in
standardised units (``"chunk_norm"``) or one action dimension, standardised and averaged over the
chunk. InputProvenance are attributed together, in captum's tuple form: every camera (pixels), the state, and,
for a language policy, the task's token embeddings (``FramePolicy``). An input the actions do not
depend on through autograd (π0.5 reads its state as discretised text tokens) is listed as not
differentiable instead. Baselines: black images, the dataset's mean state, zero embeddings.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from captum.attr import IntegratedGradients, Occlusion, Saliency
from torch import Tensor

from trustai.lerobot.checkpoint_inputs import FeatureStats
from trustai.lerobot.deviation import action_deviation
from trustai.lerobot.frame_policy import TASK, FramePolicy

Method = Literal["integrated_gradients", "saliency", "occlusion"]
Target = Literal["chunk_norm"] | int
METHODS: tuple[Method, ...] = ("integrated_gradients", "saliency", "occlusion")


@dataclass
class AttributionInputs:
    """What captum attributes: ``keys`` in captum's input order, their values and baselines."""

    keys: list[str]
    inputs: tuple[Tensor, ...]
    baselines: tuple[Tensor, ...]
    not_differentiable: dict[str, str]  # input key -> why it is not attributed

    @property
    def cameras(self) -> list[str]:
        """The attributed camera keys (inputs with C×H×W pixels)."""
        return [k for k, v in zip(self.keys, self.inputs, strict=True) if k != TASK and v.ndim == 4]


def target_function(actions: FeatureStats, target: Target, action_dim: int) -> Callable[[Tensor], Tensor]:
    """The per-frame scalar attributions explain, from actions (N, chunk, A) in dataset units.

    Raises ValueError for an action dimension outside ``[0, action_dim)``.
    """
    if target == "chunk_norm":
        return lambda a: ((a - actions.mean) / actions.std).flatten(1).norm(dim=1)
    if not 0 <= target < action_dim:
        raise ValueError(f"target action dimension {target} is outside [0, {action_dim})")
    return lambda a: ((a[..., target] - actions.mean[target]) / actions.std[target]).mean(1)


def attribution_inputs(policy: FramePolicy, state: FeatureStats | None) -> AttributionInputs:
    """Every input of ``policy`` whose gradient reaches the actions, with its baseline.

    One forward/backward pass on the frames finds which inputs are in the autograd graph.
    """
    adapter, frames = policy.adapter, policy.frames
    candidates: dict[str, tuple[Tensor, Tensor]] = {
        c: (frames[c], torch.zeros_like(frames[c])) for c in adapter.camera_keys
    }
    not_differentiable: dict[str, str] = {}
    if adapter.state_key is not None and state is not None:
        value = frames[adapter.state_key]
        candidates[adapter.state_key] = (value, state.mean.to(value).expand_as(value).clone())
    if adapter.has_language and policy.language_embeddings is None:
        not_differentiable[TASK] = (
            "the task's tokens reach the policy through no embedding layer trustai can find"
        )
    elif adapter.has_language:
        embeddings = policy.language_embeddings
        candidates[TASK] = (embeddings, torch.zeros_like(embeddings))
    probes = {key: value.detach().clone().requires_grad_(True) for key, (value, _) in candidates.items()}
    grads = torch.autograd.grad(policy.actions(probes).sum(), list(probes.values()), allow_unused=True)
    for key, grad in zip(list(candidates), grads, strict=True):
        if grad is None:
            not_differentiable[key] = (
                "the actions do not depend on it through autograd (e.g. read as text tokens)"
            )
            del candidates[key]
    return AttributionInputs(
        keys=list(candidates),
        inputs=tuple(v.detach() for v, _ in candidates.values()),
        baselines=tuple(b.detach() for _, b in candidates.values()),
        not_differentiable=not_differentiable,
    )


def forward_function(
    policy: FramePolicy, keys: list[str], target: Callable[[Tensor], Tensor]
) -> Callable[..., Tensor]:
    """captum's forward: one tensor per key in ``keys`` (N = k·rows rows each) -> target (N,)."""
    return lambda *tensors: target(policy.actions(dict(zip(keys, tensors, strict=True))))


def attribute(
    method: Method,
    forward: Callable[..., Tensor],
    inputs: AttributionInputs,
    rows: int,
    *,
    ig_steps: int,
    occlusion_fraction: float,
    max_rows: int,
) -> tuple[tuple[Tensor, ...], Tensor | None]:
    """Attributions per input (same shapes as the inputs) and, for Integrated Gradients, captum's
    convergence delta per frame (sum of attributions minus F(input) - F(baseline)); None otherwise."""
    per_call = max(1, max_rows // rows)
    # Leaf tensors that already require grad: captum warns about (and then sets) it otherwise.
    leaves = tuple(value.detach().requires_grad_(True) for value in inputs.inputs)
    if method == "integrated_gradients":
        attributions, delta = IntegratedGradients(forward).attribute(
            leaves,
            baselines=inputs.baselines,
            n_steps=ig_steps,
            internal_batch_size=rows * per_call,
            return_convergence_delta=True,
        )
        return attributions, delta
    if method == "saliency":
        return Saliency(forward).attribute(leaves, abs=True), None
    windows = tuple(
        _occlusion_window(value, key, occlusion_fraction)
        for key, value in zip(inputs.keys, inputs.inputs, strict=True)
    )
    attributions = Occlusion(forward).attribute(
        inputs.inputs,
        sliding_window_shapes=windows,
        strides=windows,
        baselines=inputs.baselines,
        perturbations_per_eval=per_call,
    )
    # captum gives every element of a window the window's whole output change; per element, that
    # change divided by the window's size makes sums over an input (its share) count each window once.
    return tuple(a / math.prod(w) for a, w in zip(attributions, windows, strict=True)), None


def _occlusion_window(value: Tensor, key: str, fraction: float) -> tuple[int, ...]:
    """Patches of ``fraction`` of each image side; the state and the task occluded whole (their
    shares are what the audit reports)."""
    if value.ndim == 4 and key != TASK:
        channels, height, width = value.shape[1:]
        return (channels, max(1, round(fraction * height)), max(1, round(fraction * width)))
    return tuple(value.shape[1:])


def shares(attributions: tuple[Tensor, ...], keys: list[str]) -> dict[str, float]:
    """Each input's share of the total absolute attribution (shares sum to 1; all 0 when it is 0)."""
    totals = {key: float(a.detach().abs().sum()) for key, a in zip(keys, attributions, strict=True)}
    grand = sum(totals.values())
    return {key: total / grand if grand > 0 else 0.0 for key, total in totals.items()}


def pixel_scores(attributions: tuple[Tensor, ...], inputs: AttributionInputs) -> dict[str, Tensor]:
    """Per camera, the absolute attribution of each pixel summed over channels: rows × H × W."""
    by_key = dict(zip(inputs.keys, attributions, strict=True))
    return {camera: by_key[camera].detach().abs().sum(1) for camera in inputs.cameras}


def deletion_curves(
    policy: FramePolicy,
    scores: dict[str, dict[str, Tensor]],
    fractions: list[float],
    action_std: Tensor,
    generator: torch.Generator,
) -> dict[str, list[float]]:
    """Mean action deviation after blacking out the top-``f`` share of camera pixels, for each
    fraction ``f`` and each ranking in ``scores`` (name -> camera -> rows × H × W), plus ``"random"``
    (one random ranking per frame, so the random sets are nested across fractions).

    Pixels are ranked across all attributed cameras of a frame together.
    """
    cameras = list(next(iter(scores.values())))
    shapes = [policy.frames[c].shape[-2:] for c in cameras]
    rankings = {name: torch.cat([s[c].flatten(1) for c in cameras], dim=1) for name, s in scores.items()}
    first = next(iter(rankings.values()))
    rankings["random"] = torch.rand(first.shape, generator=generator)
    masks = []
    for ranking in rankings.values():
        order = ranking.argsort(dim=1, descending=True)
        for fraction in fractions:
            keep = torch.ones_like(ranking)
            keep.scatter_(1, order[:, : round(fraction * ranking.shape[1])], 0.0)
            masks.append(keep)
    keep = torch.cat(masks)
    overrides, start = {}, 0
    for camera, shape in zip(cameras, shapes, strict=True):
        size = shape[0] * shape[1]
        camera_keep = keep[:, start : start + size].reshape(-1, 1, *shape)
        overrides[camera] = policy.frames[camera].repeat(len(masks), 1, 1, 1) * camera_keep
        start += size
    with torch.no_grad():
        reference = policy.clean_actions.repeat(len(masks), 1, 1)
        deviation = action_deviation(policy.actions(overrides), reference, action_std)
    means = deviation.reshape(len(masks), policy.rows).mean(1).tolist()
    return {name: means[i * len(fractions) : (i + 1) * len(fractions)] for i, name in enumerate(rankings)}


def area_under(fractions: list[float], values: list[float]) -> float:
    """Trapezoid area under the curve that starts at (0, 0), divided by the largest fraction: the
    curve's mean height over the deleted range."""
    xs, ys = [0.0, *fractions], [0.0, *values]
    area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:], strict=False))
    return area / xs[-1]
