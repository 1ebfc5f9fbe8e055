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

import numpy as np
from gymnasium import spaces

Policy = Callable[[np.ndarray], np.ndarray]


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

    def valid_mask(self) -> np.ndarray:
        return np.arange(self.rewards.shape[1])[None, :] < self.lengths[:, None]


def one_hot(indices: np.ndarray, size: int) -> np.ndarray:
    encoded = np.zeros((*np.shape(indices), size), dtype=np.float32)
    np.put_along_axis(encoded, np.asarray(indices, dtype=np.int64)[..., None], 1.0, axis=-1)
    return encoded


def stored_action_dim(action_space: spaces.Space) -> int:
    """Width of an action in datasets: the Box dimension, or the number of discrete actions."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    return int(action_space.shape[0])


def collect_meta_episodes(bamdp, policy: Policy) -> MetaEpisodeBatch:
    """Play one meta-episode in every copy of ``bamdp`` (a ``BatchedBAMDP``) with ``policy``.

    ``policy(observations)`` receives (K, obs_dim) float32 and returns (K, action_dim) actions in
    [-1, 1] (Box) or (K,) integer actions (Discrete).
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
        batch.observations[:, step] = observations
        batch.actions[:, step] = one_hot(actions, action_dim) if discrete else actions
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
