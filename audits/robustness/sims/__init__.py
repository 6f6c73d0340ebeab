"""Simulators for ``robustness.closed_loop``: one small module per simulator, each exposing
``open_env(adapter, scenario, max_steps) -> SimEnv``, registered here by name.

A ``SimEnv`` speaks the policy's language: observations come back as a raw policy batch (each camera
the policy reads, rendered at the policy's own resolution, float in [0, 1] as 1×C×H×W; the state 1×D),
and rewards normalised to [0, 1]. It also applies the changes to its world a LIBERO-Plus-style audit
asks for (``scene.WORLD_CHANGES``: camera viewpoint, lighting, object position) at reset. Sensor
corruptions and instruction paraphrases are the audit's own: they act on what the policy is given,
the same way in every simulator.

A simulator's packages are imported only when a check uses it, so a missing one is a clear error
finding naming what to install, never an import error of trustai.
"""

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import Batch, PolicyAdapter


@dataclass(frozen=True)
class WorldChange:
    """One change to the simulated world, applied at reset: its name (``scene.WORLD_CHANGES``), its
    level in that change's unit, and the generator its random draws (directions) come from."""

    name: str
    level: float
    rng: np.random.Generator


@dataclass(frozen=True)
class StepOutcome:
    """What one environment step returns, in the policy's terms."""

    observation: Batch
    reward: float  # normalised to [0, 1]: the share of the task the simulator's reward says is done
    success: bool
    done: bool  # the episode ended: success, failure, or max_steps reached


class SimEnv(Protocol):
    """A simulator episode source bound to one policy (its cameras, sizes and state)."""

    instruction: str  # the scenario's own language instruction

    def reset(self, seed: int, change: WorldChange | None) -> Batch:
        """Start an episode from ``seed`` (the same seed gives the same start), with ``change`` applied
        to the world; return the first observation."""
        ...

    def step(self, action: np.ndarray) -> StepOutcome:
        """Apply one action (in the dataset's units) and return what followed."""
        ...

    def close(self) -> None:
        """Release renderers and simulator resources."""
        ...


@dataclass(frozen=True)
class Simulator:
    """A registered simulator: its module, the world changes it supports and how to install it."""

    name: str
    module: str
    world_changes: frozenset[str]
    install: str
    scenarios: str  # what ``scenario`` may name, for messages

    def open(self, adapter: PolicyAdapter, scenario: str | None, max_steps: int) -> SimEnv:
        """Import the simulator's module and bind an environment to ``adapter``. Raises
        TrustaiUserError when the simulator is not installed or the policy does not fit it."""
        try:
            module: Any = importlib.import_module(self.module)
        except ImportError as missing:
            raise TrustaiUserError(
                f"the {self.name} simulator is not installed ({missing})",
                fix=self.install,
            ) from None
        return module.open_env(adapter, scenario, max_steps)


_HERE = __name__
SIMULATORS: dict[str, Simulator] = {
    "pusht": Simulator(
        "pusht",
        f"{_HERE}.pusht",
        frozenset(),
        "install gym-pusht (LeRobot's pusht extra, a dependency of trustai)",
        "PushT has one scenario; leave scenario unset",
    ),
    "aloha": Simulator(
        "aloha",
        f"{_HERE}.aloha",
        frozenset({"camera_viewpoint", "lighting", "object_position"}),
        "install gym-aloha (LeRobot's aloha extra, a dependency of trustai)",
        "transfer_cube (default) or insertion",
    ),
    "libero": Simulator(
        "libero",
        f"{_HERE}.libero",
        frozenset({"camera_viewpoint", "lighting", "object_position"}),
        "pip install 'trustai[libero]', then scripts/setup-libero (offline assets and config; "
        "see docs/simulators.md)",
        "<suite>/<task index>, e.g. libero_object/0 (default libero_spatial/0)",
    ),
}


def simulator(name: str) -> Simulator:
    """The registered simulator called ``name``; ValueError naming the known ones otherwise."""
    if name not in SIMULATORS:
        raise ValueError(f"unknown simulator {name!r}; known: {sorted(SIMULATORS)}")
    return SIMULATORS[name]
