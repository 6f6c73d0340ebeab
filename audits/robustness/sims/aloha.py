"""Bimanual ALOHA in gym-aloha's MuJoCo scenes (offline; the assets ship in the wheel): 14-dof joint
positions as the state and joint targets as the action, the cameras the policy reads rendered at its
resolution.

gym-aloha's own environment renders three 480×640 cameras at every step (about 4 steps/s on a CPU);
here the task yields joint positions only and each camera the policy reads is rendered once per step
at the policy's size, with shadows and multisampling off (a 4096² shadow map dominates software
rendering): about 10 ms per 64×64 camera on a CPU with ``MUJOCO_GL=egl`` (llvmpipe). Datasets meant for
this audit should be recorded through this class (``AlohaEnv.observe``), so training and closed-loop
images look alike.

Scenarios: ``transfer_cube`` (default) and ``insertion``; the reward is gym-aloha's task stage (0-4)
divided by 4, success is stage 4. World changes: ``camera_viewpoint`` (the policy's cameras move),
``lighting`` (all lights and the headlight dim) and ``object_position`` (cube, peg and socket start
displaced from their seeded poses).
"""

import collections
import os

# MuJoCo reads MUJOCO_GL when it is first imported; without a display only EGL or OSMesa render.
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np
import torch
from dm_control import mujoco as dm_mujoco
from dm_control.rl import control
from gym_aloha.constants import ASSETS_DIR, DT
from gym_aloha.tasks import sim
from gym_aloha.utils import sample_box_pose, sample_insertion_pose
from trustai.audits.robustness.sims import StepOutcome, WorldChange

from trustai.errors import TrustaiUserError
from trustai.lerobot.adapter import Batch, PolicyAdapter

DOF = 14
MAX_STAGE = 4


class _JointsOnly:
    """gym-aloha's tasks render three 480×640 cameras into every observation; these return the joint
    positions only, and the environment renders what the policy reads."""

    def get_observation(self, physics: dm_mujoco.Physics) -> collections.OrderedDict:
        return collections.OrderedDict(qpos=self.get_qpos(physics))  # type: ignore[attr-defined]


class _TransferCube(_JointsOnly, sim.TransferCubeTask):
    pass


class _Insertion(_JointsOnly, sim.InsertionTask):
    pass


SCENARIOS = {
    "transfer_cube": (
        "bimanual_viperx_transfer_cube.xml",
        _TransferCube,
        "Pick up the cube with the right arm and transfer it to the left arm.",
    ),
    "insertion": (
        "bimanual_viperx_insertion.xml",
        _Insertion,
        "Pick up the socket with the left arm and the peg with the right arm, and insert the peg.",
    ),
}
CAMERAS = ("top", "angle", "front_close", "left_pillar", "right_pillar", "left_wrist", "right_wrist")
_CAMERA_PREFIX = "observation.images."


def _start_poses(scenario: str, seed: int) -> np.ndarray:
    """The objects' start poses (7 numbers each: position, quaternion) gym-aloha draws for ``seed``."""
    if scenario == "transfer_cube":
        return sample_box_pose(seed)
    return np.concatenate(sample_insertion_pose(seed))


def camera_names(adapter: PolicyAdapter) -> dict[str, str]:
    """{policy camera key: ALOHA camera} when the policy fits ALOHA (RGB cameras named after ALOHA's,
    ``observation.image`` being ``top``; 14-dof state and action); TrustaiUserError naming every
    mismatch otherwise."""
    cameras = [m for m in adapter.modalities if m.kind == "camera"]
    state = [m for m in adapter.modalities if m.kind == "state"]
    names = {
        m.name: "top" if m.name == "observation.image" else m.name.removeprefix(_CAMERA_PREFIX)
        for m in cameras
    }
    problems = []
    unknown = [key for key, name in names.items() if name not in CAMERAS]
    if not cameras or unknown:
        problems.append(
            f"ALOHA's cameras are {[_CAMERA_PREFIX + c for c in CAMERAS]}, the policy reads "
            f"{unknown or 'no camera'}"
        )
    if any(m.shape[0] != 3 for m in cameras):
        problems.append(f"ALOHA renders RGB, the policy reads {[(m.name, m.shape) for m in cameras]}")
    if [m.shape for m in state] != [(DOF,)]:
        problems.append(
            f"ALOHA's state is {DOF} joint positions, the policy reads {[m.shape for m in state]}"
        )
    if adapter.action_dim != DOF:
        problems.append(f"ALOHA takes {DOF} joint targets, the policy outputs {adapter.action_dim}")
    if problems:
        raise TrustaiUserError(
            "the policy does not fit the ALOHA simulation: " + "; ".join(problems),
            fix="run robustness.closed_loop with simulator: aloha only for bimanual ALOHA policies",
        )
    return names


