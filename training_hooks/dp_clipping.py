"""Per-frame clipping without per-frame gradients where a layer allows it ("ghost" clipping), per-frame
gradients elsewhere: the same DP-SGD step (clip every frame's whole gradient to ``max_grad_norm``, sum,
add noise) at a fraction of the memory traffic.

DP-SGD needs each frame's gradient norm, then the sum of the clipped gradients. For a linear or
convolution layer whose frame gradient is ``Σ_t g_t a_tᵀ`` (backprops ``g`` and activations ``a`` over
the frame's positions ``t``), the norm follows from the two small Gram matrices ``a aᵀ`` and ``g gᵀ``
(Opacus' ghost norm, Li et al. 2022; for convolutions over unfolded activations, Bu et al. 2022), and the
clipped sum is one ordinary weight gradient with each frame's backprops scaled by its clipping factor
(book-keeping, Bu et al. 2023). Neither ever holds a frame's gradient, which for a wide layer means
frames × parameters floats written, read for the norm and read again for the sum.

A layer is clipped this way ("ghost") when it is an ``nn.Linear``, or an ``nn.Conv2d`` without groups
and with zero padding, runs once per forward, and its positions are few enough that the Gram matrices
are smaller than its weight (2·T² < inputs × outputs, the rule of mixed ghost clipping); every other
layer keeps Opacus' per-frame gradients (``per-frame``). The noise, the accountant and the privacy
accounting are DPOptimizer's own, so ε does not depend on the mode.
"""

import math
from typing import Any

import torch
from opacus.grad_sample.linear import compute_linear_norm_sample
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from opacus.utils.module_utils import trainable_parameters
from torch import nn
from trustai.training_hooks.dp_layers import Layout, LayoutAwareHooks

GHOST = "ghost"
PER_FRAME = "per-frame"


