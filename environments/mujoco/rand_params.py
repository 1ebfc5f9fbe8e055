"""Walker-2D and Hopper with random physics (``walker_rand_params``, ``hopper_rand_params``).

Models: our ``assets/walker2d_rand_params.xml`` and ``assets/hopper_rand_params.xml`` (the papers'
rand-param models: RK4 with timestep 0.004), frame skip 4, so dt = 0.016; actions in [-1, 1].
Spec: focal.md 1.3-1.4, borel.md 2.2.

Task: one log-multiplier u per entry of ``body_mass`` (nbody), ``body_inertia`` (nbody x 3),
``dof_damping`` (nv) and ``geom_friction`` (ngeom x 3), concatenated in that order, each drawn from
U[-3, 3] with a seeded generator. Copy i simulates its own ``MjModel`` holding

    body_mass = pristine * 1.5^u,  body_inertia = pristine * 1.5^u,
    dof_damping = pristine * 1.3^u,  geom_friction = pristine * 1.5^u,

followed by ``mj_setConst`` (the constants MuJoCo derives from masses and inertias). Every entry,
the world body and the floor included, has its own multiplier, as in the original; zero damping
stays zero. The arrays are always written from a pristine copy, so u = 0 gives back the compiled
model bit for bit and setting a task again reproduces its trajectories exactly.

Observation = qpos[1:] and clip(qvel, -10, 10) (walker 17, hopper 11). Reward, with x the root's
horizontal position: r = (x_after - x_before) / dt + 1 - 1e-3 ||a||^2. Termination: the walker
falls unless 0.8 < height < 2 and -1 < angle < 1; the hopper unless the state is finite,
|(qpos[2:], qvel)| < 100, height > 0.7 and |angle| < 0.2. Reset: qpos0 + U(-0.005, 0.005) and
U(-0.005, 0.005) velocities.

Tasks change the dynamics, so a stored transition's reward under another task is meaningless:
``reward`` raises and ``reward_recomputable`` is False (use Policy Replaying, not relabelling).
"""

from __future__ import annotations

from typing import ClassVar

import mujoco
import numpy as np

from environments.mujoco.base import (
    ASSETS_DIR,
    DEFAULT_MAX_EPISODE_STEPS,
    MujocoTaskEnv,
    Simulator,
    square_sum,
)

FRAME_SKIP = 4
RESET_NOISE_SCALE = 0.005
VELOCITY_CLIP = 10.0
ALIVE_BONUS = 1.0
CONTROL_COST_WEIGHT = 1e-3
PARAMETER_BASES = {
    "body_mass": 1.5,
    "body_inertia": 1.5,
    "dof_damping": 1.3,
    "geom_friction": 1.5,
}
"""Randomised model arrays, in task order, and the base b of each multiplier b^u."""


class RandomParams(MujocoTaskEnv):
    """The shared planar robot with per-copy random physics; see the module docstring."""

    reset_noise_scale = RESET_NOISE_SCALE
    reset_velocity_noise = "uniform"

    reward_recomputable = False
    task_changes_dynamics = True
    measurement_dim = 1
    can_terminate = True
    model_file: ClassVar[str]
    observation_dim: ClassVar[int]

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        log_scale_limit: float = 3.0,
        sparse_goal_radius: float | None = None,
    ) -> None:
        super().__init__(
            num_envs,
            ASSETS_DIR / self.model_file,
            frame_skip=FRAME_SKIP,
            observation_dim=self.observation_dim,
            max_episode_steps=max_episode_steps,
            model_per_copy=True,
            sparse_goal_radius=sparse_goal_radius,
        )
        if log_scale_limit <= 0:
            raise ValueError(f"log_scale_limit must be positive, got {log_scale_limit}")
        self.log_scale_limit = float(log_scale_limit)
        self._pristine_parameters = {
            name: getattr(self._pristine_model, name).copy() for name in PARAMETER_BASES
        }
        sizes = [array.size for array in self._pristine_parameters.values()]
        self._task_splits = np.cumsum(sizes)[:-1]
        self.task_dim = int(sum(sizes))

    # ----------------------------------------------------------------------------- tasks
    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(
            -self.log_scale_limit, self.log_scale_limit, size=(num_tasks, self.task_dim)
        )

    def validate_tasks(self, tasks: np.ndarray) -> None:
        super().validate_tasks(tasks)
        if np.any(np.abs(tasks) > self.log_scale_limit):
            raise ValueError(
                f"log-multipliers must lie in [-{self.log_scale_limit}, {self.log_scale_limit}]"
            )

    def task_parameters(self, task: np.ndarray) -> dict[str, np.ndarray]:
        """The model arrays a task sets: {name: pristine * base^u} with the model's shapes."""
        exponents = np.split(np.asarray(task, dtype=np.float64), self._task_splits)
        return {
            name: pristine * PARAMETER_BASES[name] ** exponent.reshape(pristine.shape)
            for (name, pristine), exponent in zip(
                self._pristine_parameters.items(), exponents, strict=True
            )
        }

    def _on_tasks_set(self) -> None:
        for simulator, task in zip(self._simulators, self._tasks, strict=True):
            for name, values in self.task_parameters(task).items():
                getattr(simulator.model, name)[:] = values
            mujoco.mj_setConst(simulator.model, mujoco.MjData(simulator.model))

    # ----------------------------------------------------------------------------- dynamics
    def _before_step(self, simulator: Simulator) -> float:
        return float(simulator.qpos[0])

    def _after_step(self, simulator: Simulator, before: float, measurement: np.ndarray) -> None:
        measurement[0] = simulator.qpos[0] - before

    def _write_observation(self, index: int, simulator: Simulator, row: np.ndarray) -> None:
        positions = simulator.qpos.shape[0] - 1
        row[:positions] = simulator.qpos[1:]
        row[positions:] = np.clip(simulator.qvel, -VELOCITY_CLIP, VELOCITY_CLIP)

    def _rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        measurements: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        velocity = measurements[..., 0] / self.dt
        return (velocity + ALIVE_BONUS - CONTROL_COST_WEIGHT * square_sum(action)).astype(
            np.float32
        )

    def reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """Not available: the forward velocity depends on the task's physics, which a stored
        transition does not pin down, so rewards cannot be recomputed or relabelled."""
        raise NotImplementedError(
            f"{type(self).__name__}: the reward depends on the task's physics (masses, inertias, "
            "damping, friction) and cannot be recomputed from stored transitions; tasks differ in "
            "their dynamics, so use Policy Replaying instead of Reward Relabelling"
        )


class Walker2DRandomParams(RandomParams):
    """Walker-2D-Params: obs 17, actions 6, task dim 65 (8 + 24 + 9 + 24)."""

    model_file = "walker2d_rand_params.xml"
    observation_dim = 17

    def _terminations(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        height, angle = qpos[:, 1], qpos[:, 2]
        healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
        return ~healthy


class HopperRandomParams(RandomParams):
    """Hopper-Params: obs 11, actions 3, task dim 41 (5 + 15 + 6 + 15)."""

    model_file = "hopper_rand_params.xml"
    observation_dim = 11

    def _terminations(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        state = np.concatenate([qpos, qvel], axis=1)
        height, angle = qpos[:, 1], qpos[:, 2]
        healthy = (
            np.isfinite(state).all(axis=1)
            & (np.abs(state[:, 2:]) < 100.0).all(axis=1)
            & (height > 0.7)
            & (np.abs(angle) < 0.2)
        )
        return ~healthy
