"""What Opacus can train, and per-frame gradients on LeRobot's policies: the layer checks and fixes
(``dp_compatible``), the batch dimension of every layer found by probing (``probe_layout``; LeRobot's
transformers are sequence-first), Opacus' hooks taught those dimensions and phantom-frame weights
(``LayoutAwareHooks``), and rebuilding an optimizer over a fixed copy of the policy.
"""

import functools
import inspect
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from opacus.grad_sample import GradSampleHooks
from opacus.grad_sample.functorch import prepare_layer
from opacus.grad_sample.gsm_base import OPACUS_PARAM_MONKEYPATCH_ATTRS
from opacus.layers import DPMultiheadAttention
from opacus.utils.module_utils import has_trainable_params, trainable_modules
from opacus.validators import ModuleValidator
from torch import nn
from torch.optim import Optimizer

from trustai.errors import TrustaiUserError

DP_FIX = "train without the privacy.dp check, or change the policy so Opacus supports it"


def dp_compatible(policy: nn.Module) -> tuple[nn.Module, list[dict[str, str]]]:
    """Return ``policy`` when Opacus supports all its layers, else a copy in which ModuleValidator.fix
    replaced the layers it can, with rows {module, replaced, by}. ``policy`` is never modified.

    Raises TrustaiUserError naming every layer Opacus refuses and cannot fix.
    """
    fixed = policy
    if ModuleValidator.validate(policy):
        try:
            fixed = ModuleValidator.fix(policy)  # works on a copy (torch.save / torch.load of the module)
        except (TypeError, AttributeError, pickle.PicklingError) as exc:
            raise TrustaiUserError(
                f"Opacus must replace layers in a copy of the policy, which cannot be copied: {exc}",
                where=type(policy).__name__,
                fix=DP_FIX,
            ) from None
    refused = _refused_layers(fixed)
    if refused:
        raise TrustaiUserError(
            f"Opacus cannot train these layers with differential privacy: {'; '.join(refused)}",
            where=type(policy).__name__,
            fix=DP_FIX,
        )
    before = dict(policy.named_modules())
    replaced: list[dict[str, str]] = []
    for name, layer in fixed.named_modules():  # parents come first: report a replaced layer, not its parts
        inside = any(name.startswith(f"{row['module']}.") for row in replaced)
        if name in before and type(before[name]) is not type(layer) and not inside:
            replaced.append(
                {"module": name, "replaced": type(before[name]).__name__, "by": type(layer).__name__}
            )
    return fixed, replaced


def _refused_layers(module: nn.Module) -> list[str]:
    """Layers that ModuleValidator or Opacus' per-sample gradient hooks reject, as 'name (Type): why'."""
    refused = []
    for name, layer in trainable_modules(module):
        validator = ModuleValidator.VALIDATORS.get(type(layer))
        refused += [
            f"{name} ({type(layer).__name__}): {err}" for err in (validator(layer) if validator else [])
        ]
        if next(layer.buffers(), None) is not None:
            refused.append(
                f"{name} ({type(layer).__name__}): a trainable layer with buffers, which per-frame "
                "gradients cannot cover"
            )
    return refused


def _hooked_layers(module: nn.Module) -> Iterator[nn.Module]:
    """The layers Opacus' hooks attach to (mirrors GradSampleHooks.iterate_submodules): layers with
    trainable parameters of their own; a layer without a grad sampler is handled whole by functorch."""
    if has_trainable_params(module):
        yield module
        if type(module) not in GradSampleHooks.GRAD_SAMPLERS:
            return
    for child in module.children():
        yield from _hooked_layers(child)


