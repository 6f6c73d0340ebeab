"""PolicyAdapter: the one interface through which every trustai audit talks to a LeRobot policy.

An adapter wraps a LeRobot policy together with its saved pre/post-processor pipelines, so audits
feed it raw dataset-scale observations (images float in [0, 1] as B×C×H×W, state B×D, ``"task"``
strings) and get back actions in dataset units.

How each policy type is driven lives in one module per type, ``trustai/lerobot/policies/`` (as
LeRobot keeps one package per type): ``act``, ``diffusion``, ``pi0``, ``pi05``, ``smolvla`` and
``groot``. Each turns a preprocessed batch into the normalised action chunk with the *undecorated*
model code (LeRobot's ``predict_action_chunk`` and samplers carry ``@torch.no_grad``), so ``actions``
is differentiable w.r.t. camera pixels, the state (except π0.5, which reads it as text tokens) and,
for the language policies, the task's token embeddings (``language_embedding``), under the caller's
grad mode. Flow-matching and diffusion noise are seeded tensors shared by every row; the caller's RNG
is untouched. ``trustai.lerobot.policies.REFUSED`` names every other LeRobot type and why it is
refused.

Loading never unpickles: only ``config.json``, the processor ``*.json`` files and ``*.safetensors``
files are read, every safetensors header is validated before LeRobot touches it, and pretrained
weights that ``model.safetensors`` overwrites anyway are switched off (torchvision ImageNet backbones
named by ``pretrained_backbone_weights``, which torchvision would download and ``torch.load``;
SmolVLA's ``load_vlm_weights``).

Offline use (nothing is downloaded): a VLA loads things by name from outside its folder: π0 and π0.5
their PaliGemma tokenizer (``policy_preprocessor.json``), SmolVLA its SmolVLM config, processor and
tokenizer (``vlm_model_name``), GR00T N1.7 its raw base checkpoint (``base_model_path``), that
checkpoint's Qwen3-VL config (``model_name``) and the Qwen3-VL processor of its preprocessor's
VLM-encode step. Each must be a local folder or already in the Hugging Face cache, else
``from_checkpoint`` refuses with the file and key to change; a backbone folder that carries its own
Python code (``auto_map``, ``*.py``: GR00T loads with ``trust_remote_code=True``) or only pickle
weights is refused too. ``from_checkpoint(..., tokenizer=<local folder>)`` replaces the tokenizer a
preprocessor names. ``tests/policies_fixtures.py`` and ``tests/vla_backbones.py`` write tiny local
backbones for the tests.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from trustai import layout
from trustai.core.manifest import PICKLE_SUFFIXES
from trustai.errors import TrustaiUserError
from trustai.lerobot.policies import driver_for
from trustai.lerobot.policies.driver import Backbone, Batch, Pipeline

if TYPE_CHECKING:
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.pretrained import PreTrainedPolicy

__all__ = ["Batch", "Modality", "Pipeline", "PolicyAdapter"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
# Files in which transformers finds code to import from a model folder (with trust_remote_code).
_CODE_MAP_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
)


@dataclass(frozen=True)
class Modality:
    """One input the policy consumes: its batch key, kind and per-sample raw shape (() for text)."""

    name: str
    kind: Literal["camera", "state", "language"]
    shape: tuple[int, ...]


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
        self._driver = driver_for(policy.config.type, where=type(policy).__name__)

    @classmethod
    def from_checkpoint(
        cls, path: Path, device: str = "cpu", seed: int = 0, tokenizer: Path | None = None
    ) -> PolicyAdapter:
        """Load a LeRobot ``pretrained_model/`` folder (or the checkpoint folder holding one) onto ``device``.

        Reads only JSON and safetensors through LeRobot's own loaders. ``tokenizer`` replaces the
        tokenizer named in the preprocessor (for offline use of language policies). Raises
        TrustaiUserError for a missing folder or file, invalid JSON, a corrupt safetensors file,
        pickle-format weights, an unsupported policy type, a backbone that is neither a local folder
        nor in the Hugging Face cache (or carries code or only pickle weights), or weights that do not
        fit the config.
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
        driver = driver_for(config_json["type"], where=str(folder / CONFIG_FILE))
        preprocessor_json = _read_json(
            folder / PREPROCESSOR_FILE, "checkpoints saved before LeRobot 0.4 lack it"
        )
        _read_json(folder / POSTPROCESSOR_FILE, "checkpoints saved before LeRobot 0.4 lack it")
        for backbone in driver.backbones(config_json, preprocessor_json, folder):
            if tokenizer is None or backbone.key != "tokenizer_name":
                _require_local_backbone(backbone, folder)

        # LeRobot's loaders print progress to stdout, which belongs to the CLI's own output.
        with contextlib.redirect_stdout(sys.stderr):
            config = _load_config(folder, device)
            driver.offline_config(config)
            policy = _load_policy(folder, config)
            preprocessor, postprocessor = _load_processors(
                folder, config, preprocessor_json, device, tokenizer
            )
        return cls(policy, preprocessor, postprocessor, seed=seed)

    @property
    def policy_type(self) -> str:
        """LeRobot's registered name of the policy type (``act``, ``diffusion``, ``pi05``, ...)."""
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
        return self._driver.has_language

    @property
    def language_embedding(self) -> nn.Module | None:
        """The embedding layer that turns the task's tokens into vectors (where language becomes
        differentiable), or None for a policy without language."""
        embedding = self._driver.language_embedding
        return embedding(self.policy) if embedding is not None else None

    @property
    def action_dim(self) -> int:
        """Size of one action vector in dataset units."""
        return self.policy.config.action_feature.shape[0]

    @property
    def chunk_size(self) -> int:
        """Number of actions ``actions`` returns per observation (1 for a non-chunked policy)."""
        return self._driver.chunk_size(self.policy)

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
            processed = self._preprocess(batch)
            with self._driver.autocast(self.policy):
                chunk = self._driver.chunk(self.policy, processed, generator)
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
                loss, _ = self.policy.forward(self._preprocess(sample))
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
        """The preprocessor's output plus what the policy's driver adds (a time axis, pixels rebuilt
        differentiably)."""
        given = dict(batch)
        if not self._driver.state_differentiable and OBS_STATE in given:
            # The state is discretised into text tokens (no gradient), and the step doing so
            # deep-copies it, which autograd forbids for a tensor that is part of a graph.
            given[OBS_STATE] = given[OBS_STATE].detach()
        if self._driver.pixels_rebuilt:  # the preprocessor reads them as numpy; the driver rebuilds them
            given.update({key: given[key].detach() for key in self.camera_keys if key in given})
        processed = self.preprocessor(given) if self.preprocessor is not None else given
        return self._driver.prepare(self.policy, batch, processed, self.preprocessor)

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


