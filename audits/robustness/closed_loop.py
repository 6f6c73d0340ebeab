"""``robustness.closed_loop``: the policy drives a simulator (PushT, ALOHA, LIBERO; see
``trustai.audits.robustness.sims``), clean and under each perturbation, with the same environment
seeds in every condition, and its task success and reward are compared.

A perturbation is either a sensor corruption (``corruptions.CORRUPTIONS``) applied to what the policy
is given at every control step (cameras, or ``state_noise`` on the state), or a scene change
(``sims.scene.SCENE_CHANGES``): camera viewpoint, lighting or object position applied by the simulator
at reset, or a paraphrase of the language instruction.
"""

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from trustai.audits.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    condition_seed,
    corrupt_images,
    corrupt_state,
    corruption,
)
from trustai.audits.robustness.sims import SIMULATORS, SimEnv, WorldChange, simulator
from trustai.audits.robustness.sims.instructions import paraphrase
from trustai.audits.robustness.sims.scene import SCENE_CHANGES, WORLD_CHANGES, scene_change

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import Batch, PolicyAdapter
from trustai.lerobot.checkpoint_inputs import feature_stats
from trustai.lerobot.policy_batches import audit_policy


class Perturbation(BaseModel):
    """One perturbation of a rollout: a sensor ``corruption`` at every control step, or a ``scene``
    change (``camera_viewpoint``, ``lighting``, ``object_position``, ``instruction``); exactly one."""

    model_config = ConfigDict(extra="forbid")
    corruption: str | None = None
    scene: str | None = None
    severity: int = Field(3, ge=1, le=5)

    @field_validator("corruption")
    @classmethod
    def _known_corruption(cls, name: str | None) -> str | None:
        return None if name is None else corruption(name).name

    @field_validator("scene")
    @classmethod
    def _known_scene(cls, name: str | None) -> str | None:
        return None if name is None else scene_change(name).name

    @model_validator(mode="after")
    def _exactly_one(self) -> "Perturbation":
        if (self.corruption is None) == (self.scene is None):
            raise ValueError("a perturbation names exactly one of corruption or scene")
        return self

    @property
    def name(self) -> str:
        """The corruption's or the scene change's name."""
        return self.corruption or self.scene  # type: ignore[return-value]

    @property
    def label(self) -> str:
        """``<name>_s<severity>``, the suffix of this condition's metrics."""
        return f"{self.name}_s{self.severity}"


class ClosedLoopParams(BaseModel):
    """Parameters of ``robustness.closed_loop``."""

    model_config = ConfigDict(extra="forbid")
    simulator: str = Field("pusht", description=f"one of {sorted(SIMULATORS)}")
    scenario: str | None = Field(
        None, description="the simulator's task (aloha: transfer_cube or insertion; libero: suite/index)"
    )
    episodes: int = Field(10, ge=1, description="rollouts per condition (same seeds in every condition)")
    max_steps: int = Field(300, ge=1, description="environment steps per rollout")
    perturbations: list[Perturbation] = Field(
        default_factory=lambda: [
            Perturbation(corruption=c) for c in ("gaussian_noise", "occlusion", "state_noise")
        ]
    )
    task: str | None = Field(None, description="language instruction; None: the scenario's own")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")
    min_clean_success: float = Field(
        0.2,
        ge=0,
        le=1,
        description="clean success rate below which success_rate_drop is inconclusive: a policy that "
        "rarely succeeds has little success to lose",
    )

    @field_validator("simulator")
    @classmethod
    def _known_simulator(cls, name: str) -> str:
        return simulator(name).name

    @model_validator(mode="after")
    def _supported_changes(self) -> "ClosedLoopParams":
        sim = simulator(self.simulator)
        unsupported = sorted(
            {p.scene for p in self.perturbations if p.scene in WORLD_CHANGES} - sim.world_changes
        )
        if unsupported:
            raise ValueError(
                f"the {sim.name} simulator cannot apply {unsupported}; it supports "
                f"{sorted(sim.world_changes) or 'no world changes'} (and every sensor corruption)"
            )
        return self


_CONDITIONS = [
    "clean",
    *(f"{name}_s{s}" for name in [*CORRUPTIONS, *SCENE_CHANGES] for s in SEVERITIES),
]


