"""PushT in gym-pusht (offline): one RGB camera rendered at the policy's resolution, the 2-dof agent
position as the state, 2-dof actions; the reward is the goal coverage (0-1)."""

import warnings

import numpy as np
import torch
from trustai.audits.robustness.sims import StepOutcome, WorldChange

from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import Batch, PolicyAdapter

INSTRUCTION = "Push the T-shaped block onto the T-shaped target."


def fit(adapter: PolicyAdapter) -> tuple[str, tuple[int, int]]:
    """The policy's camera key and image size (H, W) when it fits PushT (one RGB camera, 2-dof state
    and action); TrustaiUserError naming every mismatch otherwise."""
    cameras = [m for m in adapter.modalities if m.kind == "camera"]
    state = [m for m in adapter.modalities if m.kind == "state"]
    problems = []
    if len(cameras) != 1 or cameras[0].shape[0] != 3:
        problems.append(f"PushT has one RGB camera, the policy reads {[(m.name, m.shape) for m in cameras]}")
    if [m.shape for m in state] != [(2,)]:
        problems.append(
            f"PushT's state is the 2-dof agent position, the policy reads {[m.shape for m in state]}"
        )
    if adapter.action_dim != 2:
        problems.append(f"PushT takes 2-dof actions, the policy outputs {adapter.action_dim}")
    if problems:
        raise TrustaiUserError(
            "the policy does not fit the PushT simulation: " + "; ".join(problems),
            fix="run robustness.closed_loop with simulator: pusht only for PushT policies "
            "(e.g. trained on lerobot/pusht)",
        )
    return cameras[0].name, tuple(cameras[0].shape[1:])  # type: ignore[return-value]


class PushTEnv:
    """gym_pusht/PushT-v0 bound to one policy's camera and state keys."""

    instruction = INSTRUCTION

    def __init__(self, adapter: PolicyAdapter, max_steps: int):
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
        import gymnasium

        self.camera, (height, width) = fit(adapter)
        self.state_key = adapter.state_key
        with warnings.catch_warnings():  # pygame, loaded with the env, warns about pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            self.env = gymnasium.make(
                "gym_pusht/PushT-v0",
                obs_type="pixels_agent_pos",
                observation_height=height,
                observation_width=width,
                max_episode_steps=max_steps,
            )

    def _observation(self, obs: dict) -> Batch:
        return {
            self.camera: torch.from_numpy(obs["pixels"]).permute(2, 0, 1)[None].float() / 255,
            self.state_key: torch.from_numpy(obs["agent_pos"])[None].float(),
        }

    def reset(self, seed: int, change: WorldChange | None) -> Batch:
        """The episode of ``seed``; PushT supports no world change (``change`` must be None)."""
        if change is not None:
            raise ValueError(f"PushT cannot apply the world change {change.name}")
        obs, _ = self.env.reset(seed=seed)
        return self._observation(obs)

    def step(self, action: np.ndarray) -> StepOutcome:
        """One PushT step; the reward is the goal coverage."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return StepOutcome(
            self._observation(obs),
            float(reward),
            bool(info.get("is_success", False)),
            bool(terminated or truncated),
        )

    def close(self) -> None:
        """Close the gymnasium environment."""
        self.env.close()


def open_env(adapter: PolicyAdapter, scenario: str | None, max_steps: int) -> PushTEnv:
    """PushT for ``adapter``; PushT has one scenario, so ``scenario`` must be None."""
    if scenario is not None:
        raise TrustaiUserError(
            f"PushT has no scenario {scenario!r}", fix="leave scenario unset for simulator: pusht"
        )
    return PushTEnv(adapter, max_steps)
