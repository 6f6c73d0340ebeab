"""Tiny local VLA backbones, written by the tests (nothing downloaded, nothing committed as binaries),
and tiny real SmolVLA, GR00T N1.7 and π0 policies built on them for the dataset of
``tests/policies_fixtures.py`` (two 3×32×32 cameras, a 14-dof state and action, tasks).

* ``write_smolvlm_backbone``: a SmolVLM folder (``SmolVLMConfig``: vision 1 layer, hidden 32, image
  64, patch 16; Llama text model 2 layers, hidden 64, 4 heads / 2 KV heads, head_dim 16; scale
  factor 2), its ``SmolVLMProcessor`` (``image_seq_len=4``) and a word-level fast tokenizer with
  SmolVLM's special tokens. ``SmolVLAPolicy`` builds its VLM from it with ``load_vlm_weights=False``.
* ``write_qwen3vl_backbone``: a Qwen3-VL folder (text hidden 64, 2 layers, ``mrope_section
  [4, 2, 2]``; vision depth 2, hidden 32, patch 16, merge 2), Qwen2-VL image / Qwen3-VL video
  processors and a word-level tokenizer with Qwen's special tokens and a minimal chat template.
* ``write_groot_base``: a raw GR00T N1.7 checkpoint (``GR00TN17Config`` with ``model_name`` = that
  Qwen3-VL folder, a 4-layer DiT) with a ``processor_config.json`` that keeps camera frames at
  32×32, so ``GrootPolicy`` builds from it offline.

``tiny_groot`` has the GR00T driver (``offline_pipeline``, as ``trustai train`` does) point the
preprocessor's VLM-encode step, which LeRobot 0.6.1 hard-codes to ``nvidia/Cosmos-Reason2-2B``, at
the Qwen3-VL folder the base names; the saved pipeline keeps that path.
"""

import json
from pathlib import Path

import torch
from lerobot.configs import PolicyFeature

from tests.policies_fixtures import (
    TASKS,
    Built,
    _split,
    _with_processors,
    policy_features,
    tiny_paligemma_policy,
)

# Words of every task the tests and the synthetic datasets use; anything else maps to <unk>.
TASK_WORDS = sorted({*" ".join(TASKS).split(), "push", "block", "left", "right", "perform", "task"})
SMOLVLM_SPECIAL = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
QWEN_SPECIAL = {
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
}
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|> {% endfor %}"
)