def _require_local_backbone(backbone: Backbone, folder: Path) -> None:
    """Refuse a backbone that would be downloaded, or whose folder carries code or only pickle weights."""
    file = folder / backbone.file
    local = _local_copy(backbone.name)
    if local is None:
        looks_like_path = backbone.name.startswith(("/", ".", "~")) or Path(backbone.name).drive != ""
        missing = (
            "folder does not exist"
            if looks_like_path
            else "is neither a local folder nor in the Hugging Face cache"
        )
        raise TrustaiUserError(
            f"the {backbone.what} {backbone.name!r} that {backbone.key} names {missing}; trustai never "
            "downloads at audit time",
            where=f"{file} ({backbone.key})",
            fix=f"save the {backbone.what} to a local folder and set {backbone.key} in {file.name} to its "
            f"path, or fetch {backbone.name!r} into the Hugging Face cache beforehand "
            "(huggingface-cli download) on a machine with network access",
        )
    code = sorted(p.name for p in local.glob("*.py"))
    code += [name for name in _CODE_MAP_FILES if "auto_map" in _read_json_or_empty(local / name)]
    if code:
        raise TrustaiUserError(
            f"the {backbone.what} folder carries its own Python code ({', '.join(code)}), which "
            "transformers would import and run (GR00T loads with trust_remote_code=True)",
            where=str(local),
            fix="use a backbone folder made of configs, tokenizer files and safetensors weights only",
        )
    weights = sorted(local.glob("*.safetensors"))
    if not weights and any(p.suffix in PICKLE_SUFFIXES for p in local.iterdir()):
        raise TrustaiUserError(
            f"the {backbone.what} holds weights in pickle format only; trustai never unpickles, since "
            "loading a pickle runs arbitrary code",
            where=str(local),
            fix="re-save the backbone with save_pretrained(safe_serialization=True) (model.safetensors)",
        )
    for weights_file in weights:
        _check_safetensors(weights_file)


def _local_copy(name: str) -> Path | None:
    """The folder ``name`` resolves to without a download: itself, or its Hugging Face cache snapshot."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    for probe in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        try:
            cached = try_to_load_from_cache(name, probe)
        except HFValidationError:  # not a hub id either
            return None
        if isinstance(cached, str):
            return Path(cached).parent
    return None


def _read_json_or_empty(file: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


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
