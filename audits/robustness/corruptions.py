"""Sensor corruptions a deployed robot meets, at five severities each (ImageNet-C style levels).

Camera corruptions take images float in [0, 1] as B×C×H×W and return the same; ``state_noise``
takes a state B×D and its per-dimension std. Random draws (noise, patch positions, dropped frames)
come from the caller's generator; seeding it the same for every severity makes the severities of one
corruption differ only in strength (the same noise scaled, the same patches grown, the dropped frames
nested), so a policy's response to them is comparable.
"""

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2.functional import gaussian_blur

SEVERITIES = (1, 2, 3, 4, 5)


def _gaussian_noise(images: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    return (images + sigma * noise).clamp(0, 1)


def _blur(images: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    sigma = fraction * min(images.shape[-2:])
    kernel = 2 * math.ceil(2 * sigma) + 1
    return gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def _brightness(images: Tensor, shift: float, generator: torch.Generator) -> Tensor:
    return (images + shift).clamp(0, 1)


def _contrast(images: Tensor, factor: float, generator: torch.Generator) -> Tensor:
    mean = images.mean(dim=(-3, -2, -1), keepdim=True)
    return ((images - mean) * factor + mean).clamp(0, 1)


def _occlusion(images: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """A black square patch per frame, ``fraction`` of each side, centred at a random point."""
    height, width = images.shape[-2:]
    centres = torch.rand(len(images), 2, generator=generator)
    out = images.clone()
    half_h, half_w = max(1, round(fraction * height / 2)), max(1, round(fraction * width / 2))
    for row, (cy, cx) in enumerate(centres.tolist()):
        y, x = round(cy * (height - 1)), round(cx * (width - 1))
        out[row, :, max(0, y - half_h) : y + half_h, max(0, x - half_w) : x + half_w] = 0
    return out


def _camera_dropout(images: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """The camera delivers black frames for ``fraction`` of the frames (rounded up)."""
    dropped = torch.randperm(len(images), generator=generator)[: math.ceil(fraction * len(images))]
    out = images.clone()
    out[dropped] = 0
    return out


def _jpeg(images: Tensor, quality: float, generator: torch.Generator) -> Tensor:
    """A real JPEG encode/decode round trip (libjpeg through torchvision) at ``quality``."""
    pixels = (images.detach().cpu() * 255).round().to(torch.uint8)
    decoded = decode_jpeg(encode_jpeg(list(pixels), quality=int(quality)))
    return (torch.stack(decoded).float() / 255).to(images.device)


@dataclass(frozen=True)
class Corruption:
    """One corruption: what it corrupts, its level at each severity (and the level's unit)."""

    name: str
    target: Literal["camera", "state"]
    levels: tuple[float, ...]
    unit: str
    apply: Callable[[Tensor, float, torch.Generator], Tensor] | None = None


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in [
        Corruption("gaussian_noise", "camera", (0.02, 0.04, 0.08, 0.12, 0.18), "noise std", _gaussian_noise),
        Corruption("blur", "camera", (0.01, 0.02, 0.03, 0.05, 0.08), "blur std / image side", _blur),
        Corruption("brightness", "camera", (0.05, 0.1, 0.2, 0.3, 0.5), "added brightness", _brightness),
        Corruption("contrast", "camera", (0.8, 0.6, 0.4, 0.25, 0.1), "contrast factor", _contrast),
        Corruption("occlusion", "camera", (0.1, 0.2, 0.3, 0.45, 0.6), "patch side / image side", _occlusion),
        Corruption(
            "camera_dropout", "camera", (0.2, 0.4, 0.6, 0.8, 1.0), "share of black frames", _camera_dropout
        ),
        Corruption("jpeg", "camera", (80, 50, 30, 15, 5), "JPEG quality", _jpeg),
        Corruption("state_noise", "state", (0.05, 0.1, 0.2, 0.4, 0.8), "noise std / state std"),
    ]
}


def condition_seed(seed: int, *parts: str) -> int:
    """A seed for one (corruption, input, episode, ...) combination, independent of iteration order."""
    return seed + zlib.crc32("/".join(parts).encode())


def corruption(name: str) -> Corruption:
    """The corruption called ``name``; ValueError naming the known ones otherwise."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name]


def corrupt_images(name: str, images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Apply camera corruption ``name`` at ``severity`` (1-5) to B×C×H×W images in [0, 1]."""
    spec = corruption(name)
    if spec.apply is None:
        raise ValueError(f"{name} corrupts the {spec.target}, not camera images")
    return spec.apply(images, spec.levels[severity - 1], generator)


def corrupt_state(state: Tensor, severity: int, generator: torch.Generator, std: Tensor) -> Tensor:
    """Add Gaussian noise of ``state_noise``'s level at ``severity`` times the per-dimension ``std``."""
    level = CORRUPTIONS["state_noise"].levels[severity - 1]
    noise = torch.randn(state.shape, generator=generator).to(state.device)
    return state + level * std.to(state.device) * noise
