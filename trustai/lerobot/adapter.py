"""PolicyAdapter: the one interface through which every trustai audit talks to a LeRobot policy.

An adapter wraps a LeRobot policy together with its saved pre/post-processor pipelines, so audits
feed it raw dataset-scale observations (images float in [0, 1] as B×C×H×W, state B×D, ``"task"``
strings) and get back actions in dataset units. Supported policy types and how each is driven:

* ``act``: the ACT model's forward pass in eval mode (no VAE sampling, no dropout); deterministic.
* ``diffusion``: DDPM/DDIM sampling through ``DiffusionModel.generate_actions`` with a fixed initial
  noise (drawn once from a ``torch.Generator`` seeded with ``seed`` and shared by every row) and the
  scheduler's per-step noise drawn from the global RNG re-seeded with ``seed`` inside a forked RNG
  state, so the caller's RNG stream is untouched. Observations without a time axis are repeated
  ``n_obs_steps`` times, as ``select_action`` does on an episode's first step.
* ``pi05``: flow-matching sampling through ``PI05Pytorch.sample_actions`` with a fixed noise tensor
  (seeded, shared by every row). Its state enters only as discretised text tokens, so gradients reach
  camera pixels but not the state.

``predict_action_chunk`` and ``sample_actions`` carry ``@torch.no_grad``; the adapter calls the
undecorated model methods instead, so ``actions`` is differentiable with respect to camera pixels
(and state for ACT and Diffusion) under the caller's grad mode.

Loading never unpickles: only ``config.json``, the processor ``*.json`` files and ``*.safetensors``
files are read, every safetensors header is validated before LeRobot touches it, and torchvision
ImageNet backbone weights named in a config (``pretrained_backbone_weights``, which torchvision would
download and read with ``torch.load``) are switched off because ``model.safetensors`` overwrites them.

Offline use: π0.5's preprocessor loads the PaliGemma tokenizer named in ``policy_preprocessor.json``
(``google/paligemma-3b-pt-224``). With ``HF_HUB_OFFLINE=1`` it must already be in the Hugging Face
cache, or ``from_checkpoint(..., tokenizer=<local folder>)`` points it at a saved tokenizer
(``tests/policies_fixtures.py`` builds a tiny word-level one with ``tokenizers`` for the tests).

Not supported: GR00T (``groot``) builds its backbone with ``GR00TN17.from_pretrained`` from the hub with
``trust_remote_code=True`` even for a fine-tuned checkpoint, and SmolVLA (``smolvla``) fetches its
SmolVLM config and processor from the hub in its constructor; neither can be built offline, so
``from_checkpoint`` refuses them. Both are flow-matching policies and would plug in as one more
``_SAMPLERS`` entry that, as for π0.5, calls their undecorated sampler with a fixed noise tensor.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from lerobot.utils.constants import (
    ACTION,
    OBS_IMAGES,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    OBS_STATE,
)
from safetensors import SafetensorError, safe_open
from torch import Tensor

from trustai import layout
from trustai.core.manifest import PICKLE_SUFFIXES
from trustai.errors import TrustaiUserError

if TYPE_CHECKING:
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.pretrained import PreTrainedPolicy

Batch = dict[str, Any]
Pipeline = Callable[[Any], Any]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
UNSUPPORTED_TYPES = {
    "groot": "GR00T builds its backbone from the Hugging Face hub with trust_remote_code=True",
    "smolvla": "SmolVLA fetches its SmolVLM backbone config and processor from the Hugging Face hub",
}


@dataclass(frozen=True)
class Modality:
    """One input the policy consumes: its batch key, kind and per-sample raw shape (() for text)."""

    name: str
    kind: Literal["camera", "state", "language"]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Sampler:
    """How one policy type turns a preprocessed batch into a normalised action chunk."""

    chunk: Callable[[PreTrainedPolicy, Batch, torch.Generator], Tensor]
    chunk_size: Callable[[Any], int]
    has_language: bool
    state_differentiable: bool = True
    prepare: Callable[[Any, Batch], Batch] = lambda config, batch: batch


def _act_chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    batch = dict(batch)
    batch[OBS_IMAGES] = [batch[key] for key in policy.config.image_features]
    return policy.model(batch)[0]


def _with_time_axis(config: Any, batch: Batch) -> Batch:
    """Give state and camera inputs the (B, n_obs_steps, ...) layout Diffusion expects."""
    batch = dict(batch)
    if batch[OBS_STATE].ndim == 2:
        batch[OBS_STATE] = batch[OBS_STATE].unsqueeze(1).expand(-1, config.n_obs_steps, -1)
    for key in config.image_features:
        if batch[key].ndim == 4:
            batch[key] = batch[key].unsqueeze(1).expand(-1, config.n_obs_steps, -1, -1, -1)
    return batch


def _diffusion_chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    config = policy.config
    batch = dict(batch)
    batch[OBS_IMAGES] = torch.stack([batch[key] for key in config.image_features], dim=-4)
    size = len(batch[OBS_STATE])
    noise = _shared_noise(generator, size, (config.horizon, config.action_feature.shape[0]))
    return policy.diffusion.generate_actions(batch, noise=noise)


def _pi05_chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    from lerobot.policies.pi05.modeling_pi05 import PI05Pytorch

    config = policy.config
    images, image_masks = policy._preprocess_images(batch)
    tokens, token_masks = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
    noise = _shared_noise(generator, len(tokens), (config.chunk_size, config.max_action_dim))
    sample_actions = inspect.unwrap(PI05Pytorch.sample_actions)
    actions = sample_actions(policy.model, images, image_masks, tokens, token_masks, noise=noise)
    return actions[:, :, : config.action_feature.shape[0]]


def _shared_noise(generator: torch.Generator, rows: int, shape: tuple[int, ...]) -> Tensor:
    """One seeded noise sample repeated for every row, so a row's actions do not depend on its position."""
    noise = torch.randn((1, *shape), generator=generator, device=generator.device)
    return noise.expand(rows, *shape)