def _positions(layer: nn.Module, shape: tuple[int, ...]) -> int | None:
    """Positions T per frame that a layer with batch-first input ``shape`` sums its frame gradient
    over; None when the layer has no ghost norm here."""
    if isinstance(layer, nn.Linear):
        return math.prod(shape[1:-1])
    if (
        isinstance(layer, nn.Conv2d)
        and layer.groups == 1
        and layer.padding_mode == "zeros"
        and len(shape) == 4
    ):
        out = [
            (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
            for size, pad, dil, k, stride in zip(
                shape[2:], layer.padding, layer.dilation, layer.kernel_size, layer.stride, strict=True
            )
        ]
        return out[0] * out[1]
    return None


def plan_clipping(layout: Layout, names: dict[nn.Module, str]) -> tuple[set[nn.Module], list[dict[str, str]]]:
    """The layers to clip with ghost norms, and one row per hooked layer: {layer, type, clipping, why}."""
    ghost: set[nn.Module] = set()
    rows = []
    for layer, dim in layout.batch_dims.items():
        calls = layout.inputs.get(layer, [])
        shape = calls[0][0] if len(calls) == 1 and calls[0] else None
        if shape is not None and dim == 1:
            shape = (shape[1], shape[0], *shape[2:])
        positions = _positions(layer, shape) if shape is not None else None
        weight = layer.weight.numel() if isinstance(getattr(layer, "weight", None), torch.Tensor) else 0
        if len(calls) > 1:
            why = f"runs {len(calls)} times per forward"
        elif positions is None:
            why = f"no ghost norm for this {type(layer).__name__}"
        elif 2 * positions**2 >= weight:
            why = f"{positions} positions: per-frame gradients are smaller than its Gram matrices"
        else:
            why = f"{positions} positions"
            ghost.add(layer)
        rows.append(
            {
                "layer": names[layer],
                "type": type(layer).__name__,
                "clipping": GHOST if layer in ghost else PER_FRAME,
                "why": why,
            }
        )
    return ghost, rows


def _flat(
    layer: nn.Module, activations: torch.Tensor, backprops: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations (B×T×inputs) and backprops (B×T×outputs) of a ghost layer, positions flattened."""
    batch = activations.shape[0]
    if isinstance(layer, nn.Conv2d):
        unfolded = nn.functional.unfold(
            activations,
            layer.kernel_size,
            dilation=layer.dilation,
            padding=layer.padding,
            stride=layer.stride,
        )
        return unfolded.transpose(1, 2), backprops.reshape(batch, backprops.shape[1], -1).transpose(1, 2)
    return activations.reshape(batch, -1, activations.shape[-1]), backprops.reshape(
        batch, -1, backprops.shape[-1]
    )


def ghost_norms(
    layer: nn.Module, activations: torch.Tensor, backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Each frame's gradient norm of ``layer``'s trainable parameters, from batch-first activations and
    backprops, without forming the frame gradients (Opacus' linear ghost norm)."""
    a, g = _flat(layer, activations, backprops)
    return compute_linear_norm_sample(layer, [a], g)


def clipped_sum(
    layer: nn.Module, activations: torch.Tensor, backprops: torch.Tensor, factors: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Σ_frames factor × frame gradient of ``layer``'s trainable parameters: one weight gradient with
    each frame's backprops scaled by its factor."""
    scaled = backprops * factors.to(backprops.dtype).reshape(-1, *([1] * (backprops.dim() - 1)))
    sums: dict[nn.Parameter, torch.Tensor] = {}
    if isinstance(layer, nn.Conv2d):
        if layer.weight.requires_grad:
            sums[layer.weight] = torch.nn.grad.conv2d_weight(
                activations.to(scaled.dtype),
                layer.weight.shape,
                scaled,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=layer.groups,
            )
        if layer.bias is not None and layer.bias.requires_grad:
            sums[layer.bias] = scaled.sum(dim=(0, 2, 3))
        return sums
    if layer.weight.requires_grad:
        sums[layer.weight] = torch.einsum("n...i,n...j->ij", scaled, activations.to(scaled.dtype))
    if layer.bias is not None and layer.bias.requires_grad:
        sums[layer.bias] = scaled.reshape(-1, scaled.shape[-1]).sum(dim=0)
    return sums


class GhostClippingHooks(LayoutAwareHooks):
    """LayoutAwareHooks that, for the layers in ``ghost``, keep the (batch-first, phantom-weighed)
    activations and backprops and each frame's gradient norm (``param._norm_sample``) instead of
    per-frame gradients; every other layer gets Opacus' per-frame gradients as before."""

    def __init__(self, module: nn.Module, batch_dims: dict[nn.Module, int], ghost: set[nn.Module]):
        self.ghost = ghost
        self.kept: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        super().__init__(module, batch_dims)

    def capture_backprops_hook(
        self,
        module: nn.Module,
        _forward_input: Any,
        forward_output: Any,
        loss_reduction: str,
        batch_first: bool,
    ) -> None:
        """Ghost layers: keep activations and backprops, set each parameter's per-frame norms."""
        if module not in self.ghost:
            super().capture_backprops_hook(
                module, _forward_input, forward_output, loss_reduction, batch_first
            )
            return
        if not self.hooks_enabled:
            return
        if module in self.kept:
            raise ValueError(
                "Poisson sampling is not compatible with grad accumulation: call optimizer.step() after "
                "every forward/backward pass"
            )
        activations, backprops = self.rearrange_grad_samples(
            module=module,
            backprops=forward_output[0].detach(),
            loss_reduction=loss_reduction,
            batch_first=batch_first,
        )
        self.kept[module] = (activations[0], backprops)
        for param, norms in ghost_norms(module, activations[0], backprops).items():
            param._norm_sample = norms
        for _, param in trainable_parameters(module):
            param._forward_counter -= 1
        if not module.activations and hasattr(module, "max_batch_len"):
            del module.max_batch_len

    def clipped_sums(self, factors: torch.Tensor) -> dict[int, torch.Tensor]:
        """{id(param): Σ factor × frame gradient} of every ghost layer's parameters."""
        sums: dict[int, torch.Tensor] = {}
        for layer, (activations, backprops) in self.kept.items():
            sums.update({id(p): s for p, s in clipped_sum(layer, activations, backprops, factors).items()})
        return sums

    def forget(self) -> None:
        """Drop what the last backward kept (after the optimizer step)."""
        for layer in self.kept:
            for _, param in trainable_parameters(layer):
                param._norm_sample = None
        self.kept.clear()


class GhostClippingOptimizer(DPOptimizer):
    """DPOptimizer whose clipping takes each frame's norm from ghost norms where ``hooks`` kept them and
    from per-frame gradients elsewhere, and sums the clipped gradients of ghost layers from their kept
    activations and backprops. Noise, scaling and the accountant's step hook are DPOptimizer's."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, hooks: GhostClippingHooks, **kwargs: Any):
        super().__init__(optimizer, **kwargs)
        self.hooks = hooks

    @classmethod
    def replacing(cls, private: DPOptimizer, hooks: GhostClippingHooks) -> "GhostClippingOptimizer":
        """This optimizer in place of ``private`` (what PrivacyEngine.make_private returned): the same
        optimizer, mechanism and accountant hook."""
        ghost = cls(
            private.original_optimizer,
            hooks=hooks,
            noise_multiplier=private.noise_multiplier,
            max_grad_norm=private.max_grad_norm,
            expected_batch_size=private.expected_batch_size,
            loss_reduction=private.loss_reduction,
            generator=private.generator,
            secure_mode=private.secure_mode,
        )
        ghost.attach_step_hook(private.step_hook)
        return ghost

    @property
    def accumulated_iterations(self) -> int:
        """1: the hooks refuse a second backward before the step (Poisson sampling forbids it)."""
        return 1

    def clip_and_accumulate(self) -> None:
        """Clip every frame's whole gradient to ``max_grad_norm`` and add the sum to ``p.summed_grad``."""
        norms = []
        for p in self.params:
            if getattr(p, "_norm_sample", None) is not None:
                norms.append(p._norm_sample)
            else:
                samples = self._get_flat_grad_sample(p)
                norms.append(samples.reshape(len(samples), -1).norm(2, dim=-1))
        device = norms[0].device
        per_frame = torch.stack([n.to(device) for n in norms], dim=1).norm(2, dim=1)
        factors = (self.max_grad_norm / (per_frame + 1e-6)).clamp(max=1.0)
        ghost = self.hooks.clipped_sums(factors)
        for p in self.params:
            if id(p) in ghost:
                grad = ghost[id(p)].to(p.dtype)
            else:
                _check_processed_flag(p.grad_sample)
                samples = self._get_flat_grad_sample(p).to(p.dtype)
                grad = torch.einsum("i,i...", factors.to(samples.device, p.dtype), samples)
                _mark_as_processed(p.grad_sample)
            p.summed_grad = grad if p.summed_grad is None else p.summed_grad + grad

    def pre_step(self, closure: Any = None) -> bool:
        """DPOptimizer.pre_step: clip and accumulate, then noise, scale and the accountant's hook."""
        self.clip_and_accumulate()
        self.hooks.forget()
        if self._check_skip_next_step():
            self._is_last_step_skipped = True
            return False
        self.add_noise()
        self.scale_grad()
        if self.step_hook:
            self.step_hook(self)
        self._is_last_step_skipped = False
        return True

    def zero_grad(self, set_to_none: bool = False) -> None:
        """DPOptimizer.zero_grad, also dropping what the hooks kept from a backward without a step."""
        super().zero_grad(set_to_none)
        self.hooks.forget()
