"""Point robots in the plane: BOReL's dense robot and semi-circle, FOCAL's three variants, and wind.

The state is the position s in R^2 (unbounded); an action a in [-0.1, 0.1]^2 moves it to
s' = s + a (plus the task's wind w for :class:`PointRobotWind`). Rewards, with d = ||s' - g||:

- ``dense``: -d (BOReL ``point_robot``, FOCAL ``point-robot`` and ``point-robot-wind``);
- ``sparse``: 1[d <= goal_radius] (BOReL's semi-circle and wind);
- ``dense_with_sparse``: -d for learning, with the sparse companion max(0, 1 - d / goal_radius)
  in ``infos['sparse_reward']`` (FOCAL ``sparse-point-robot``: its (r - goal_radius)/|goal_radius|
  rule with goal_radius = -0.2).

Success (and BOReL's TD terminal) is d <= goal_radius. Spec: borel.md section 2.2, focal.md 1.3.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from environments.base import BatchedStep, BatchedTaskEnv

ACTION_BOUND = 0.1
REWARD_VARIANTS = ("dense", "sparse", "dense_with_sparse")
GOAL_DISTRIBUTIONS = ("square", "semicircle")
START_DISTRIBUTIONS = ("origin", "square", "uniform", "uniform_off_circle")
PLOT_LIMITS = ((-2.0, 2.0), (-1.0, 2.0))


def sample_start_states(
    distribution: str, rng: np.random.Generator
) -> np.ndarray:
    """One start position drawn from ``distribution``.

    ``origin``: (0, 0). ``square``: U[-1, 1]^2. ``uniform``: x ~ U[-1.5, 1.5], y ~ U[-0.5, 1.5]
    (BOReL's data-collection start). ``uniform_off_circle``: as ``uniform`` but redrawn while
    0.8 <= ||s|| <= 1.2, so no episode starts on the goal arc.
    """
    if distribution == "origin":
        return np.zeros(2)
    if distribution == "square":
        return rng.uniform(-1.0, 1.0, size=2)
    while True:
        state = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-0.5, 1.5)])
        radius = np.linalg.norm(state)
        if distribution == "uniform" or not 0.8 <= radius <= 1.2:
            return state


def sparse_goal_reward(distance: np.ndarray, goal_radius: float) -> np.ndarray:
    """FOCAL's sparse point-robot reward: 1 - d / radius inside the goal disc, 0 outside."""
    return np.where(distance <= goal_radius, 1.0 - distance / goal_radius, 0.0)


class PointRobot(BatchedTaskEnv):
    """K point robots, each with its own goal; task = goal (g_x, g_y)."""

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = 60,
        reward_variant: str = "dense",
        goal_distribution: str = "square",
        start_distribution: str = "square",
        goal_radius: float = 0.2,
    ) -> None:
        super().__init__(num_envs)
        for name, value, choices in [
            ("reward_variant", reward_variant, REWARD_VARIANTS),
            ("goal_distribution", goal_distribution, GOAL_DISTRIBUTIONS),
            ("start_distribution", start_distribution, START_DISTRIBUTIONS),
        ]:
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if goal_radius <= 0:
            raise ValueError(f"goal_radius must be positive, got {goal_radius}")
        self.max_episode_steps = int(max_episode_steps)
        self.reward_variant = reward_variant
        self.goal_distribution = goal_distribution
        self.start_distribution = start_distribution
        self.goal_radius = float(goal_radius)
        self.task_dim = 2
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(2,), dtype=np.float32)
        self._states = np.zeros((num_envs, 2), dtype=np.float32)

    # ----------------------------------------------------------------------------- tasks
    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        if self.goal_distribution == "semicircle":
            angles = rng.uniform(0.0, np.pi, size=num_tasks)
            return np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return rng.uniform(-1.0, 1.0, size=(num_tasks, 2))

    def _goals(self, task: np.ndarray) -> np.ndarray:
        return task

    # ----------------------------------------------------------------------------- dynamics
    def _reset_copies(self, mask: np.ndarray) -> np.ndarray:
        for index in np.flatnonzero(mask):
            self._states[index] = sample_start_states(
                self.start_distribution, self._random_streams[index]
            )
        return self._states.copy()

    def _displacement(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(actions, -ACTION_BOUND, ACTION_BOUND)

    def _step(self, actions: np.ndarray) -> BatchedStep:
        observations = self._states.copy()
        next_states = (self._states.astype(np.float64) + self._displacement(actions)).astype(
            np.float32
        )
        self._states = next_states
        tasks = self.get_tasks()
        infos: dict[str, np.ndarray] = {}
        sparse = self.sparse_reward(observations, actions, next_states, tasks)
        if sparse is not None:
            infos["sparse_reward"] = sparse
        return BatchedStep(
            observations=next_states.copy(),
            rewards=self.reward(observations, actions, next_states, tasks),
            terminated=np.zeros(self.num_envs, dtype=bool),
            successes=self.success(observations, actions, next_states, tasks),
            infos=infos,
        )

    # ----------------------------------------------------------------------------- pure functions
    def _distance(self, next_obs: np.ndarray, task: np.ndarray) -> np.ndarray:
        goals = self._goals(np.asarray(task, dtype=np.float64))
        return np.linalg.norm(np.asarray(next_obs, dtype=np.float64)[..., :2] - goals, axis=-1)

    def reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        distance = self._distance(next_obs, task)
        if self.reward_variant == "sparse":
            return (distance <= self.goal_radius).astype(np.float32)
        return (-distance).astype(np.float32)

    def sparse_reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray | None:
        if self.reward_variant != "dense_with_sparse":
            return None
        return sparse_goal_reward(self._distance(next_obs, task), self.goal_radius).astype(
            np.float32
        )

    def success(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        return self._distance(next_obs, task) <= self.goal_radius

    # ----------------------------------------------------------------------------- figures
    def trajectory_xy(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(observations)[..., :2]

    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        import matplotlib.patches as patches

        if self.goal_distribution == "semicircle":
            angles = np.linspace(0.0, np.pi, 100)
            ax.plot(np.cos(angles), np.sin(angles), color="0.6", linewidth=1)
        goal = self._goals(np.asarray(task, dtype=np.float64))
        ax.add_patch(patches.Circle(goal, self.goal_radius, color="tab:green", alpha=0.3))
        ax.plot(*goal, marker="x", color="tab:green")
        ax.set_xlim(*PLOT_LIMITS[0])
        ax.set_ylim(*PLOT_LIMITS[1])
        ax.set_aspect("equal")


class PointRobotWind(PointRobot):
    """Point robots pushed by a per-task wind; task = wind (w_x, w_y) ~ U[-0.05, 0.05]^2.

    The goal is fixed for every task (BOReL: (0, 1); FOCAL: (1, 0)) and episodes start at (0, 0).
    Only the dynamics differ between tasks, so Reward Relabelling does not apply.
    """

    task_changes_dynamics = True
    WIND_BOUND = 0.05

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = 25,
        reward_variant: str = "sparse",
        goal: tuple[float, float] = (0.0, 1.0),
        goal_radius: float = 0.2,
    ) -> None:
        super().__init__(
            num_envs,
            max_episode_steps=max_episode_steps,
            reward_variant=reward_variant,
            goal_distribution="square",
            start_distribution="origin",
            goal_radius=goal_radius,
        )
        self.goal = np.asarray(goal, dtype=np.float64)
        if self.goal.shape != (2,):
            raise ValueError(f"goal must be two numbers, got {goal!r}")

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-self.WIND_BOUND, self.WIND_BOUND, size=(num_tasks, 2))

    def validate_tasks(self, tasks: np.ndarray) -> None:
        super().validate_tasks(tasks)
        if np.any(np.abs(tasks) > self.WIND_BOUND + 1e-12):
            raise ValueError(f"wind components must lie in [-{self.WIND_BOUND}, {self.WIND_BOUND}]")

    def _goals(self, task: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.goal, np.shape(task))

    def _displacement(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(actions, -ACTION_BOUND, ACTION_BOUND) + self.get_tasks()

    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        super().plot_task(ax, task)
        wind = np.asarray(task, dtype=np.float64)
        ax.arrow(0.0, 0.0, wind[0] * 10, wind[1] * 10, width=0.01, color="tab:blue", alpha=0.6)