_SAMPLERS: dict[str, _Sampler] = {
    "act": _Sampler(_act_chunk, lambda config: config.chunk_size, has_language=False),
    "diffusion": _Sampler(
        _diffusion_chunk, lambda config: config.n_action_steps, has_language=False, prepare=_with_time_axis
    ),
    "pi05": _Sampler(
        _pi05_chunk, lambda config: config.chunk_size, has_language=True, state_differentiable=False
    ),
}


class PolicyAdapter:
    """A LeRobot policy with its pre/post-processors, seen through one audit-facing interface.

    ``actions`` and ``per_sample_loss`` take raw dataset-scale batches, run the policy's own
    preprocessor (normalisation, tokenisation), are deterministic for a given ``seed``, and leave
    the policy's train/eval mode and the caller's RNG state as they found them.
    """

    def __init__(
        self,
        policy: PreTrainedPolicy,
        preprocessor: Pipeline | None = None,
        postprocessor: Pipeline | None = None,
        seed: int = 0,
    ):
        """Wrap ``policy``; a missing pipeline means inputs/outputs are already in policy space.

        Raises TrustaiUserError when the policy type is not one the adapter can drive.
        """
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.seed = seed
        self._sampler = _sampler_for(policy.config.type, where=type(policy).__name__)

    @classmethod
    def from_checkpoint(
        cls, path: Path, device: str = "cpu", seed: int = 0, tokenizer: Path | None = None
    ) -> PolicyAdapter:
        """Load a LeRobot ``pretrained_model/`` folder (or the checkpoint folder holding one) onto ``device``.

        Reads only JSON and safetensors through LeRobot's own loaders. ``tokenizer`` replaces the
        tokenizer named in the preprocessor (for offline use of language policies). Raises
        TrustaiUserError for a missing folder or file, invalid JSON, a corrupt safetensors file,
        pickle-format weights, an unsupported policy type, or weights that do not fit the config.
        """
        folder = layout.model_folder(Path(path))
        config_json = _read_json(folder / CONFIG_FILE, "the folder is not a LeRobot pretrained_model folder")
        _require_safetensors_weights(folder)
        for file in sorted(folder.glob("*.safetensors")):
            _check_safetensors(file)
        if not isinstance(config_json.get("type"), str):
            raise TrustaiUserError(
                "config.json names no policy 'type'",
                where=str(folder / CONFIG_FILE),
                fix="restore config.json from the original checkpoint or re-save the policy",
            )
        _sampler_for(config_json["type"], where=str(folder / CONFIG_FILE))
        preprocessor_json = _read_json(
            folder / PREPROCESSOR_FILE, "checkpoints saved before LeRobot 0.4 lack it"
        )
        _read_json(folder / POSTPROCESSOR_FILE, "checkpoints saved before LeRobot 0.4 lack it")

        # LeRobot's loaders print progress to stdout, which belongs to the CLI's own output.
        with contextlib.redirect_stdout(sys.stderr):
            config = _load_config(folder, device)
            policy = _load_policy(folder, config)
            preprocessor, postprocessor = _load_processors(
                folder, config, preprocessor_json, device, tokenizer
            )
        return cls(policy, preprocessor, postprocessor, seed=seed)

    @property
    def policy_type(self) -> str:
        """LeRobot's registered name of the policy type (``act``, ``diffusion``, ``pi05``)."""
        return self.policy.config.type

    @property
    def camera_keys(self) -> list[str]:
        """The ``observation.images.*`` inputs the policy reads from a dataset, in the policy's order."""
        empty = {
            f"{OBS_IMAGES}.empty_camera_{i}" for i in range(getattr(self.policy.config, "empty_cameras", 0))
        }
        return [key for key in self.policy.config.image_features if key not in empty]

    @property
    def state_key(self) -> str | None:
        """``observation.state`` when the policy consumes robot state, else None."""
        return OBS_STATE if OBS_STATE in self.policy.config.input_features else None

    @property
    def has_language(self) -> bool:
        """Whether the policy consumes a ``"task"`` string (tokenised by its preprocessor)."""
        return self._sampler.has_language

    @property
    def action_dim(self) -> int:
        """Size of one action vector in dataset units."""
        return self.policy.config.action_feature.shape[0]

    @property
    def chunk_size(self) -> int:
        """Number of actions ``actions`` returns per observation (1 for a non-chunked policy)."""
        return self._sampler.chunk_size(self.policy.config)

    @property
    def modalities(self) -> list[Modality]:
        """Every input the policy consumes: cameras (C, H, W), state (D,) and language (a string)."""
        features = self.policy.config.input_features
        found = [Modality(key, "camera", tuple(features[key].shape)) for key in self.camera_keys]
        if self.state_key is not None:
            found.append(Modality(self.state_key, "state", tuple(features[self.state_key].shape)))
        if self.has_language:
            found.append(Modality("task", "language", ()))
        return found

    def actions(self, batch: Batch) -> Tensor:
        """Predict one action chunk per raw observation: (B, chunk_size, action_dim) in dataset units.

        ``batch`` holds the camera keys (float in [0, 1], B×C×H×W), the state (B×D) and, for
        language policies, ``"task"`` (list of B strings). Deterministic for this adapter's seed and
        differentiable w.r.t. camera pixels (and state, except for π0.5) under the caller's grad
        mode. The result lies on the postprocessor's output device (CPU for LeRobot's pipelines).
        """
        self._require_inputs(batch)
        with self._deterministic() as generator:
            processed = self._sampler.prepare(self.policy.config, self._preprocess(batch))
            chunk = self._sampler.chunk(self.policy, processed, generator)
        return self.postprocessor(chunk) if self.postprocessor is not None else chunk

    def per_sample_loss(self, batch: Batch) -> Tensor:
        """The policy's own training loss for each sample of a raw dataset batch: shape (B,).

        ``batch`` is a collated LeRobot dataset batch (observations, ``"action"`` as B×chunk×D,
        ``"action_is_pad"``, ``"task"``). Each sample runs alone through ``policy.forward`` in eval
        mode with the RNG seeded by ``seed``, so a sample's loss does not depend on the rest of the
        batch and diffusion/flow-matching noise and timesteps are the same for every sample. In eval
        mode ACT's loss is its L1 term only (the VAE encoder runs in training mode only).
        """
        self._require_inputs(batch)
        if ACTION not in batch:
            raise ValueError("per_sample_loss needs the ground-truth 'action' in the batch")
        losses = []
        for row in range(len(batch[ACTION])):
            sample = {key: _take_row(value, row) for key, value in batch.items()}
            with self._deterministic():
                processed = self._sampler.prepare(self.policy.config, self._preprocess(sample))
                loss, _ = self.policy.forward(processed)
            losses.append(loss.reshape(()))
        return torch.stack(losses)

    def validate_dataset_features(self, features: dict[str, dict[str, Any]]) -> None:
        """Check a dataset's ``meta.features`` provide every input and the action the policy needs.

        Raises TrustaiUserError listing each required feature the dataset lacks or holds with a
        different shape (images compared channel-first, as the policy sees them).
        """
        from lerobot.utils.feature_utils import dataset_to_policy_features

        provided = dataset_to_policy_features(features)
        needed = {key: self.policy.config.input_features[key].shape for key in self.camera_keys}
        if self.state_key is not None:
            needed[self.state_key] = self.policy.config.input_features[self.state_key].shape
        needed[ACTION] = self.policy.config.action_feature.shape
        problems = []
        for key, shape in needed.items():
            if key not in provided:
                problems.append(f"missing {key} (policy expects shape {tuple(shape)})")
            elif tuple(provided[key].shape) != tuple(shape):
                problems.append(
                    f"{key} has shape {tuple(provided[key].shape)}, the policy expects {tuple(shape)}"
                )
        if problems:
            raise TrustaiUserError(
                f"the dataset does not match the {self.policy_type} policy's inputs: " + "; ".join(problems),
                where="dataset features",
                fix="audit the policy with a dataset recorded with the same cameras, resolutions and "
                "state/action dimensions it was trained on",
            )

    def _require_inputs(self, batch: Batch) -> None:
        keys = [modality.name for modality in self.modalities]
        missing = [key for key in keys if key not in batch]
        if missing:
            raise ValueError(f"batch lacks inputs the {self.policy_type} policy needs: {', '.join(missing)}")

    def _preprocess(self, batch: Batch) -> Batch:
        if not self._sampler.state_differentiable and OBS_STATE in batch:
            # The state is discretised into text tokens (no gradient), and the step doing so
            # deep-copies it, which autograd forbids for a tensor that is part of a graph.
            batch = {**batch, OBS_STATE: batch[OBS_STATE].detach()}
        return self.preprocessor(batch) if self.preprocessor is not None else batch

    @contextlib.contextmanager
    def _deterministic(self) -> Iterator[torch.Generator]:
        """Eval mode and a freshly seeded RNG, both restored afterwards; yields a seeded generator."""
        device = next(self.policy.parameters()).device
        fork = (
            torch.random.fork_rng(devices=[])
            if device.type == "cpu"
            else torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)
        )
        was_training = self.policy.training
        self.policy.eval()
        try:
            with fork:
                torch.manual_seed(self.seed)
                yield torch.Generator(device=device).manual_seed(self.seed)
        finally:
            self.policy.train(was_training)


