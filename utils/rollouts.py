"""Meta-episode rollouts of K tasks at once, returned in the dataset layout.

:func:`collect_meta_episodes` plays one meta-episode in each copy of a ``BatchedBAMDP`` with a
policy that maps observations (K, obs_dim) to actions, and returns episode-major arrays (K, T, dim)
with per-trajectory lengths. Box actions are stored as the policy emitted them (in [-1, 1]);
discrete actions one-hot. Each stored ``observations[t + 1]`` is the observation the agent acted
on (the reset state after an inner episode ends), and ``next_observations[t]`` the true next state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from utils.datasets import TaskDataset

Policy = Callable[[np.ndarray], np.ndarray]
StepObserver = Callable[[np.ndarray, Any], None]
"""``on_step(stored_actions, result)``: sees each step's actions in the dataset layout and the
``BAMDPStep`` (an online belief update, a frame recorder)."""


@dataclass
class MetaEpisodeBatch:
    """K meta-episodes, episode-major: step arrays (K, T, dim), ``lengths`` (K,)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    successes: np.ndarray
    lengths: np.ndarray
    sparse_rewards: np.ndarray | None = None
    belief_rewards: np.ndarray | None = None

    def episode_returns(self, episodes_per_task: int) -> np.ndarray:
        """Return of each inner episode (K, k): rewards summed between truncation marks."""
        episode_ids = np.cumsum(self.truncations[..., 0], axis=1) - self.truncations[..., 0]
        returns = np.zeros((self.rewards.shape[0], episodes_per_task))
        for episode in range(episodes_per_task):
            inside = (episode_ids == episode) & self.valid_mask()
            returns[:, episode] = np.sum(self.rewards[..., 0] * inside, axis=1)
        return returns

    def episode_successes(self, episodes_per_task: int) -> np.ndarray:
        """Whether the goal was reached during each inner episode (K, k) bool."""
        episode_ids = np.cumsum(self.truncations[..., 0], axis=1) - self.truncations[..., 0]
        reached = self.successes[..., 0] > 0
        return np.stack([np.any(reached & (episode_ids == episode), axis=1)
                         for episode in range(episodes_per_task)], axis=1)

    def valid_mask(self) -> np.ndarray:
        return np.arange(self.rewards.shape[1])[None, :] < self.lengths[:, None]

    def select(self, rows: np.ndarray | list[int] | slice) -> MetaEpisodeBatch:
        """The meta-episodes at ``rows`` (indices, a boolean mask or a slice)."""
        return MetaEpisodeBatch(**{name: None if value is None else value[rows]
                                   for name, value in vars(self).items()})


def evaluation_scalars(batch: MetaEpisodeBatch, episodes_per_task: int,
                       prefix: str = "eval/") -> dict[str, float]:
    """The evaluation metrics BOReL logs for one meta-episode per task, averaged over tasks:
    ``<prefix>return_episode_<k>`` (mean return of inner episode k), ``<prefix>return_sum`` (mean
    of the summed return) and ``<prefix>success_rate`` (fraction of tasks whose goal was reached
    at least once)."""
    returns = batch.episode_returns(episodes_per_task)
    scalars = {f"{prefix}return_episode_{episode + 1}": float(returns[:, episode].mean())
               for episode in range(episodes_per_task)}
    scalars[f"{prefix}return_sum"] = float(returns.sum(axis=1).mean())
    scalars[f"{prefix}success_rate"] = float(batch.successes[..., 0].any(axis=1).mean())
    return scalars


def one_hot(indices: np.ndarray, size: int) -> np.ndarray:
    encoded = np.zeros((*np.shape(indices), size), dtype=np.float32)
    np.put_along_axis(encoded, np.asarray(indices, dtype=np.int64)[..., None], 1.0, axis=-1)
    return encoded


