"""LIBERO (hf-libero, the optional extra ``trustai[libero]``) through LeRobot's own ``LiberoEnv`` and
its observation processing, so the policy sees what ``lerobot-eval`` would give it: the cameras it
reads (``observation.images.image`` the agent view, ``observation.images.image2`` the wrist camera),
rotated 180° as LeRobot's LIBERO datasets are, and the 8-dof state (end-effector position and
axis-angle, gripper joints); 7-dof relative end-effector actions.

Offline set-up (assets, config, rendering): ``scripts/setup-libero`` and docs/simulators.md; without
it this module refuses to start rather than let LIBERO prompt for a config or reach for a hub.

Scenarios are ``<suite>/<task index>`` (default ``libero_spatial/0``). Episodes start from LIBERO's
seeded object placement, not from its recorded init-state files: those are pickles LeRobot reads with
``torch.load(weights_only=False)``, and trustai never unpickles. World changes, after LIBERO-Plus, are
applied once the scene has settled: ``camera_viewpoint`` moves the policy's cameras, ``lighting``
dims every light, ``object_position`` displaces every movable object; then the scene settles again.
The reward is success (0 or 1).
"""

import importlib.util
import os
from pathlib import Path
from typing import Any

# MuJoCo reads MUJOCO_GL when it is first imported; without a display only EGL or OSMesa render.
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
from lerobot.utils.constants import OBS_STATE
from trustai.audits.robustness.sims import StepOutcome, WorldChange

from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import Batch, PolicyAdapter

DEFAULT_SCENARIO = "libero_spatial/0"
CAMERAS = {
    "observation.images.image": "agentview_image",
    "observation.images.image2": "robot0_eye_in_hand_image",
}
STATE_DOF, ACTION_DOF = 8, 7
SETTLE_STEPS = 10  # no-op steps after a world change, as LeRobot's LiberoEnv settles after reset
SETUP = "run scripts/setup-libero with this environment's Python (docs/simulators.md)"


def _require_setup() -> None:
    """Refuse before importing LIBERO when its config or assets are missing: its first import would
    prompt for a config on stdin, and its first scene would download assets from a hub."""
    libero = importlib.util.find_spec("libero")
    if libero is None or not libero.submodule_search_locations:
        raise TrustaiUserError("LIBERO is not installed", fix="pip install 'trustai[libero]', then " + SETUP)
    config = Path(os.environ.get("LIBERO_CONFIG_PATH", Path.home() / ".libero")) / "config.yaml"
    if not config.is_file():
        raise TrustaiUserError("LIBERO has no config.yaml", where=str(config), fix=SETUP)
    assets = Path(next(iter(libero.submodule_search_locations))) / "libero" / "assets"
    if not assets.is_dir():
        raise TrustaiUserError("LIBERO's scene assets are not installed", where=str(assets), fix=SETUP)


def fit(adapter: PolicyAdapter) -> tuple[list[str], tuple[int, int]]:
    """The policy's camera keys and their common size (H, W) when the policy fits LIBERO;
    TrustaiUserError naming every mismatch otherwise."""
    cameras = [m for m in adapter.modalities if m.kind == "camera"]
    state = [m for m in adapter.modalities if m.kind == "state"]
    problems = []
    unknown = [m.name for m in cameras if m.name not in CAMERAS]
    if not cameras or unknown:
        problems.append(f"LIBERO's cameras are {sorted(CAMERAS)}, the policy reads {unknown or 'no camera'}")
    sizes = {m.shape for m in cameras}
    if len(sizes) > 1 or any(shape[0] != 3 for shape in sizes):
        problems.append(f"LIBERO renders RGB cameras of one size, the policy reads {sorted(sizes)}")
    if [m.shape for m in state] != [(STATE_DOF,)]:
        problems.append(f"LIBERO's state has {STATE_DOF} dims, the policy reads {[m.shape for m in state]}")
    if adapter.action_dim != ACTION_DOF:
        problems.append(f"LIBERO takes {ACTION_DOF}-dof actions, the policy outputs {adapter.action_dim}")
    if problems:
        raise TrustaiUserError(
            "the policy does not fit the LIBERO simulation: " + "; ".join(problems),
            fix="run robustness.closed_loop with simulator: libero only for LIBERO policies "
            "(e.g. trained on LeRobot's LIBERO datasets)",
        )
    return [m.name for m in cameras], tuple(cameras[0].shape[1:])  # type: ignore[return-value]


def _batched(tree: Any) -> Any:
    """Every array of a nested observation with a leading batch axis of 1 (a one-env vector env's)."""
    if isinstance(tree, dict):
        return {key: _batched(value) for key, value in tree.items()}
    return np.asarray(tree)[None]