def _sampler_for(policy_type: str, where: str) -> _Sampler:
    if policy_type in _SAMPLERS:
        return _SAMPLERS[policy_type]
    reason = UNSUPPORTED_TYPES.get(policy_type, "trustai has no deterministic, differentiable driver for it")
    raise TrustaiUserError(
        f"policy type {policy_type!r} is not supported by trustai audits ({reason})",
        where=where,
        fix=f"audit a policy of a supported type: {', '.join(sorted(_SAMPLERS))}",
    )


def _take_row(value: Any, row: int) -> Any:
    if isinstance(value, Tensor) and value.ndim > 0:
        return value[row : row + 1]
    if isinstance(value, list | tuple):
        return value[row : row + 1]
    return value


def _read_json(file: Path, missing_hint: str) -> dict[str, Any]:
    if not file.is_file():
        raise TrustaiUserError(
            f"{file.name} is missing ({missing_hint})",
            where=str(file.parent),
            fix=f"point at a folder written by LeRobot's save_pretrained (it holds {file.name})",
        )
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrustaiUserError(
            f"not valid JSON ({exc})",
            where=str(file),
            fix=f"restore {file.name} from the original checkpoint or re-save the policy",
        ) from exc
    if not isinstance(loaded, dict):
        raise TrustaiUserError(
            "expected a JSON object", where=str(file), fix=f"restore {file.name} from the original checkpoint"
        )
    return loaded