def stored_action_dim(action_space: spaces.Space) -> int:
    """Width of an action in datasets: the Box dimension, or the number of discrete actions."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    return int(action_space.shape[0])


def collect_meta_episodes(bamdp, policy: Policy, on_step: StepObserver | None = None
                          ) -> MetaEpisodeBatch:
    """Play one meta-episode in every copy of ``bamdp`` (a ``BatchedBAMDP``) with ``policy``.

    ``policy(observations)`` receives (K, obs_dim) float32 and returns (K, action_dim) actions in
    [-1, 1] (Box) or (K,) integer actions (Discrete). ``on_step(stored_actions, result)``, if
    given, sees every step's actions in the dataset layout and the ``BAMDPStep`` (an online
    belief update, for example).
    """
    num_envs, horizon = bamdp.num_envs, bamdp.trajectory_len
    observation_dim = bamdp.observation_dim
    discrete = isinstance(bamdp.action_space, spaces.Discrete)
    action_dim = stored_action_dim(bamdp.action_space)

    def steps(dim: int) -> np.ndarray:
        return np.zeros((num_envs, horizon, dim), dtype=np.float32)

    batch = MetaEpisodeBatch(
        observations=steps(observation_dim),
        actions=steps(action_dim),
        rewards=steps(1),
        next_observations=steps(observation_dim),
        terminations=steps(1),
        truncations=steps(1),
        successes=steps(1),
        lengths=np.zeros(num_envs, dtype=np.int64),
    )
    observations = bamdp.reset()
    for step in range(horizon):
        actions = policy(observations)
        result = bamdp.step(actions)
        active = result.active
        stored_actions = one_hot(actions, action_dim) if discrete else actions
        if on_step is not None:
            on_step(stored_actions, result)
        batch.observations[:, step] = observations
        batch.actions[:, step] = stored_actions
        batch.rewards[:, step, 0] = result.rewards
        batch.next_observations[:, step] = result.next_observations
        batch.terminations[:, step, 0] = result.terminations
        batch.truncations[:, step, 0] = result.truncations
        batch.successes[:, step, 0] = result.successes
        for key, attribute in (("sparse_reward", "sparse_rewards"),
                               ("belief_reward", "belief_rewards")):
            if key in result.infos:
                if getattr(batch, attribute) is None:
                    setattr(batch, attribute, steps(1))
                getattr(batch, attribute)[:, step, 0] = result.infos[key]
        batch.lengths += active
        padding = ~active
        for array in (batch.observations, batch.actions, batch.next_observations):
            array[padding, step] = 0.0
        observations = result.observations
        if result.meta_episode_done.all():
            break
    return batch


class TaskHistories:
    """Every trajectory collected so far in each of K tasks, in collection order.

    Chunks are appended as they are collected and concatenated only when a task's dataset is
    requested (every save interval), so growing the history costs no copies.
    """

    def __init__(self, tasks: np.ndarray, metas: list[dict]) -> None:
        self.tasks = np.asarray(tasks, dtype=np.float64)
        self.metas = metas
        self.chunks: list[list[TaskDataset]] = [[] for _ in range(len(self.tasks))]

    def append(self, batch: MetaEpisodeBatch, member_of_trajectory: np.ndarray,
               training_step: int) -> None:
        """Add the trajectories of ``batch``; trajectory i belongs to task
        ``member_of_trajectory[i]`` and was collected after ``training_step`` updates."""
        for task_index in range(len(self.tasks)):
            rows = member_of_trajectory == task_index
            if not rows.any():
                continue
            self.chunks[task_index].append(TaskDataset(
                observations=batch.observations[rows],
                actions=batch.actions[rows],
                rewards=batch.rewards[rows],
                next_observations=batch.next_observations[rows],
                terminations=batch.terminations[rows],
                truncations=batch.truncations[rows],
                lengths=batch.lengths[rows],
                training_steps=np.full(int(rows.sum()), training_step, dtype=np.int64),
                task=self.tasks[task_index],
                meta=self.metas[task_index],
                sparse_rewards=None if batch.sparse_rewards is None
                else batch.sparse_rewards[rows],
            ))

    def restore(self, task_index: int, dataset: TaskDataset) -> None:
        """Start task ``task_index``'s history from a saved dataset (a resumed run)."""
        self.chunks[task_index] = [dataset]

    def num_trajectories(self, task_index: int) -> int:
        return sum(chunk.num_trajectories for chunk in self.chunks[task_index])

    def dataset(self, task_index: int) -> TaskDataset:
        """The whole history of one task as one dataset."""
        chunks = self.chunks[task_index]
        if not chunks:
            raise ValueError(f"task {task_index} has no trajectories yet")
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged = merged.concatenate(chunk)
        self.chunks[task_index] = [merged]
        return merged
