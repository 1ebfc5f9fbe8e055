"""Humanoid running in a direction (``humanoid_dir``).

Model: gym's ``humanoid.xml`` (bundled with gymnasium): RK4 with timestep 0.003 and the PGS solver,
frame skip 5 (dt = 0.015); actions in [-0.4, 0.4]^17. Spec: focal.md 1.3.

Observation (376) = qpos[2:] (22), qvel (23), cinert (14 x 10), cvel (14 x 6), qfrc_actuator (23)
and cfrc_ext (14 x 6); as in the original, all but qpos and qvel come from MuJoCo's last substep.

Reward, with m the whole-body centre of mass in the plane before and after the step and the task
direction u = (cos theta, sin theta):

    r = 0.25 <m_after - m_before, u> / timestep - 0.1 ||a||^2 - min(0.5e-6 ||cfrc_ext||^2, 10) + 5.

The original divides by the MuJoCo timestep (0.003), not by dt (0.015), so the velocity term is
1.25 times the velocity; we keep it. The episode terminates when the torso height leaves [1, 2].
theta ~ U[0, 2 pi). Reset: qpos0 and zero velocities plus U(-0.01, 0.01) noise. The torso xy is not
observed, so ``reward`` replays the transition (see ``environments.mujoco.base``).
``contact_forces=False`` leaves cfrc_ext at zero (observation and impact cost), as MuJoCo 2.0 did in
the papers' runs.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from environments.mujoco.base import (
    DEFAULT_MAX_EPISODE_STEPS,
    MujocoTaskEnv,
    Simulator,
    gymnasium_asset,
    plot_direction,
    square_sum,
)

OBSERVATION_DIM = 376
FRAME_SKIP = 5
RESET_NOISE_SCALE = 0.01
VELOCITY_WEIGHT = 0.25
CONTROL_COST_WEIGHT = 0.1
IMPACT_COST_WEIGHT = 0.5e-6
IMPACT_COST_LIMIT = 10.0
ALIVE_BONUS = 5.0
HEALTHY_Z_RANGE = (1.0, 2.0)


class HumanoidDirection(MujocoTaskEnv):
    """K humanoids, each running in its own direction theta (task = (theta,))."""

    reset_noise_scale = RESET_NOISE_SCALE
    reset_velocity_noise = "uniform"

    replays_transitions = True
    planar_root_size = 2
    measurement_dim = 3
    can_terminate = True

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        contact_forces: bool = True,
    ) -> None:
        super().__init__(
            num_envs,
            gymnasium_asset("humanoid.xml"),
            frame_skip=FRAME_SKIP,
            observation_dim=OBSERVATION_DIM,
            max_episode_steps=max_episode_steps,
        )
        self.computes_contact_forces = bool(contact_forces)
        self.task_dim = 1
        self._body_masses = self._pristine_model.body_mass[:, None].copy()
        self._total_mass = float(self._pristine_model.body_mass.sum())
        self._timestep = float(self._pristine_model.opt.timestep)

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.0, 2.0 * np.pi, size=(num_tasks, 1))

    def _mass_center(self, simulator: Simulator) -> np.ndarray:
        """Whole-body centre of mass in the plane, from fresh kinematics of the current qpos."""
        mujoco.mj_kinematics(simulator.model, simulator.data)
        return np.sum(self._body_masses * simulator.data.xipos[:, :2], axis=0) / self._total_mass

    def _before_step(self, simulator: Simulator) -> np.ndarray:
        return self._mass_center(simulator)

    def _after_step(
        self, simulator: Simulator, before: np.ndarray, measurement: np.ndarray
    ) -> None:
        measurement[2] = np.square(simulator.data.cfrc_ext).sum()
        measurement[:2] = self._mass_center(simulator) - before

    def _write_observation(self, index: int, simulator: Simulator, row: np.ndarray) -> None:
        data = simulator.data
        row[:22] = simulator.qpos[2:]
        row[22:45] = simulator.qvel
        row[45:185] = data.cinert.ravel()
        row[185:269] = data.cvel.ravel()
        row[269:292] = data.qfrc_actuator
        row[292:] = data.cfrc_ext.ravel()

    def _rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        measurements: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        angle = task[..., 0]
        progress = measurements[..., 0] * np.cos(angle) + measurements[..., 1] * np.sin(angle)
        impact_cost = np.minimum(IMPACT_COST_WEIGHT * measurements[..., 2], IMPACT_COST_LIMIT)
        return (
            VELOCITY_WEIGHT * progress / self._timestep
            - CONTROL_COST_WEIGHT * square_sum(action)
            - impact_cost
            + ALIVE_BONUS
        ).astype(np.float32)

    def _terminations(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        height = qpos[:, 2]
        return (height < HEALTHY_Z_RANGE[0]) | (height > HEALTHY_Z_RANGE[1])

    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        plot_direction(ax, float(np.asarray(task)[0]))
