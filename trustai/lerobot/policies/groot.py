"""GR00T N1.7 (``groot``): its Qwen3-VL backbone and flow-matching action head, run with a fixed noise
tensor (seeded, shared by every row).

* **Pixels.** LeRobot's preprocessor quantises camera frames to uint8 and patchifies them with the
  Qwen3-VL image processor outside autograd. ``prepare`` rebuilds ``pixel_values`` from the raw
  float frames with the same steps (LeRobot's torch resize/crop, then the image processor, both
  differentiable on float tensors) and joins them straight-through: the values are exactly the
  preprocessor's, the gradient is that of the float path. Gradients thus reach every camera the
  checkpoint consumes; the state enters through the action head's state encoder.
* **Sampling.** ``GR00TN17ActionHead.get_action_with_features`` (``@torch.no_grad``) draws its
  initial noise for the whole batch from the global RNG; ``_chunk`` runs the same Euler steps (without
  real-time chunking) from a seeded noise tensor instead, under the bf16 autocast LeRobot uses when
  ``use_bf16`` is set.
* **Offline.** Building the policy loads the raw GR00T checkpoint named by ``base_model_path``, whose
  ``config.json`` names the Qwen3-VL backbone (``model_name``); the preprocessor's VLM-encode step
  loads the Qwen3-VL processor and tokenizer (``model_name``, which LeRobot 0.6.1 sets to
  ``nvidia/Cosmos-Reason2-2B`` in every pipeline it makes; ``offline_pipeline`` points it at the
  backbone folder the base checkpoint names, for pipelines made in training). All must be local
  folders or in the Hugging Face cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from trustai.lerobot.policies.driver import Backbone, Batch, PolicyDriver, shared_noise

if TYPE_CHECKING:
    from lerobot.policies.pretrained import PreTrainedPolicy

# LeRobot 0.6.1 hard-codes Cosmos-Reason2's Qwen3-VL config for this name instead of reading it.
_BUILT_IN_BACKBONE = "nvidia/Cosmos-Reason2-2B"
_ENCODE_STEP = "groot_n1_7_vlm_encode_v1"


def _chunk(policy: PreTrainedPolicy, batch: Batch, generator: torch.Generator) -> Tensor:
    model = policy._groot_model
    head = model.action_head
    backbone_inputs, action_inputs = model.prepare_input(
        policy._filter_groot_inputs(batch, include_action=False)
    )
    backbone_outputs = model.backbone(backbone_inputs)
    features = head._encode_features(backbone_outputs, action_inputs)
    vl_embeds, state_features = features.backbone_features, features.state_features
    rows = len(vl_embeds)
    actions = shared_noise(generator, rows, (head.action_horizon, head.action_dim)).to(vl_embeds.dtype)
    embodiment = action_inputs.embodiment_id
    dt = 1.0 / head.num_inference_timesteps
    for step in range(head.num_inference_timesteps):
        bucket = int(step / float(head.num_inference_timesteps) * head.num_timestep_buckets)
        timesteps = torch.full((rows,), bucket, device=vl_embeds.device)
        action_features = head.action_encoder(actions, timesteps, embodiment)
        if head.config.add_pos_embed:
            positions = torch.arange(action_features.shape[1], dtype=torch.long, device=vl_embeds.device)
            action_features = action_features + head.position_embedding(positions).unsqueeze(0)
        tokens = torch.cat((state_features, action_features), dim=1)
        if head.config.use_alternate_vl_dit:
            output = head.model(
                hidden_states=tokens,
                encoder_hidden_states=vl_embeds,
                timestep=timesteps,
                image_mask=backbone_outputs.image_mask,
                backbone_attention_mask=backbone_outputs.backbone_attention_mask,
            )
        else:
            output = head.model(hidden_states=tokens, encoder_hidden_states=vl_embeds, timestep=timesteps)
        velocity = head.action_decoder(output, embodiment)[:, -head.action_horizon :]
        actions = actions + dt * velocity
    actions = actions[:, : policy._resolve_prediction_horizon(actions)]
    return actions[:, :, : policy.config.action_feature.shape[0]].float()


def _chunk_size(policy: PreTrainedPolicy) -> int:
    horizon = policy._groot_model.action_head.action_horizon
    return policy._resolve_prediction_horizon(torch.empty(1, horizon, 1))


def _differentiable_pixels(
    policy: PreTrainedPolicy, raw: Batch, processed: Batch, preprocessor: Any
) -> Batch:
    """``processed`` with ``pixel_values`` joined straight-through to the raw float camera frames."""
    from lerobot.policies.groot.processor_groot import (
        GrootN17PackInputsStep,
        GrootN17VLMEncodeStep,
        _transform_n1_7_image_for_vlm_torch,
    )

    steps = getattr(preprocessor, "steps", [])
    pack = next((s for s in steps if isinstance(s, GrootN17PackInputsStep)), None)
    encode = next((s for s in steps if isinstance(s, GrootN17VLMEncodeStep)), None)
    if pack is None or encode is None or encode.use_albumentations or "pixel_values" not in processed:
        return processed  # no float path to rebuild (cv2 resizing is not differentiable)
    views = [_with_time_axis(raw[key], pack.video_horizon) for key in pack._ordered_image_keys(raw)]
    frames = [
        _transform_n1_7_image_for_vlm_torch(
            view[row, step].float() * 255.0,
            image_crop_size=encode.image_crop_size,
            image_target_size=encode.image_target_size,
            shortest_image_edge=encode.shortest_image_edge,
            crop_fraction=encode.crop_fraction,
            letter_box_transform=encode.letter_box_transform,
        )
        for row in range(len(views[0]))
        for step in range(views[0].shape[1])
        for view in views
    ]
    rebuilt = encode.proc.image_processor(images=frames, return_tensors="pt")["pixel_values"]
    quantised = processed["pixel_values"]
    rebuilt = rebuilt.to(quantised)
    return {**processed, "pixel_values": quantised.detach() + (rebuilt - rebuilt.detach())}


def _with_time_axis(frames: Tensor, horizon: int | None) -> Tensor:
    """(B, C, H, W) frames as (B, T, C, H, W) at the checkpoint's video horizon (first frame repeated,
    as LeRobot's ``_align_video_horizon`` pads)."""
    video = frames.unsqueeze(1) if frames.ndim == 4 else frames
    if horizon is None or horizon <= 0 or video.shape[1] == horizon:
        return video
    if video.shape[1] > horizon:
        return video[:, -horizon:]
    return torch.cat([video[:, :1].expand(-1, horizon - video.shape[1], -1, -1, -1), video], dim=1)


