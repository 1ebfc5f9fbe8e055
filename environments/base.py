"""The interface every task family implements, and the gymnasium adapter for one task.

A *task family* is a distribution over MDPs that share observation and action spaces. A *task* is
a float vector of length ``task_dim`` (a goal, a velocity, a wind, physics multipliers, ...). Every
family is implemented as a :class:`BatchedTaskEnv`: ``num_envs`` independent copies, each with its
own task and its own random stream, stepped together in one call. One copy wrapped by
:class:`TaskEnv` is an ordinary ``gymnasium.Env``.

Conventions shared by all families:

- ``step`` takes actions in the family's *native* action space (the BAMDP wrapper maps [-1, 1]
  actions to it). Discrete actions are integer indices.
- ``reward(obs, action, next_obs, task)`` and ``success(obs, action, next_obs, task)`` are pure
  and vectorised over leading dimensions; ``step`` returns exactly what they return for the
  transition it made (the rewards in a dataset can therefore be recomputed under another task).
- ``terminated`` means the inner episode ends early in a terminal state (a fall); ``successes``
  means the goal was reached, which BOReL also treats as a TD terminal but which does not end the
  episode. Time limits are applied by the wrappers, not by the family.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces


@dataclass
class BatchedStep:
    """The result of stepping K copies at once; every array has leading dimension K."""

    observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    successes: np.ndarray
    infos: dict[str, np.ndarray] = field(default_factory=dict)


class BatchedTaskEnv(abc.ABC):
    """K copies of one task family, each with its own task and random stream.

    Subclasses set ``observation_space``, ``action_space`` (for one copy), ``task_dim`` and
    ``max_episode_steps`` in ``__init__``, and implement ``sample_tasks``, ``_reset_copies``,
    ``_step`` and ``reward``. ``reward_recomputable`` is False where the reward of a stored
    transition cannot be recomputed from the stored arrays and the task (relabelling then refuses);
    ``task_changes_dynamics`` is True where tasks differ in their transitions (Reward Relabelling
    is then invalid and Policy Replaying is used instead); ``success_is_terminal`` is False where
    reaching the goal must not end bootstrapping (Meta-World keeps rewarding after success).
    """

    reward_recomputable: ClassVar[bool] = True
    task_changes_dynamics: ClassVar[bool] = False
    success_is_terminal: ClassVar[bool] = True
    observation_space: spaces.Box
    action_space: spaces.Box | spaces.Discrete
    task_dim: int
    max_episode_steps: int

    def __init__(self, num_envs: int) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.num_envs = num_envs
        self._random_streams = [np.random.default_rng(index) for index in range(num_envs)]
        self._tasks: np.ndarray | None = None

    # ----------------------------------------------------------------------------- tasks
    @abc.abstractmethod
    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``num_tasks`` tasks from the family's distribution: shape (num_tasks, task_dim)."""

    def task_from_seed(self, seed: int) -> np.ndarray:
        """The task that ``--seed seed`` selects: always the same vector for the same seed."""
        return self.sample_tasks(1, np.random.default_rng(seed))[0]

    def set_tasks(self, tasks: np.ndarray) -> None:
        """Give copy i the task ``tasks[i]``; takes effect immediately (also mid-episode)."""
        tasks = np.asarray(tasks, dtype=np.float64)
        if tasks.shape != (self.num_envs, self.task_dim):
            raise ValueError(
                f"expected tasks of shape ({self.num_envs}, {self.task_dim}), got {tasks.shape}"
            )
        self.validate_tasks(tasks)
        self._tasks = tasks.copy()
        self._on_tasks_set()

    def get_tasks(self) -> np.ndarray:
        """The current tasks, shape (num_envs, task_dim)."""
        if self._tasks is None:
            raise RuntimeError("no task set: call set_tasks() first")
        return self._tasks.copy()

    def validate_tasks(self, tasks: np.ndarray) -> None:
        """Raise ValueError for tasks outside the family (finite, in range); override to narrow."""
        if not np.all(np.isfinite(tasks)):
            raise ValueError("tasks must be finite")

    def _on_tasks_set(self) -> None:
        """Hook for families that must change the simulator when the task changes."""

    # ----------------------------------------------------------------------------- episodes
    def seed(self, seeds: list[int] | np.ndarray) -> None:
        """Give copy i its own random stream seeded with ``seeds[i]`` (start states, noise)."""
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        self._random_streams = [np.random.default_rng(int(seed)) for seed in seeds]

    def random_state(self) -> list[dict[str, Any]]:
        """The state of every copy's random stream (to checkpoint and restore exactly)."""
        return [stream.bit_generator.state for stream in self._random_streams]

    def set_random_state(self, states: list[dict[str, Any]]) -> None:
        if len(states) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} random states, got {len(states)}")
        for stream, state in zip(self._random_streams, states, strict=True):
            stream.bit_generator.state = state

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Reset the copies where ``mask`` is True (all when None) and return all observations.

        Copies that are not reset keep their state; their current observation is returned.
        """
        if self._tasks is None:
            raise RuntimeError("no task set: call set_tasks() before reset()")
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, bool)
        return self._reset_copies(mask)

    @abc.abstractmethod
    def _reset_copies(self, mask: np.ndarray) -> np.ndarray:
        """Reset the masked copies; return the observations of all copies (K, obs_dim)."""

    def step(self, actions: np.ndarray) -> BatchedStep:
        """Advance every copy by one step with ``actions`` in the native action space."""
        if self._tasks is None:
            raise RuntimeError("no task set: call set_tasks() and reset() first")
        actions = np.asarray(actions)
        if isinstance(self.action_space, spaces.Discrete):
            if actions.shape != (self.num_envs,):
                raise ValueError(f"expected {self.num_envs} discrete actions, got {actions.shape}")
        elif actions.shape != (self.num_envs, *self.action_space.shape):
            raise ValueError(
                f"expected actions of shape ({self.num_envs}, {self.action_space.shape[0]}), "
                f"got {actions.shape}"
            )
        return self._step(actions)

    @abc.abstractmethod
    def _step(self, actions: np.ndarray) -> BatchedStep:
        """Advance every copy by one step; actions are already shape-checked."""

    # ----------------------------------------------------------------------------- pure functions
    @abc.abstractmethod
    def reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """Reward of the transition (obs, action, next_obs) under ``task``; vectorised over
        leading dimensions. Actions are native (datasets store Box actions in [-1, 1]: map them
        with ``BatchedBAMDP.to_native_actions``); Discrete actions one-hot or integer. Equal to
        what ``step`` returned for that transition."""

    def success(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """Whether ``next_obs`` reaches the goal of ``task`` (False for families without one)."""
        return np.zeros(np.broadcast_shapes(next_obs.shape[:-1], task.shape[:-1]), dtype=bool)

    def sparse_reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray | None:
        """A sparse companion of the training reward (FOCAL's contexts and returns, the ant's
        sparse evaluation), or None where the family has none. ``step`` reports it in
        ``infos['sparse_reward']`` and datasets store it as ``sparse_rewards``."""
        return None

    def start_meta_episode(self, mask: np.ndarray) -> None:
        """Hook called when the masked copies begin a new meta-episode (not an inner reset):
        families that track something across inner episodes (the gridworld's belief) clear it."""

    # ----------------------------------------------------------------------------- figures
    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        """Draw the task's layout (goal, arc, walls) on a matplotlib axis; nothing by default."""

    def trajectory_xy(self, observations: np.ndarray) -> np.ndarray | None:
        """The planar position along a trajectory (T, 2) for figures, or None if it has none."""
        return None

    def render_frames(self, index: int = 0) -> np.ndarray | None:
        """An RGB frame of copy ``index`` for videos, or None where the family has no renderer."""
        return None

    def close(self) -> None:
        """Release simulator resources."""


class TaskEnv(gymnasium.Env):
    """One copy of a family as a ``gymnasium.Env`` with a time limit of ``max_episode_steps``.

    ``step`` returns ``(obs, reward, terminated, truncated, info)`` where ``info['success']`` says
    whether the goal was reached. Actions are in the family's native action space.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, batched: BatchedTaskEnv, task: np.ndarray | None = None) -> None:
        if batched.num_envs != 1:
            raise ValueError("TaskEnv wraps a family built with num_envs=1")
        self.batched = batched
        self.observation_space = batched.observation_space
        self.action_space = batched.action_space
        self.max_episode_steps = batched.max_episode_steps
        self._elapsed_steps = 0
        initial = batched.task_from_seed(0) if task is None else np.asarray(task, np.float64)
        batched.set_tasks(initial[None])

    @property
    def task_dim(self) -> int:
        return self.batched.task_dim

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        return self.batched.sample_tasks(num_tasks, rng)

    def set_task(self, task: np.ndarray) -> None:
        self.batched.set_tasks(np.asarray(task, np.float64)[None])

    def get_task(self) -> np.ndarray:
        return self.batched.get_tasks()[0]

    def reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        return self.batched.reward(obs, action, next_obs, task)

    def success(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        return self.batched.success(obs, action, next_obs, task)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.batched.seed([seed])
        if options and "task" in options:
            self.set_task(options["task"])
        self._elapsed_steps = 0
        self.batched.start_meta_episode(np.ones(1, dtype=bool))
        observation = self.batched.reset()[0]
        return observation, {"task": self.get_task()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        result = self.batched.step(np.asarray(action)[None])
        self._elapsed_steps += 1
        info: dict[str, Any] = {key: value[0] for key, value in result.infos.items()}
        info["success"] = bool(result.successes[0])
        info["task"] = self.get_task()
        truncated = self._elapsed_steps >= self.max_episode_steps
        return (
            result.observations[0],
            float(result.rewards[0]),
            bool(result.terminated[0]),
            truncated,
            info,
        )

    def render(self) -> np.ndarray | None:
        return self.batched.render_frames(0)

    def close(self) -> None:
        self.batched.close()
