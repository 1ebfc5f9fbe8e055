"""The ant task families: direction (``ant_dir``), goal in a disc (``ant_goal``) and goal on a
semicircle (``ant_semicircle``, dense and sparse).

Model: our ``assets/ant.xml`` (the papers' ant: gear 150, RK4 with timestep 0.01), frame skip 5,
so dt = 0.05; actions in [-1, 1]^8. Spec: borel.md 2.2 (Ant base, Ant-Dir, Ant-Goal,
Ant-Semi-circle), focal.md 1.3. The torso position is the free joint's qpos[0:3] after the step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from environments.mujoco.base import (
    ASSETS_DIR,
    DEFAULT_MAX_EPISODE_STEPS,
    MujocoTaskEnv,
    Simulator,
    plot_direction,
    square_sum,
)
from environments.toy_navigation.point_robot import START_DISTRIBUTIONS, sample_start_states

FRAME_SKIP = 5
RESET_NOISE_SCALE = 0.1
CONTACT_COST_WEIGHT = 0.5e-3
HEALTHY_Z_RANGE = (0.2, 1.0)
FORWARD_BACKWARD_ANGLES = (0.0, np.pi)
SEMICIRCLE_GOAL_RADIUS = 0.2
REWARD_VARIANTS = ("dense", "sparse")


def l1_distance_to_goal(next_obs: np.ndarray, task: np.ndarray) -> np.ndarray:
    """|x - g_x| + |y - g_y| with the torso xy in the first two observation entries."""
    next_obs = np.asarray(next_obs, dtype=np.float64)
    return np.abs(next_obs[..., 0] - task[..., 0]) + np.abs(next_obs[..., 1] - task[..., 1])


class Ant(MujocoTaskEnv):
    """The shared ant: model, frame skip and the papers' noisy reset."""

    reset_noise_scale = RESET_NOISE_SCALE

    def __init__(
        self,
        num_envs: int,
        observation_dim: int,
        max_episode_steps: int,
        sparse_goal_radius: float | None = None,
    ) -> None:
        super().__init__(
            num_envs,
            ASSETS_DIR / "ant.xml",
            frame_skip=FRAME_SKIP,
            observation_dim=observation_dim,
            max_episode_steps=max_episode_steps,
            sparse_goal_radius=sparse_goal_radius,
        )


