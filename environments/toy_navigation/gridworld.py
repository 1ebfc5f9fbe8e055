"""BOReL's 5x5 grid navigation (GridNavi): 21 goals, 15 steps per episode, 4 episodes per task.

The observation is the cell (x, y) as floats in [0, 4]^2. Actions: 0 stay, 1 up (y + 1),
2 right (x + 1), 3 down (y - 1), 4 left (x - 1); moves are clipped at the walls. The reward after
the move is +1 on the goal cell and ``step_penalty`` (-0.1) elsewhere (0 with
``reward_variant='sparse'``). The goal is any cell except the four of the bottom-left 2x2 block.

Each copy also keeps the exact Bayesian belief over the goal given what its meta-episode has seen:
uniform over the 21 candidates, a visited cell that is not the goal is ruled out, and reaching the
goal collapses the belief onto it. With n cells still possible, ``infos['belief_reward']`` is
(1 + c (n - 1)) / n, the expected reward of the next step under the belief (c = step penalty).
Spec: borel.md section 2.2 (GridNavi).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from environments.base import BatchedStep, BatchedTaskEnv

MOVES = np.array([[0, 0], [0, 1], [1, 0], [0, -1], [-1, 0]], dtype=np.int64)
ACTION_NAMES = ("stay", "up", "right", "down", "left")


def goal_cells(num_cells: int) -> np.ndarray:
    """All goal candidates (x, y), ordered by cell id x + num_cells * y: every cell except the
    2x2 block at the origin."""
    cells = [
        (x, y)
        for y in range(num_cells)
        for x in range(num_cells)
        if not (x < 2 and y < 2)
    ]
    return np.array(cells, dtype=np.float64)


def cell_ids(positions: np.ndarray, num_cells: int) -> np.ndarray:
    """Cell id x + num_cells * y of integer-valued positions (..., 2)."""
    cells = np.rint(np.asarray(positions)[..., :2]).astype(np.int64)
    return cells[..., 0] + num_cells * cells[..., 1]


class GridWorld(BatchedTaskEnv):
    """K grid worlds, each with its own goal cell; task = goal (x, y)."""

    def __init__(
        self,
        num_envs: int = 1,
        num_cells: int = 5,
        max_episode_steps: int = 15,
        reward_variant: str = "dense",
        step_penalty: float = -0.1,
        start_distribution: str = "origin",
    ) -> None:
        super().__init__(num_envs)
        if num_cells < 3:
            raise ValueError(f"num_cells must be at least 3, got {num_cells}")
        if reward_variant not in ("dense", "sparse"):
            raise ValueError(f"reward_variant must be 'dense' or 'sparse', got {reward_variant!r}")
        if start_distribution not in ("origin", "uniform"):
            raise ValueError(
                f"start_distribution must be 'origin' or 'uniform', got {start_distribution!r}"
            )
        self.num_cells = int(num_cells)
        self.max_episode_steps = int(max_episode_steps)
        self.step_penalty = 0.0 if reward_variant == "sparse" else float(step_penalty)
        self.start_distribution = start_distribution
        self.goals = goal_cells(self.num_cells)
        self.task_dim = 2
        high = float(self.num_cells - 1)
        self.observation_space = spaces.Box(0.0, high, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(len(MOVES))
        self._cells = np.zeros((num_envs, 2), dtype=np.int64)
        self._candidate_mask = np.zeros(self.num_cells**2, dtype=bool)
        self._candidate_mask[cell_ids(self.goals, self.num_cells)] = True
        self._beliefs = np.tile(self._candidate_mask, (num_envs, 1))

    @property
    def num_states(self) -> int:
        """Number of cells (the multi-head reward decoder has one head per cell)."""
        return self.num_cells**2

    def cell_index(self, observations: np.ndarray) -> np.ndarray:
        """Cell id x + num_cells * y of observations (..., 2[+1]); the multi-head decoder's head."""
        return cell_ids(observations, self.num_cells)

    # ----------------------------------------------------------------------------- tasks
    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        replace = num_tasks > len(self.goals)
        return self.goals[rng.choice(len(self.goals), size=num_tasks, replace=replace)]

    def task_from_seed(self, seed: int) -> np.ndarray:
        """Seed s selects goal number s mod 21, so seeds 0-20 cover every goal once."""
        return self.goals[seed % len(self.goals)].copy()

    def validate_tasks(self, tasks: np.ndarray) -> None:
        super().validate_tasks(tasks)
        goal_ids = set(cell_ids(self.goals, self.num_cells).tolist())
        if not np.array_equal(tasks, np.rint(tasks)) or not set(
            cell_ids(tasks, self.num_cells).tolist()
        ) <= goal_ids:
            raise ValueError(f"gridworld tasks must be goal cells, got {tasks.tolist()}")

    def _on_tasks_set(self) -> None:
        self._beliefs = np.tile(self._candidate_mask, (self.num_envs, 1))

    def start_meta_episode(self, mask: np.ndarray) -> None:
        self._beliefs[mask] = self._candidate_mask

    # ----------------------------------------------------------------------------- dynamics
    def _reset_copies(self, mask: np.ndarray) -> np.ndarray:
        goal_ids = cell_ids(self.get_tasks(), self.num_cells)
        for index in np.flatnonzero(mask):
            if self.start_distribution == "origin":
                self._cells[index] = 0
            else:
                choices = np.delete(np.arange(self.num_cells**2), goal_ids[index])
                cell = int(self._random_streams[index].choice(choices))
                self._cells[index] = (cell % self.num_cells, cell // self.num_cells)
        self._rule_out_visited(mask)
        return self._cells.astype(np.float32)

    def _rule_out_visited(self, mask: np.ndarray) -> None:
        """Update the masked copies' beliefs with the cell each one is in now."""
        goal_ids = cell_ids(self.get_tasks(), self.num_cells)
        here = cell_ids(self._cells, self.num_cells)
        rows = np.flatnonzero(mask)
        at_goal = here[rows] == goal_ids[rows]
        self._beliefs[rows[~at_goal], here[rows[~at_goal]]] = False
        self._beliefs[rows[at_goal]] = False
        self._beliefs[rows[at_goal], here[rows[at_goal]]] = True

    def belief_rewards(self) -> np.ndarray:
        """(1 + c (n - 1)) / n for each copy, with n the number of goal cells still possible."""
        possible = self._beliefs.sum(axis=1)
        return (1.0 + self.step_penalty * (possible - 1)) / possible

    def beliefs(self) -> np.ndarray:
        """The exact belief over cells (K, num_cells^2), uniform over the remaining candidates."""
        return self._beliefs / self._beliefs.sum(axis=1, keepdims=True)

    def _step(self, actions: np.ndarray) -> BatchedStep:
        actions = actions.astype(np.int64)
        if np.any((actions < 0) | (actions >= len(MOVES))):
            raise ValueError(f"gridworld actions must lie in 0..{len(MOVES) - 1}")
        observations = self._cells.astype(np.float32)
        self._cells = np.clip(self._cells + MOVES[actions], 0, self.num_cells - 1)
        next_observations = self._cells.astype(np.float32)
        self._rule_out_visited(np.ones(self.num_envs, dtype=bool))
        tasks = self.get_tasks()
        return BatchedStep(
            observations=next_observations,
            rewards=self.reward(observations, actions, next_observations, tasks),
            terminated=np.zeros(self.num_envs, dtype=bool),
            successes=self.success(observations, actions, next_observations, tasks),
            infos={"belief_reward": self.belief_rewards().astype(np.float32)},
        )

    # ----------------------------------------------------------------------------- pure functions
    def success(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        return cell_ids(next_obs, self.num_cells) == cell_ids(task, self.num_cells)

    def reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        on_goal = self.success(obs, action, next_obs, task)
        return np.where(on_goal, 1.0, self.step_penalty).astype(np.float32)

    # ----------------------------------------------------------------------------- figures
    def trajectory_xy(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(observations)[..., :2]

    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        size = self.num_cells
        for line in range(size + 1):
            ax.plot([-0.5, size - 0.5], [line - 0.5, line - 0.5], color="0.8", linewidth=0.8)
            ax.plot([line - 0.5, line - 0.5], [-0.5, size - 0.5], color="0.8", linewidth=0.8)
        ax.fill_between([-0.5, 1.5], -0.5, 1.5, color="0.92")
        ax.plot(task[0], task[1], marker="x", markersize=14, color="tab:green", mew=3)
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(-0.5, size - 0.5)
        ax.set_aspect("equal")