def _word_tokenizer(folder: Path, specials: list[str], words: list[str], **named: str) -> dict[str, int]:
    """Save a word-level fast tokenizer (``tokenizers`` WordLevel, whitespace split) to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(dict.fromkeys([*specials, *words]))}
    model = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, **named)
    tokenizer.save_pretrained(folder)
    return vocab


def write_smolvlm_backbone(folder: Path) -> Path:
    """Write a tiny SmolVLM (config, processor, tokenizer; no weights) to ``folder``; return it."""
    from transformers import SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<unk>", "<|im_start|>", *SMOLVLM_SPECIAL.values()]
    vocab = _word_tokenizer(
        folder,
        specials,
        TASK_WORDS,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        extra_special_tokens=SMOLVLM_SPECIAL,
    )
    from transformers import AutoTokenizer

    config = SmolVLMConfig(
        vision_config={
            "num_hidden_layers": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        text_config={
            "model_type": "llama",
            "num_hidden_layers": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "vocab_size": len(vocab),
        },
        scale_factor=2,
        image_token_id=vocab["<image>"],
    )
    config.save_pretrained(folder)
    size = {"longest_edge": 64}
    SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=size, max_image_size=size, do_image_splitting=False),
        tokenizer=AutoTokenizer.from_pretrained(folder),
        video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
        image_seq_len=4,
    ).save_pretrained(folder)
    return folder


def write_qwen3vl_backbone(folder: Path) -> Path:
    """Write a tiny Qwen3-VL (config, image/video processors, tokenizer; no weights) to ``folder``."""
    from transformers import (
        AutoTokenizer,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", *QWEN_SPECIAL.values()]
    vocab = _word_tokenizer(
        folder,
        specials,
        ["user", *TASK_WORDS],
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        extra_special_tokens=QWEN_SPECIAL,
    )
    config = Qwen3VLConfig(
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "vocab_size": len(vocab),
            "rope_scaling": {"mrope_interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default"},
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    config.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    size = {"shortest_edge": 32 * 32, "longest_edge": 64 * 64}
    Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=16, merge_size=2),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(size=size, patch_size=16, merge_size=2),
        chat_template=QWEN_CHAT_TEMPLATE,
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_groot_base(folder: Path, qwen: Path) -> Path:
    """Write a tiny raw GR00T N1.7 checkpoint on the Qwen3-VL folder ``qwen`` to ``folder``."""
    from lerobot.policies.groot.groot_n1_7 import GR00TN17, GR00TN17Config

    torch.manual_seed(0)
    config = GR00TN17Config(
        model_name=str(qwen),
        backbone_model_type="qwen",
        model_dtype="float32",
        dtype="float32",
        select_layer=2,
        backbone_embedding_dim=64,
        hidden_size=32,
        input_embedding_dim=32,
        max_state_dim=16,
        max_action_dim=16,
        action_horizon=5,
        max_seq_len=32,
        num_inference_timesteps=2,
        diffusion_model_cfg={
            "positional_embeddings": None,
            "num_layers": 4,
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "norm_type": "ada_norm",
            "dropout": 0.0,
            "final_dropout": True,
            "output_dim": 32,
            "interleave_self_attention": True,
        },
        vl_self_attention_cfg={
            "positional_embeddings": None,
            "num_layers": 1,
            "num_attention_heads": 2,
            "attention_head_dim": 32,
            "dropout": 0.0,
            "final_dropout": True,
        },
    )
    GR00TN17(config, load_backbone_weights=False).save_pretrained(folder)
    processor = {"processor_kwargs": {"image_target_size": [32, 32], "image_crop_size": [32, 32]}}
    (folder / "processor_config.json").write_text(json.dumps(processor))
    return folder


def tiny_smolvla(backbone: Path, features: dict[str, PolicyFeature] | None = None) -> Built:
    """SmolVLA on the SmolVLM folder ``backbone``: images padded to 64×64, chunks of 5, 2 Euler steps."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    torch.manual_seed(0)
    config = SmolVLAConfig(
        **_split(features or policy_features()),
        device="cpu",
        vlm_model_name=str(backbone),
        load_vlm_weights=False,
        chunk_size=5,
        n_action_steps=5,
        max_state_dim=16,
        max_action_dim=16,
        num_steps=2,
        resize_imgs_with_padding=(64, 64),
        num_vlm_layers=2,
        expert_width_multiplier=0.5,
        tokenizer_max_length=16,
    )
    return _with_processors(SmolVLAPolicy(config))


def tiny_groot(base: Path, features: dict[str, PolicyFeature] | None = None) -> Built:
    """GR00T N1.7 from the raw checkpoint ``base``, chunks of 5, float32; its VLM-encode step reads
    the Qwen3-VL folder ``base`` names instead of the hub's Cosmos-Reason2."""
    from lerobot.policies.groot.configuration_groot import GrootConfig
    from lerobot.policies.groot.modeling_groot import GrootPolicy

    from trustai.lerobot.policies.groot import DRIVER

    torch.manual_seed(0)
    config = GrootConfig(
        **_split(features or policy_features()),
        device="cpu",
        base_model_path=str(base),
        chunk_size=5,
        n_action_steps=5,
        max_state_dim=16,
        max_action_dim=16,
        use_bf16=False,
    )
    policy, preprocessor, postprocessor = _with_processors(GrootPolicy(config))
    DRIVER.offline_pipeline(config, preprocessor)
    return policy, preprocessor, postprocessor


def tiny_pi0(tokenizer: Path, features: dict[str, PolicyFeature] | None = None) -> Built:
    """π0 with the tiny Gemma/SigLIP sizes of ``tiny_pi05_architecture`` (keep it active while
    building and loading), 32×32 images, chunks of 5, 2 Euler steps, tokenising with ``tokenizer``."""
    from lerobot.policies.pi0 import modeling_pi0, processor_pi0
    from lerobot.policies.pi0.configuration_pi0 import PI0Config

    return tiny_paligemma_policy(
        PI0Config, modeling_pi0.PI0Policy, processor_pi0, tokenizer, features, tokenizer_max_length=16
    )