class AntDirection(Ant):
    """Ant running in direction theta (task = (theta,)).

    Observation (27) = qpos[2:] (13: torso height, quaternion, 8 joint angles) and qvel (14).
    Reward, with the torso's planar velocity v = (xy_after - xy_before) / dt:

        r = <v, (cos theta, sin theta)> - 0.5 ||a||^2 - 0.5e-3 sum clip(cfrc_ext, -1, 1)^2 + 1.

    The episode terminates when the state is not finite or the torso height leaves [0.2, 1.0].
    ``contact_forces=False`` leaves cfrc_ext at zero, as MuJoCo 2.0 did in the papers' runs (no
    contact cost then).
    theta ~ U[0, 2 pi), or theta in {0, pi} with ``forward_backward`` (seed s selects
    ``(0, pi)[s % 2]``). The torso xy is not observed, so ``reward`` replays the transition.
    """

    replays_transitions = True
    planar_root_size = 2
    measurement_dim = 3
    can_terminate = True
    CONTROL_COST_WEIGHT = 0.5
    SURVIVE_REWARD = 1.0

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        forward_backward: bool = False,
        sparse_goal_radius: float | None = None,
        contact_forces: bool = True,
    ) -> None:
        super().__init__(num_envs, 27, max_episode_steps, sparse_goal_radius)
        self.computes_contact_forces = bool(contact_forces)
        self.forward_backward = bool(forward_backward)
        self.task_dim = 1

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        if self.forward_backward:
            return rng.choice(FORWARD_BACKWARD_ANGLES, size=(num_tasks, 1))
        return rng.uniform(0.0, 2.0 * np.pi, size=(num_tasks, 1))

    def task_from_seed(self, seed: int) -> np.ndarray:
        if self.forward_backward:
            return np.array([FORWARD_BACKWARD_ANGLES[seed % len(FORWARD_BACKWARD_ANGLES)]])
        return super().task_from_seed(seed)

    def validate_tasks(self, tasks: np.ndarray) -> None:
        super().validate_tasks(tasks)
        if self.forward_backward and not np.all(np.isin(tasks, FORWARD_BACKWARD_ANGLES)):
            raise ValueError(f"forward/backward angles must be 0 or pi, got {tasks.ravel()}")

    def _after_step(self, simulator: Simulator, before: None, measurement: np.ndarray) -> None:
        measurement[:2] = simulator.qpos[:2]
        measurement[2] = np.square(np.clip(simulator.data.cfrc_ext, -1.0, 1.0)).sum()

    def _write_observation(self, index: int, simulator: Simulator, row: np.ndarray) -> None:
        row[:13] = simulator.qpos[2:]
        row[13:] = simulator.qvel

    def _rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        measurements: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        angle = task[..., 0]
        forward = (
            measurements[..., 0] * np.cos(angle) + measurements[..., 1] * np.sin(angle)
        ) / self.dt
        return (
            forward
            - self.CONTROL_COST_WEIGHT * square_sum(action)
            - CONTACT_COST_WEIGHT * measurements[..., 2]
            + self.SURVIVE_REWARD
        ).astype(np.float32)

    def _terminations(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
        height = qpos[:, 2]
        healthy = (height >= HEALTHY_Z_RANGE[0]) & (height <= HEALTHY_Z_RANGE[1])
        return ~(finite & healthy)

    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        plot_direction(ax, float(np.asarray(task)[0]))


class AntGoal(Ant):
    """Ant walking to a goal g uniform in a disc of radius 3 (task = (g_x, g_y)).

    Observation (113) = qpos (15, torso xy first), qvel (14) and clip(cfrc_ext, -1, 1) (84).
    Reward, a function of the next observation:

        r = -(|x - g_x| + |y - g_y|) - 0.1 ||a||^2 - 0.5e-3 sum clip(cfrc_ext, -1, 1)^2.

    Never terminates. Goals: angle ~ U[0, 2 pi), radius = 3 sqrt(U[0, 1]). ``contact_forces=False``
    leaves cfrc_ext at zero (observation and cost), as MuJoCo 2.0 did in the papers' runs.
    """

    CONTROL_COST_WEIGHT = 0.1

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        goal_disc_radius: float = 3.0,
        contact_forces: bool = True,
    ) -> None:
        super().__init__(num_envs, 113, max_episode_steps)
        self.computes_contact_forces = bool(contact_forces)
        if goal_disc_radius <= 0:
            raise ValueError(f"goal_disc_radius must be positive, got {goal_disc_radius}")
        self.goal_disc_radius = float(goal_disc_radius)
        self.task_dim = 2

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        angles = rng.uniform(0.0, 2.0 * np.pi, size=num_tasks)
        radii = self.goal_disc_radius * np.sqrt(rng.uniform(0.0, 1.0, size=num_tasks))
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)

    def _write_observation(self, index: int, simulator: Simulator, row: np.ndarray) -> None:
        row[:15] = simulator.qpos
        row[15:29] = simulator.qvel
        row[29:] = np.clip(simulator.data.cfrc_ext, -1.0, 1.0).ravel()

    def _rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        measurements: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        return (
            -l1_distance_to_goal(next_obs, task)
            - self.CONTROL_COST_WEIGHT * square_sum(action)
            - CONTACT_COST_WEIGHT * square_sum(np.asarray(next_obs)[..., 29:113])
        ).astype(np.float32)

    def trajectory_xy(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(observations)[..., :2]

    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        import matplotlib.patches as patches

        ax.add_patch(patches.Circle((0.0, 0.0), self.goal_disc_radius, fill=False, color="0.6"))
        ax.plot(*np.asarray(task)[:2], marker="x", color="tab:green")
        limit = self.goal_disc_radius + 0.5
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")


class AntSemicircle(Ant):
    """Ant walking to a goal g = (cos theta, sin theta), theta ~ U[0, pi] (task = (g_x, g_y)).

    Observation (29) = qpos (15, torso xy first) and qvel (14). Rewards, with xy the torso position
    after the step and d = ||xy - g||:

    - ``dense`` (BOReL's data-collection env): r = -(|x - g_x| + |y - g_y|) - 0.1 ||a||^2;
    - ``sparse``: r = 1[d <= 0.2] - 0.1 ||a||^2, and success (BOReL's TD terminal) is d <= 0.2.

    Both variants report the sparse reward in ``infos['sparse_reward']`` (the dense env's data is
    evaluated with it). Never terminates. Resets start from qpos0 without noise with the torso xy
    drawn from ``start_distribution`` (``origin``, or BOReL's ``uniform`` / ``uniform_off_circle``
    data-collection starts, see ``sample_start_states``).
    """

    CONTROL_COST_WEIGHT = 0.1

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        reward_variant: str = "dense",
        goal_radius: float = SEMICIRCLE_GOAL_RADIUS,
        start_distribution: str = "origin",
    ) -> None:
        super().__init__(num_envs, 29, max_episode_steps)
        for name, value, choices in [
            ("reward_variant", reward_variant, REWARD_VARIANTS),
            ("start_distribution", start_distribution, START_DISTRIBUTIONS),
        ]:
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if goal_radius <= 0:
            raise ValueError(f"goal_radius must be positive, got {goal_radius}")
        self.reward_variant = reward_variant
        self.goal_radius = float(goal_radius)
        self.start_distribution = start_distribution
        self.task_dim = 2

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        angles = rng.uniform(0.0, np.pi, size=num_tasks)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def _sample_initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        qpos = self._initial_qpos.copy()
        qpos[:2] = sample_start_states(self.start_distribution, rng)
        return qpos, self._initial_qvel.copy()

    def _write_observation(self, index: int, simulator: Simulator, row: np.ndarray) -> None:
        row[:15] = simulator.qpos
        row[15:] = simulator.qvel

    def _distance(self, next_obs: np.ndarray, task: np.ndarray) -> np.ndarray:
        next_obs = np.asarray(next_obs, dtype=np.float64)
        return np.hypot(next_obs[..., 0] - task[..., 0], next_obs[..., 1] - task[..., 1])

    def _goal_rewards(
        self, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """The sparse reward 1[||xy - g|| <= goal_radius] - 0.1 ||a||^2."""
        inside = self._distance(next_obs, task) <= self.goal_radius
        control_cost = self.CONTROL_COST_WEIGHT * square_sum(action)
        return (inside.astype(np.float64) - control_cost).astype(np.float32)

    def _rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        measurements: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        if self.reward_variant == "sparse":
            return self._goal_rewards(action, next_obs, task)
        control_cost = self.CONTROL_COST_WEIGHT * square_sum(action)
        return (-l1_distance_to_goal(next_obs, task) - control_cost).astype(np.float32)

    def _sparse_rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        rewards: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        if self.reward_variant == "sparse":
            return rewards
        return self._goal_rewards(action, next_obs, task)

    def sparse_reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """The sparse evaluation reward (the sparse variant's reward), for either variant."""
        return self._goal_rewards(np.asarray(action, dtype=np.float32), next_obs, np.asarray(task))

    def success(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """||xy - g|| <= goal_radius for the sparse variant; never for the dense one (BOReL's
        dense data-collection env has no goal state)."""
        if self.reward_variant == "dense":
            return super().success(obs, action, next_obs, task)
        return self._distance(next_obs, np.asarray(task)) <= self.goal_radius

    def _successes(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        return self.success(obs, action, next_obs, task)

    def trajectory_xy(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(observations)[..., :2]

    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        import matplotlib.patches as patches

        angles = np.linspace(0.0, np.pi, 100)
        ax.plot(np.cos(angles), np.sin(angles), color="0.6", linewidth=1)
        goal = np.asarray(task)[:2]
        ax.add_patch(patches.Circle(goal, self.goal_radius, color="tab:green", alpha=0.3))
        ax.plot(*goal, marker="x", color="tab:green")
        ax.set_xlim(-2.0, 2.0)
        ax.set_ylim(-1.0, 2.0)
        ax.set_aspect("equal")