class LiberoSimEnv:
    """One LIBERO task through LeRobot's ``LiberoEnv``, bound to a policy's cameras and size."""

    def __init__(
        self,
        suite_name: str,
        task_id: int,
        camera_keys: list[str],
        state_key: str,
        size: tuple[int, int],
        max_steps: int,
    ):
        """``camera_keys``: the policy's cameras (keys of ``CAMERAS``), rendered at ``size`` (H, W)."""
        from lerobot.envs.libero import LiberoEnv, get_libero_dummy_action
        from lerobot.processor.env_processor import LiberoProcessorStep
        from libero.libero import benchmark

        suites = benchmark.get_benchmark_dict()
        if suite_name not in suites:
            raise TrustaiUserError(f"LIBERO has no suite {suite_name!r}", fix=f"use one of {sorted(suites)}")
        suite = suites[suite_name]()
        if not 0 <= task_id < suite.n_tasks:
            raise TrustaiUserError(
                f"LIBERO suite {suite_name} has tasks 0..{suite.n_tasks - 1}, not {task_id}",
                fix=f"name a task index below {suite.n_tasks}",
            )
        self.env = LiberoEnv(
            suite,
            task_id,
            suite_name,
            camera_name=[CAMERAS[key] for key in camera_keys],
            obs_type="pixels_agent_pos",
            observation_height=size[0],
            observation_width=size[1],
            init_states=False,  # LeRobot's mapping names the cameras image and image2, as CAMERAS does
        )
        self.instruction = self.env.task_description
        self.camera_keys, self.state_key, self.max_steps, self._steps = camera_keys, state_key, max_steps, 0
        self._processor = LiberoProcessorStep()
        self._no_op = get_libero_dummy_action()

    def _observation(self, observation: dict) -> Batch:
        from lerobot.envs.utils import preprocess_observation

        processed = self._processor.observation(preprocess_observation(_batched(observation)))
        return {key: processed[key] for key in self.camera_keys} | {self.state_key: processed[OBS_STATE]}

    def _change_world(self, change: WorldChange) -> dict:
        # LeRobot's wrapper exposes no scene handle: the robosuite environment inside it is changed.
        scene = self.env._env.env
        model = scene.sim.model
        if change.name == "camera_viewpoint":
            for key in self.camera_keys:
                direction = change.rng.normal(size=3)
                camera_id = model.camera_name2id(CAMERAS[key].removesuffix("_image"))
                model.cam_pos[camera_id] += change.level * direction / np.linalg.norm(direction)
        elif change.name == "lighting":
            model.light_diffuse[:] *= change.level
            model.light_specular[:] *= change.level
            model.vis.headlight.ambient[:] *= change.level
        elif change.name == "object_position":
            for movable in scene.objects_dict.values():
                joint = movable.joints[-1]
                pose = np.array(scene.sim.data.get_joint_qpos(joint))
                angle = change.rng.uniform(0, 2 * np.pi)
                pose[:2] += change.level * np.array([np.cos(angle), np.sin(angle)])
                scene.sim.data.set_joint_qpos(joint, pose)
        else:
            raise ValueError(f"LIBERO cannot apply the world change {change.name}")
        scene.sim.forward()
        raw = None
        for _ in range(SETTLE_STEPS):
            raw, _, _, _ = self.env._env.step(self._no_op)
        return self.env._format_raw_obs(raw)

    def reset(self, seed: int, change: WorldChange | None) -> Batch:
        """LIBERO's seeded layout of the task (a hard reset rebuilds the scene, so no earlier change
        survives it), settled, with ``change`` applied."""
        observation, _ = self.env.reset(seed=seed)
        if change is not None:
            observation = self._change_world(change)
        self._steps = 0
        return self._observation(observation)

    def step(self, action: np.ndarray) -> StepOutcome:
        """One 20 Hz control step of the relative end-effector ``action``."""
        observation, _, terminated, _, info = self.env.step(np.asarray(action, dtype=np.float64))
        self._steps += 1
        success = bool(info.get("is_success", False))
        done = bool(terminated) or self._steps >= self.max_steps
        return StepOutcome(self._observation(observation), float(success), success, done)

    def close(self) -> None:
        """Close LIBERO's environment and its renderer."""
        self.env.close()


def open_env(adapter: PolicyAdapter, scenario: str | None, max_steps: int) -> LiberoSimEnv:
    """LIBERO task ``scenario`` (``<suite>/<task index>``) bound to ``adapter``'s cameras."""
    suite, _, index = (scenario or DEFAULT_SCENARIO).partition("/")
    if not index.isdigit():
        raise TrustaiUserError(
            f"LIBERO scenario {scenario!r} is not <suite>/<task index>", fix="e.g. libero_object/0"
        )
    cameras, size = fit(adapter)
    _require_setup()
    return LiberoSimEnv(suite, int(index), cameras, adapter.state_key, size, max_steps)  # type: ignore[arg-type]
