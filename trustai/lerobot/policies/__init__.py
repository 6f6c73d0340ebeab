"""One module per LeRobot policy type that trustai governs, as LeRobot keeps one package per type.

Each module (``act``, ``diffusion``, ``pi0``, ``pi05``, ``smolvla``, ``groot``) defines ``DRIVER``, a
``PolicyDriver`` (``trustai.lerobot.policies.driver``): how that type turns a preprocessed batch into
a normalised action chunk, deterministically and differentiably, and what it needs besides its own
folder. ``driver_for`` picks the module by LeRobot's registered type name; ``REFUSED`` says why each
other type of LeRobot 0.6.1 is refused.
"""

import importlib

from trustai.errors import TrustaiUserError
from trustai.lerobot.policies.driver import PolicyDriver

GOVERNED = ("act", "diffusion", "pi0", "pi05", "smolvla", "groot")
REFUSED = {
    "pi0_fast": "it decodes discrete FAST action tokens autoregressively (argmax), so no gradient reaches "
    "its inputs through the actions",
    "vqbet": "it picks actions through discrete VQ codebook indices, which no gradient crosses",
    "tdmpc": "it plans every action with sampled MPPI trajectories and elite selection (online RL), "
    "not a deterministic action chunk",
    "gaussian_actor": "it is an online-RL (SAC) actor sampling a squashed Gaussian, and its encoder "
    "loads lerobot/resnet10 with trust_remote_code",
    "evo1": "its InternVL3 backbone is loaded with trust_remote_code (the hub's own Python code)",
    "wall_x": "its Qwen backbone is loaded with trust_remote_code and one mode decodes FAST tokens",
    "molmoact2": "its MolmoAct2 backbone comes from the hub and one mode decodes discrete action tokens",
    "lingbot_va": "it is an autoregressive video-action world model on a hub checkpoint; no driver yet",
    "fastwam": "it is a world-action model on a 5B Wan2.2 video-diffusion backbone from the hub",
    "vla_jepa": "it needs Qwen3-VL and V-JEPA2 backbones from the hub; no driver yet",
    "eo1": "it needs a Qwen2.5-VL backbone from the hub; no driver yet",
    "xvla": "it needs a BART language encoder from the hub; no driver yet",
    "multi_task_dit": "it needs a CLIP encoder from the hub; no driver yet",
}


def driver_for(policy_type: str, where: str) -> PolicyDriver:
    """The driver of ``policy_type``; raises TrustaiUserError (naming ``where``) for any other type."""
    if policy_type in GOVERNED:
        return importlib.import_module(f"trustai.lerobot.policies.{policy_type}").DRIVER
    reason = REFUSED.get(policy_type, "trustai has no deterministic, differentiable driver for it")
    raise TrustaiUserError(
        f"policy type {policy_type!r} is not supported by trustai audits ({reason})",
        where=where,
        fix=f"audit a policy of a supported type: {', '.join(sorted(GOVERNED))}",
    )