@register
class ClosedLoop(Audit):
    """Rollouts in a simulator (offline), clean and under each perturbation, with paired seeds.

    The policy runs its action chunks open loop for ``n_action_steps`` steps (its config), then
    re-plans. Metrics: ``ClosedLoop.metrics``; ``success_rate_drop`` is inconclusive when the clean
    success rate is below ``min_clean_success``. Table ``rollouts``: one row per (condition, episode).
    """

    name = "robustness.closed_loop"
    version = "2"
    stages = frozenset({Stage.CHECKPOINT, Stage.RELEASE})
    Params = ClosedLoopParams
    metrics = declare(
        {
            "worst_success_rate": Metric(
                "fraction", "higher_is_better", "lowest success rate of any condition"
            ),
            "success_rate_drop": Metric(
                "fraction", "lower_is_better", "clean success rate minus the worst perturbed condition's"
            ),
            "reward_drop": Metric(
                "fraction", "lower_is_better", "clean mean max reward minus the worst perturbed condition's"
            ),
        },
        {
            f"{metric}_{condition}": Metric(unit, "higher_is_better", f"{meaning} ({condition})")
            for condition in _CONDITIONS
            for metric, unit, meaning in (
                ("success_rate", "fraction", "share of rollouts that succeeded"),
                (
                    "mean_max_reward",
                    "fraction",
                    "mean over rollouts of the best reward, normalised to 0-1 (PushT: goal coverage; "
                    "ALOHA: task stage of 4; LIBERO: success)",
                ),
            )
        },
        {
            f"success_rate_drop_{condition}": Metric(
                "fraction", "lower_is_better", f"clean success rate minus that under {condition}"
            )
            for condition in _CONDITIONS[1:]
        },
    )

    def measure(self, ctx: AuditContext, params: ClosedLoopParams) -> Measurement:
        adapter = audit_policy(ctx, params.device)
        if any(p.scene == "instruction" for p in params.perturbations) and not adapter.has_language:
            raise TrustaiUserError(
                "the instruction perturbation needs a policy that reads a language instruction; "
                f"this {adapter.policy_type} policy reads none",
                fix="drop {scene: instruction} from the check's perturbations for this policy",
            )
        noisy_state = any(
            p.corruption and corruption(p.corruption).target == "state" for p in params.perturbations
        )
        state_std = feature_stats(ctx.dataset, adapter, adapter.state_key).std if noisy_state else None
        env = simulator(params.simulator).open(adapter, params.scenario, params.max_steps)
        rollout = _Rollout(adapter, env, params.task or env.instruction, state_std)
        rows = []
        try:
            for condition in [None, *params.perturbations]:
                label = condition.label if condition else "clean"
                for episode in range(params.episodes):
                    rows.append(
                        {
                            "condition": label,
                            "episode": episode,
                            **rollout.run(ctx.seed, episode, condition),
                        }
                    )
        finally:
            env.close()
        metrics = _closed_loop_metrics(rows)
        clean = metrics["success_rate_clean"]
        rare = clean < params.min_clean_success
        drops = [m for m in metrics if m.startswith("success_rate_drop")]
        return Measurement(
            metrics=metrics,
            tables={"rollouts": rows},
            inconclusive=(
                f"clean success rate {clean:.2f} is below min_clean_success {params.min_clean_success:g}: "
                "too little success to measure a drop"
                if rare
                else None
            ),
            inconclusive_metrics=drops if rare else None,
        )


class _Rollout:
    """One policy driving one simulator environment, optionally through a perturbation."""

    def __init__(self, adapter: PolicyAdapter, env: SimEnv, instruction: str, state_std: torch.Tensor | None):
        self.adapter, self.env, self.instruction, self.state_std = adapter, env, instruction, state_std
        config = adapter.policy.config
        self.replan_every = min(getattr(config, "n_action_steps", adapter.chunk_size), adapter.chunk_size)

    def _sensed(
        self, observation: Batch, condition: Perturbation | None, generator: torch.Generator
    ) -> Batch:
        """What the policy is given: the observation through the condition's sensor corruption."""
        if condition is None or condition.corruption is None:
            return observation
        batch = dict(observation)
        if corruption(condition.corruption).target == "state":
            state = self.adapter.state_key
            batch[state] = corrupt_state(batch[state], condition.severity, generator, self.state_std)
        else:
            for camera in self.adapter.camera_keys:
                batch[camera] = corrupt_images(
                    condition.corruption, batch[camera], condition.severity, generator
                )
        return batch

    def run(self, seed: int, episode: int, condition: Perturbation | None) -> dict[str, Any]:
        """One rollout from environment seed ``seed + episode``; its success, best reward and length."""
        label = condition.label if condition else "clean"
        generator = torch.Generator().manual_seed(condition_seed(seed, label, str(episode)))
        instruction, change = self.instruction, None
        if condition is not None and condition.scene is not None:
            level = scene_change(condition.scene).levels[condition.severity - 1]
            rng = np.random.default_rng(condition_seed(seed, condition.scene, str(episode)))
            if condition.scene == "instruction":
                instruction = paraphrase(self.instruction, condition.severity, rng)
            else:
                change = WorldChange(condition.scene, level, rng)
        observation = self.env.reset(seed + episode, change)
        planned: list[np.ndarray] = []
        max_reward, success, steps, done = 0.0, False, 0, False
        while not done:
            if not planned:
                batch = {**self._sensed(observation, condition, generator), "task": [instruction]}
                with torch.no_grad():
                    chunk = self.adapter.actions(batch)[0]
                planned = list(chunk[: self.replan_every].cpu().numpy())
            outcome = self.env.step(planned.pop(0))
            observation, steps = outcome.observation, steps + 1
            max_reward = max(max_reward, outcome.reward)
            success = success or outcome.success
            done = outcome.done
        return {"success": success, "max_reward": max_reward, "steps": steps, "instruction": instruction}


def _closed_loop_metrics(rows: list[dict]) -> dict[str, float]:
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    success = {c: float(np.mean([r["success"] for r in rows if r["condition"] == c])) for c in conditions}
    reward = {c: float(np.mean([r["max_reward"] for r in rows if r["condition"] == c])) for c in conditions}
    perturbed = [c for c in conditions if c != "clean"] or ["clean"]
    metrics = {f"success_rate_{c}": success[c] for c in conditions}
    metrics |= {f"mean_max_reward_{c}": reward[c] for c in conditions}
    metrics |= {f"success_rate_drop_{c}": success["clean"] - success[c] for c in conditions if c != "clean"}
    metrics |= {
        "worst_success_rate": min(success.values()),
        "success_rate_drop": success["clean"] - min(success[c] for c in perturbed),
        "reward_drop": reward["clean"] - min(reward[c] for c in perturbed),
    }
    return metrics
