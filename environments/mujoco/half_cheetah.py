"""Half-cheetah running at a target velocity (``cheetah_vel``) or in a direction (``cheetah_dir``).

Model: gym's ``half_cheetah.xml`` (bundled with gymnasium), timestep 0.01 and frame skip 5, so
dt = 0.05; actions in [-1, 1]^6. Spec: borel.md 2.2, focal.md 1.3.

Observation (20) = qpos[1:] (8: root height, root angle, six joint angles), qvel (9), and the torso
body position (3, x absolute): what the original's ``get_body_com("torso")`` returned, i.e. MuJoCo's
``xpos`` from the kinematics of the last substep.

Rewards, with v = (x_after - x_before) / dt the root's forward velocity over the step and the
control cost c = 0.05 * ||a||^2:

- velocity task v*: r = -|v - v*| - c, v* ~ U[0, 3];
- direction task d in {-1, +1}: r = d * v - c.

Episodes never terminate early. Reset: qpos0 + U(-0.1, 0.1) and N(0, 0.1^2) velocities. The root
x is not observed, so ``reward`` replays each transition (see ``environments.mujoco.base``).
"""

from __future__ import annotations

import numpy as np

from environments.mujoco.base import (
    DEFAULT_MAX_EPISODE_STEPS,
    MujocoTaskEnv,
    Simulator,
    gymnasium_asset,
    square_sum,
)

OBSERVATION_DIM = 20
FRAME_SKIP = 5
CONTROL_COST_WEIGHT = 0.05
RESET_NOISE_SCALE = 0.1
MAX_TARGET_VELOCITY = 3.0
DIRECTIONS = (-1.0, 1.0)


class HalfCheetah(MujocoTaskEnv):
    """The shared cheetah: dynamics, observation and forward velocity; one-dimensional tasks."""

    reset_noise_scale = RESET_NOISE_SCALE

    replays_transitions = True
    planar_root_size = 1
    measurement_dim = 1

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        sparse_goal_radius: float | None = None,
    ) -> None:
        super().__init__(
            num_envs,
            gymnasium_asset("half_cheetah.xml"),
            frame_skip=FRAME_SKIP,
            observation_dim=OBSERVATION_DIM,
            max_episode_steps=max_episode_steps,
            sparse_goal_radius=sparse_goal_radius,
        )
        self.task_dim = 1
        self._torso = self._pristine_model.body("torso").id

    def _after_step(self, simulator: Simulator, before: None, measurement: np.ndarray) -> None:
        measurement[0] = simulator.qpos[0]

    def _write_observation(self, index: int, simulator: Simulator, row: np.ndarray) -> None:
        row[:8] = simulator.qpos[1:]
        row[8:17] = simulator.qvel
        torso = simulator.data.xpos[self._torso]
        row[17] = self._root_offsets[index, 0] + torso[0]
        row[18:20] = torso[1:]

    def forward_velocity(self, measurements: np.ndarray) -> np.ndarray:
        """v = x displacement / dt from the replayed or stepped measurements (..., 1)."""
        return measurements[..., 0] / self.dt


class HalfCheetahVelocity(HalfCheetah):
    """Task = target velocity v* ~ U[0, 3]; r = -|v - v*| - 0.05 ||a||^2."""

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.0, MAX_TARGET_VELOCITY, size=(num_tasks, 1))

    def _rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        measurements: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        velocity_error = np.abs(self.forward_velocity(measurements) - task[..., 0])
        return (-velocity_error - CONTROL_COST_WEIGHT * square_sum(action)).astype(np.float32)


class HalfCheetahDirection(HalfCheetah):
    """Task = direction d in {-1 (backward), +1 (forward)}; r = d * v - 0.05 ||a||^2.

    Seed s selects ``DIRECTIONS[s % 2]`` (FOCAL's task 0 is backward, task 1 forward).
    """

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(DIRECTIONS, size=(num_tasks, 1))

    def task_from_seed(self, seed: int) -> np.ndarray:
        return np.array([DIRECTIONS[seed % len(DIRECTIONS)]])

    def validate_tasks(self, tasks: np.ndarray) -> None:
        super().validate_tasks(tasks)
        if not np.all(np.isin(tasks, DIRECTIONS)):
            raise ValueError(f"cheetah directions must be -1 or +1, got {tasks.ravel()}")

    def _rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        measurements: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        progress = task[..., 0] * self.forward_velocity(measurements)
        return (progress - CONTROL_COST_WEIGHT * square_sum(action)).astype(np.float32)