def _require_safetensors_weights(folder: Path) -> None:
    if (folder / WEIGHTS_FILE).is_file():
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise TrustaiUserError(
            f"weights are in pickle format ({', '.join(pickled)}); trustai never unpickles checkpoints, "
            "since loading a pickle runs arbitrary code",
            where=str(folder),
            fix=f"re-save the policy with LeRobot's save_pretrained, which writes {WEIGHTS_FILE}",
        )
    raise TrustaiUserError(
        f"{WEIGHTS_FILE} is missing",
        where=str(folder),
        fix=f"point at a folder written by LeRobot's save_pretrained (it holds {WEIGHTS_FILE})",
    )


def _check_safetensors(file: Path) -> None:
    try:
        with safe_open(str(file), framework="pt"):
            pass
    except SafetensorError as exc:
        raise TrustaiUserError(
            f"corrupt safetensors file ({exc}); it may be truncated by an interrupted copy or save",
            where=str(file),
            fix="copy the checkpoint again from its source or re-save the policy",
        ) from exc


def _load_config(folder: Path, device: str) -> PreTrainedConfig:
    import lerobot.policies  # noqa: F401  (registers every policy config type; a fresh process or Ray worker has not)
    from lerobot.configs import PreTrainedConfig

    try:
        config = PreTrainedConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise TrustaiUserError(
            f"not a valid LeRobot policy config ({exc})",
            where=str(folder / CONFIG_FILE),
            fix="restore config.json from the original checkpoint or re-save the policy",
        ) from exc
    config.device = device
    if getattr(config, "pretrained_backbone_weights", None) is not None:
        # model.safetensors overwrites the backbone; fetching ImageNet weights would hit the network
        # and torch.load (pickle) them.
        config.pretrained_backbone_weights = None
    return config