class AlohaEnv:
    """One gym-aloha scene bound to a policy's cameras (name and size) and state key."""

    def __init__(
        self, scenario: str, cameras: dict[str, tuple[str, int, int]], state_key: str, max_steps: int
    ):
        """``cameras``: {policy key: (ALOHA camera, height, width)}."""
        xml, task, self.instruction = SCENARIOS[scenario]
        self.scenario, self.cameras, self.state_key, self.max_steps = scenario, cameras, state_key, max_steps
        self.physics = dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / xml))
        self.physics.model.vis.quality.offsamples = 0
        self.env = control.Environment(
            self.physics, task(), float("inf"), control_timestep=DT, n_sub_steps=None, flat_observation=False
        )
        model = self.physics.model
        self._camera_pos = model.cam_pos.copy()
        self._light_diffuse = model.light_diffuse.copy()
        self._light_specular = model.light_specular.copy()
        self._headlight = model.vis.headlight.ambient.copy()
        sizes = {(height, width) for _, height, width in cameras.values()}
        self._renderers = {size: mujoco.Renderer(model.ptr, *size) for size in sizes}
        self._steps = 0

    def observe(self) -> Batch:
        """The policy's view now: each camera 1×3×H×W float in [0, 1], the joint positions 1×14."""
        batch: Batch = {}
        for key, (camera, height, width) in self.cameras.items():
            renderer = self._renderers[(height, width)]
            renderer.update_scene(self.physics.data.ptr, camera=camera)
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            pixels = torch.from_numpy(renderer.render().copy())
            batch[key] = pixels.permute(2, 0, 1)[None].float() / 255
        qpos = sim.BimanualViperXTask.get_qpos(self.physics)
        batch[self.state_key] = torch.from_numpy(np.asarray(qpos))[None].float()
        return batch

    def _change_world(self, change: WorldChange | None, poses: np.ndarray) -> np.ndarray:
        model = self.physics.model
        model.cam_pos[:] = self._camera_pos
        model.light_diffuse[:] = self._light_diffuse
        model.light_specular[:] = self._light_specular
        model.vis.headlight.ambient[:] = self._headlight
        if change is None:
            return poses
        if change.name == "camera_viewpoint":
            for camera in {camera for camera, _, _ in self.cameras.values()}:
                direction = change.rng.normal(size=3)
                model.cam_pos[model.camera(camera).id] += change.level * direction / np.linalg.norm(direction)
        elif change.name == "lighting":
            model.light_diffuse[:] *= change.level
            model.light_specular[:] *= change.level
            model.vis.headlight.ambient[:] *= change.level
        elif change.name == "object_position":
            poses = poses.copy()
            for start in range(0, len(poses), 7):
                angle = change.rng.uniform(0, 2 * np.pi)
                poses[start : start + 2] += change.level * np.array([np.cos(angle), np.sin(angle)])
        else:
            raise ValueError(f"ALOHA cannot apply the world change {change.name}")
        return poses

    def reset(self, seed: int, change: WorldChange | None) -> Batch:
        """gym-aloha's episode of ``seed`` (its object poses) with ``change`` applied."""
        # gym-aloha's tasks read the objects' start poses from this module-level slot at reset.
        sim.BOX_POSE[0] = self._change_world(change, _start_poses(self.scenario, seed))
        self.env.task.random.seed(seed)
        self.env.reset()
        self._steps = 0
        return self.observe()

    def step(self, action: np.ndarray) -> StepOutcome:
        """One 50 Hz control step towards the joint targets ``action``."""
        stage = self.env.step(np.asarray(action, dtype=np.float64)).reward or 0
        self._steps += 1
        success = stage >= MAX_STAGE
        return StepOutcome(
            self.observe(), stage / MAX_STAGE, success, success or self._steps >= self.max_steps
        )

    def close(self) -> None:
        """Free the renderers' GL contexts."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def open_env(adapter: PolicyAdapter, scenario: str | None, max_steps: int) -> AlohaEnv:
    """The ALOHA ``scenario`` (default ``transfer_cube``) bound to ``adapter``'s cameras and state."""
    scenario = scenario or "transfer_cube"
    if scenario not in SCENARIOS:
        raise TrustaiUserError(f"ALOHA has no scenario {scenario!r}", fix=f"use one of {sorted(SCENARIOS)}")
    shapes = {m.name: m.shape for m in adapter.modalities if m.kind == "camera"}
    cameras = {key: (name, *shapes[key][1:]) for key, name in camera_names(adapter).items()}
    return AlohaEnv(scenario, cameras, adapter.state_key, max_steps)  # type: ignore[arg-type]