def _token_embedding(policy: PreTrainedPolicy) -> nn.Module:
    return policy._groot_model.backbone.model.get_input_embeddings()


def _base_config(base: str) -> Path:
    return Path(base).expanduser() / "config.json"


def _named_backbone(base: str) -> str | None:
    """The Qwen3-VL backbone (``model_name``) the raw GR00T checkpoint folder ``base`` names, unless it
    is LeRobot's built-in one or ``base`` is no local checkpoint."""
    base_config = _base_config(base)
    model_name = _json_key(base_config, "model_name") if base_config.is_file() else None
    if isinstance(model_name, str) and model_name.rstrip("/") != _BUILT_IN_BACKBONE:
        return model_name
    return None


def _backbones(config: dict[str, Any], preprocessor: dict[str, Any], folder: Any) -> list[Backbone]:
    found = []
    base = config.get("base_model_path")
    if isinstance(base, str):
        found.append(Backbone(base, "config.json", "base_model_path", "raw GR00T N1.7 checkpoint"))
        model_name = _named_backbone(base)
        if model_name is not None:
            found.append(
                Backbone(model_name, str(_base_config(base)), "model_name", "Qwen3-VL backbone config")
            )
    for step in preprocessor.get("steps", []):
        name = step.get("config", {}).get("model_name")
        if step.get("registry_name") == _ENCODE_STEP and isinstance(name, str):
            found.append(
                Backbone(name, "policy_preprocessor.json", "model_name", "Qwen3-VL processor and tokenizer")
            )
    return found


def _offline_pipeline(config: Any, preprocessor: Any) -> None:
    """Point the VLM-encode step LeRobot built with its built-in hub name at the local Qwen3-VL folder
    the raw base checkpoint (``base_model_path``) names, so the step loads its processor from there and
    the saved pipeline keeps that folder. A step naming anything else is left alone."""
    from lerobot.policies.groot.processor_groot import GrootN17VLMEncodeStep

    base = getattr(config, "base_model_path", None)
    backbone = _named_backbone(base) if isinstance(base, str) else None
    if backbone is None or not Path(backbone).expanduser().is_dir():
        return
    for step in getattr(preprocessor, "steps", []):
        if isinstance(step, GrootN17VLMEncodeStep) and step.model_name.rstrip("/") == _BUILT_IN_BACKBONE:
            step.model_name = backbone


def _json_key(file: Path, key: str) -> Any:
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return loaded.get(key) if isinstance(loaded, dict) else None


def _autocast(policy: PreTrainedPolicy) -> torch.autocast:
    device = next(policy.parameters()).device
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=policy.config.use_bf16)


DRIVER = PolicyDriver(
    _chunk,
    _chunk_size,
    has_language=True,
    prepare=_differentiable_pixels,
    pixels_rebuilt=True,
    language_embedding=_token_embedding,
    backbones=_backbones,
    offline_pipeline=_offline_pipeline,
    autocast=_autocast,
)