def _load_policy(folder: Path, config: PreTrainedConfig) -> PreTrainedPolicy:
    from lerobot.policies.factory import get_policy_class

    try:
        policy = get_policy_class(config.type).from_pretrained(folder, config=config, local_files_only=True)
    except Exception as exc:
        raise TrustaiUserError(
            f"the {config.type} policy could not be built and loaded ({exc})",
            where=str(folder / WEIGHTS_FILE),
            fix="use the model.safetensors saved together with this config.json, and install any "
            "package the message names",
        ) from exc
    _check_weights_fit(policy, folder / WEIGHTS_FILE)
    return policy


def _check_weights_fit(policy: PreTrainedPolicy, file: Path) -> None:
    """Every policy tensor must come from the file with the same shape.

    LeRobot loads non-strictly and π0.5 swallows load errors, which would leave random weights.
    """
    state = policy.state_dict()
    with safe_open(str(file), framework="pt") as stored_file:
        stored = {
            (key if key in state else f"model.{key}"): tuple(stored_file.get_slice(key).get_shape())
            for key in stored_file.keys()  # noqa: SIM118 (safe_open is not a mapping)
        }
    loaded = {state[key].data_ptr() for key in stored if key in state}
    # Tied tensors (shared storage) are saved once under one of their names.
    missing = [key for key, tensor in state.items() if key not in stored and tensor.data_ptr() not in loaded]
    mismatched = [
        f"{key} {stored[key]} vs {tuple(state[key].shape)}"
        for key in stored
        if key in state and stored[key] != tuple(state[key].shape)
    ]
    if missing or mismatched:
        details = [f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})"] if missing else []
        if mismatched:
            details.append(f"{len(mismatched)} shapes differ (e.g. {', '.join(mismatched[:3])})")
        raise TrustaiUserError(
            f"the weights do not fit the architecture in {CONFIG_FILE}: " + "; ".join(details),
            where=str(file),
            fix="use the model.safetensors saved together with this config.json",
        )


def _load_processors(
    folder: Path,
    config: PreTrainedConfig,
    preprocessor_json: dict[str, Any],
    device: str,
    tokenizer: Path | None,
) -> tuple[Pipeline, Pipeline]:
    from lerobot.policies.factory import make_pre_post_processors

    steps = {step.get("registry_name") for step in preprocessor_json.get("steps", [])}
    overrides: dict[str, dict[str, Any]] = {}
    if "device_processor" in steps:
        overrides["device_processor"] = {"device": device}
    if tokenizer is not None:
        overrides["tokenizer_processor"] = {"tokenizer_name": str(tokenizer)}
    try:
        return make_pre_post_processors(config, pretrained_path=str(folder), preprocessor_overrides=overrides)
    except Exception as exc:
        raise TrustaiUserError(
            f"the pre/post-processor pipelines could not be loaded ({exc})",
            where=str(folder / PREPROCESSOR_FILE),
            fix="restore the policy_*processor* files from the original checkpoint; for a language "
            "policy offline, put its tokenizer in the Hugging Face cache or pass a local tokenizer folder",
        ) from exc