def _covered(layer: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters whose per-sample gradients Opacus computes from ``layer``'s hooks."""
    return layer.parameters(recurse=type(layer) not in GradSampleHooks.GRAD_SAMPLERS)


@dataclass
class Layout:
    """What a probe found: each hooked layer's batch dimension, the trainable parameters that cannot
    get per-frame gradients, as (name, reason), and each hooked layer's calls in the two-frame forward
    (per call, the shapes of its tensor inputs)."""

    batch_dims: dict[nn.Module, int]
    frozen: list[tuple[str, str]]
    inputs: dict[nn.Module, list[list[tuple[int, ...]]]]


def probe_layout(policy: nn.Module, one: dict, two: dict) -> Layout:
    """Run batch ``one`` (one frame) and ``two`` (two frames) through ``policy``'s forward, with the RNG
    state restored afterwards and no parameter or ``.grad`` touched, and compare every hooked layer's
    input shapes to find its batch dimension.

    Raises TrustaiUserError naming layers whose inputs hold the batch where Opacus cannot find it.
    """
    layers = list(_hooked_layers(policy))
    names = {layer: name for name, layer in policy.named_modules()}
    seen: list[dict[nn.Module, list[list[tuple[int, ...]]]]] = []

    def record(layer: nn.Module, inputs: tuple, _output: Any) -> None:
        seen[-1].setdefault(layer, []).append([tuple(t.shape) for t in inputs if torch.is_tensor(t)])

    trainable = [(name, p) for name, p in policy.named_parameters() if p.requires_grad]
    handles = [layer.register_forward_hook(record) for layer in layers]
    device = next(policy.parameters()).device
    try:
        with torch.random.fork_rng(
            devices=[device] if device.type == "cuda" else [], device_type=device.type
        ):
            seen.append({})
            with torch.no_grad():
                policy.forward(one)
            seen.append({})
            loss = _loss(policy.forward(two))
            grads = torch.autograd.grad(loss, [p for _, p in trainable], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    shapes_one, shapes_two = seen

    batch_dims: dict[nn.Module, int] = {}
    unbatched: set[nn.Module] = set()
    refused = []
    for layer, calls in shapes_two.items():
        dims = _batch_dims(shapes_one.get(layer, []), calls)
        if dims == set():
            unbatched.add(layer)
        elif dims in ({0}, {1}):
            batch_dims[layer] = dims.pop()
        else:
            why = "input ranks or calls differ" if -1 in dims else f"batch in input dimensions {sorted(dims)}"
            refused.append(f"{names[layer]} ({type(layer).__name__}): {why}")
    if refused:
        raise TrustaiUserError(
            "Opacus needs each layer's batch in its inputs' first or second dimension: " + "; ".join(refused),
            where=type(policy).__name__,
            fix=DP_FIX,
        )

    covered = {id(p) for layer in batch_dims for p in _covered(layer)}
    in_unbatched = {id(p) for layer in unbatched for p in _covered(layer)}
    frozen = []
    for (name, param), grad in zip(trainable, grads, strict=True):
        if id(param) in covered:
            continue
        if grad is None:
            reason = "receives no gradient"
        elif id(param) in in_unbatched:
            reason = "its layer's input has no batch dimension, so there is no per-frame gradient"
        else:
            reason = "read outside its layer's forward, so Opacus cannot give it per-frame gradients"
        frozen.append((name, reason))
    return Layout(batch_dims, frozen, shapes_two)


def _loss(output: Any) -> torch.Tensor:
    """The loss of a LeRobot policy's forward: ``(loss, outputs)`` or the loss itself."""
    return output[0] if isinstance(output, tuple) else output


def _batch_dims(calls_one: list[list[tuple[int, ...]]], calls_two: list[list[tuple[int, ...]]]) -> set[int]:
    """The input dimensions whose size differs between the two probes (-1 when the calls or ranks differ)."""
    if len(calls_one) != len(calls_two):
        return {-1}
    dims = set()
    for inputs_one, inputs_two in zip(calls_one, calls_two, strict=True):
        if [len(s) for s in inputs_one] != [len(s) for s in inputs_two]:
            return {-1}
        for a, b in zip(inputs_one, inputs_two, strict=True):
            dims |= {d for d, (x, y) in enumerate(zip(a, b, strict=True)) if x != y}
    return dims


# -- making the training objects private ----------------------------------------------------------------
class LayoutAwareHooks(GradSampleHooks):
    """Opacus' per-sample gradient hooks with each layer's batch dimension from ``batch_dims`` (0 or 1)
    and optional per-row weights (0 for phantom frames) applied to the backpropagated gradients."""

    def __init__(self, module: nn.Module, batch_dims: dict[nn.Module, int]):
        self.batch_dims = batch_dims
        self.sample_weights: torch.Tensor | None = None
        super().__init__(module, batch_first=True, loss_reduction="mean", strict=True)
        for layer, dim in batch_dims.items():
            if dim == 1 and type(layer) not in self.GRAD_SAMPLERS:
                prepare_layer(layer, batch_first=False)  # functorch replays the layer sequence-first too

    def rearrange_grad_samples(
        self, *, module: nn.Module, backprops: torch.Tensor, loss_reduction: str, batch_first: bool
    ) -> tuple[Any, torch.Tensor]:
        """Opacus' rearrangement with this layer's own batch dimension; rows weighed by sample_weights."""
        activations, backprops = super().rearrange_grad_samples(
            module=module,
            backprops=backprops,
            loss_reduction=loss_reduction,
            batch_first=self.batch_dims.get(module, 0) == 0,
        )
        if self.sample_weights is not None:
            shape = (-1,) + (1,) * (backprops.dim() - 1)
            backprops = backprops * self.sample_weights.reshape(shape).to(backprops.dtype)
        return activations, backprops


class PhantomCollate:
    """Collate for Poisson batches. An empty draw, which LeRobot policies cannot run, becomes one phantom
    frame (the dataset's first, its ``index`` set to -1) whose gradient the hooks weigh by zero: the step
    is then DP-SGD's noise-only update for an empty batch."""

    def __init__(self, collate: Callable[[list], Any], dataset: Any):
        self.collate, self.dataset = collate, dataset

    def __call__(self, frames: list) -> Any:
        if frames:
            return self.collate(frames)
        batch = self.collate([self.dataset[0]])
        batch["index"] = torch.full_like(batch["index"], -1)
        return batch


def weigh_phantoms(forward: Callable, hooks: LayoutAwareHooks) -> Callable:
    """Wrap a policy's forward so the hooks weigh each row by whether it is a real frame (index >= 0);
    the comparison stays on the device, so no host sync is added."""

    @functools.wraps(forward)
    def weighed(batch: Any, *args: Any, **kwargs: Any) -> Any:
        index = batch.get("index") if isinstance(batch, dict) else None
        hooks.sample_weights = None if index is None else index >= 0
        return forward(batch, *args, **kwargs)

    return weighed


def torch_attention_layout(module: nn.Module, state_dict: dict, prefix: str, _metadata: Any) -> None:
    """state_dict post-hook: DPMultiheadAttention layers are saved under nn.MultiheadAttention's keys
    (Opacus' own mapping), so a checkpoint of the DP-trained policy loads into the stock policy class."""
    for name, layer in module.named_modules():
        if isinstance(layer, DPMultiheadAttention):
            at = f"{prefix}{name}."
            for key in [k for k in state_dict if k.startswith(at)]:
                del state_dict[key]
            state_dict.update(layer.state_dict(prefix=at))


def rebuild_optimizer(optimizer: Optimizer, old: nn.Module, new: nn.Module) -> Optimizer:
    """An optimizer of ``optimizer``'s class over ``new`` (a ModuleValidator.fix copy of ``old``): each
    parameter joins the param group of its counterpart in ``old`` (same name, else the parameters of the
    layer it replaced), with that group's hyperparameters; groups keep their order. Parameters whose
    counterparts the optimizer did not hold stay out. Raises TrustaiUserError when a replaced layer's
    parameters were spread over several groups."""
    group_of = {id(p): i for i, group in enumerate(optimizer.param_groups) for p in group["params"]}
    old_groups = {name: group_of.get(id(p)) for name, p in old.named_parameters()}
    groups: list[dict[str, Any]] = [
        {**{k: v for k, v in group.items() if k != "params"}, "params": []}
        for group in optimizer.param_groups
    ]
    for name, param in new.named_parameters():
        index = _counterpart_group(name, old_groups)
        if index is not None:
            groups[index]["params"].append(param)
    accepted = inspect.signature(type(optimizer)).parameters
    return type(optimizer)(groups, **{k: v for k, v in optimizer.defaults.items() if k in accepted})


def _counterpart_group(name: str, old_groups: dict[str, int | None]) -> int | None:
    """The param group of parameter ``name``'s counterpart: its namesake, else the group shared by the
    old parameters under its nearest ancestor layer."""
    if name in old_groups:
        return old_groups[name]
    prefix = name
    while prefix:
        prefix = prefix.rpartition(".")[0]
        found = {g for n, g in old_groups.items() if not prefix or n.startswith(f"{prefix}.")}
        if len(found) > 1:
            raise TrustaiUserError(
                f"the layer replaced at {prefix or '(root)'} had parameters in several optimizer param "
                f"groups, so {name} has no single group to join",
                fix=DP_FIX,
            )
        if found:
            return found.pop()
    return None


def strip_opacus(module: nn.Module) -> None:
    """Remove the attributes Opacus sets on parameters."""
    for param in module.parameters():
        for attr in (*OPACUS_PARAM_MONKEYPATCH_ATTRS, "summed_grad"):
            if hasattr(param, attr):
                delattr(param, attr)
