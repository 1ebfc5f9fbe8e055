"""FOCAL evaluated with BOReL's protocol on BAMDP env-types (k inner episodes per task).

Every evaluation task plays ONE meta-episode of k inner episodes (each of the env-type's own
length H) in a ``BatchedBAMDP`` with ``episodes_per_task = k``, with the deterministic policy, so
the returns compare directly with stage 3's (spec borel.md 5.5). Two ways to get the task
embedding z:

- **Online context**: z = 0 (the empty context: the centre of the embedding box) during inner
  episode 1; whenever an inner episode ends, z is recomputed from every transition of this
  meta-episode so far, z = mean_n q_phi(s_n, a_n, r_n[, s'_n]), and kept for the next episode.
- **Offline context** (FOCAL's test-time context, spec focal.md 4.2): z from
  ``offline_context_size`` transitions drawn from the task's offline data, fixed for the whole
  meta-episode.

A context transition carries the observation with its end-of-episode flag, the action as stored
(one-hot for Discrete actions), the reward (the env's sparse reward where the run feeds sparse
context rewards and the env reports one) and, if the run uses it, s'. Returns are sums of the
env's reward per inner episode (as stage 3 reports them); success means the goal was reached at
some step of the meta-episode. Env streams and the offline context draw use fixed seeds, so
successive evaluations differ only through the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from algorithms.focal import FocalBase
from algorithms.focal_data import OfflineTaskData, context_transitions
from algorithms.focal_evaluation import copy_seeds, offline_task_embeddings
from environments.bamdp import BAMDPStep, BatchedBAMDP
from environments.registry import make_batched_env
from utils.embeddings import embedding_esr, embedding_rms
from utils.errors import UserError
from utils.rollouts import (
    MetaEpisodeBatch,
    StepObserver,
    collect_meta_episodes,
    stored_action_dim,
)

ENV_STREAM = 2


def return_columns(online_returns: np.ndarray, offline_returns: np.ndarray
                   ) -> dict[str, float]:
    """progress.csv's return columns for BOReL's env-types: the mean over tasks of each inner
    episode's return and of their sum, for the online and the offline context; returns are
    (num_tasks, k)."""
    columns: dict[str, float] = {}
    for protocol, returns in (("online", online_returns), ("offline", offline_returns)):
        for episode, value in enumerate(returns.mean(axis=0), start=1):
            columns[f"AverageReturn_{protocol}_context_episode{episode}_all_test_tasks"] = float(
                value)
        columns[f"AverageReturn_{protocol}_context_sum_all_test_tasks"] = float(
            returns.sum(axis=1).mean())
    return columns


@dataclass
class MetaEpisodeEvaluation:
    """One evaluation: per-task per-episode returns (num_test_tasks, k) and successes
    (num_test_tasks,) of both protocols, the embeddings ``latents`` (num_tasks, C, L) of C offline
    contexts of every task of the data, their ``rms`` and ``esr`` over the training tasks, and
    both rollouts (for trajectory figures)."""

    online_returns: np.ndarray
    online_successes: np.ndarray
    offline_returns: np.ndarray
    offline_successes: np.ndarray
    latents: np.ndarray
    rms: float
    esr: float
    online_rollout: MetaEpisodeBatch
    offline_rollout: MetaEpisodeBatch


class MetaEpisodeEvaluator:
    """Both protocols on the held-out tasks ``test_task_ids`` (indices into ``data``), all tasks
    stepped together in one ``BatchedBAMDP``. ``offline_context_size`` None means one
    meta-episode's worth of transitions (k x H). The data's recorded k and H must match the
    evaluation's."""

    def __init__(self, env_type: str, env_options: dict[str, Any], data: OfflineTaskData,
                 num_train_tasks: int, test_task_ids: list[int], episodes_per_task: int,
                 offline_context_size: int | None, seed: int) -> None:
        if offline_context_size is not None and offline_context_size < 1:
            raise UserError(f"--offline-context-size must be >= 1, got {offline_context_size}")
        self.data, self.seed, self.num_train_tasks = data, seed, num_train_tasks
        self.test_task_ids = list(test_task_ids)
        self.env = BatchedBAMDP(make_batched_env(env_type, len(self.test_task_ids), env_options),
                                episodes_per_task)
        self.offline_context_size = offline_context_size or self.env.trajectory_len
        observation_dim = self.env.observation_dim
        action_dim = stored_action_dim(self.env.action_space)
        if (observation_dim, action_dim) != (data.observation_dim, data.action_dim):
            self.env.close()
            raise UserError(
                f"env-type {env_type!r} with {episodes_per_task} episodes per task has "
                f"observations of size {observation_dim} and actions of width {action_dim}, but "
                f"the dataset has {data.observation_dim} and {data.action_dim}: was it collected "
                "on another env-type or with another --episodes-per-task?")
        for source, meta in zip(data.sources, data.metas, strict=True):
            stored = (meta.get("episodes_per_task"), meta.get("max_episode_steps"))
            expected = (episodes_per_task, self.env.max_episode_steps)
            if all(value is not None for value in stored) and tuple(map(int, stored)) != expected:
                self.env.close()
                raise UserError(
                    f"dataset {source} holds meta-episodes of {stored[0]} x {stored[1]} steps, "
                    f"but the evaluation plays {expected[0]} x {expected[1]} (set "
                    "--episodes-per-task and --env-options as for the collection)")
        self.env.set_tasks(data.tasks[self.test_task_ids])
        self.env_seeds = copy_seeds(seed, len(self.test_task_ids), stream=ENV_STREAM)

    @property
    def action_space(self) -> spaces.Space:
        return self.env.action_space

    @property
    def episodes_per_task(self) -> int:
        return self.env.episodes_per_task

    def _act(self, focal: FocalBase, observations: np.ndarray, latents: torch.Tensor
             ) -> np.ndarray:
        states = torch.as_tensor(observations, dtype=torch.float32, device=focal.device)
        return focal.act(states, latents, deterministic=True).cpu().numpy()

    def online_context_rollout(self, focal: FocalBase, observer: StepObserver | None = None
                               ) -> MetaEpisodeBatch:
        """One meta-episode per task: z = 0 in inner episode 1, then z from the meta-episode's
        own transitions so far, recomputed at every inner-episode boundary. ``observer`` (such as
        a frame recorder) is called after every step."""
        env, device = self.env, self.data.device
        env.seed(self.env_seeds)
        num_copies, horizon = env.num_envs, env.trajectory_len
        contexts = torch.zeros(num_copies, horizon, self.data.transition_dim, device=device)
        valid = torch.zeros(num_copies, horizon, dtype=torch.bool, device=device)
        latents = torch.zeros(num_copies, focal.settings.latent_size, device=device)
        acted_on: list[np.ndarray] = []

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=torch.float32, device=device)

        def policy(observations: np.ndarray) -> np.ndarray:
            acted_on.append(observations)
            return self._act(focal, observations, latents)

        def on_step(stored_actions: np.ndarray, result: BAMDPStep) -> None:
            step = len(acted_on) - 1
            rewards = result.rewards
            if self.data.sparse_rewards and "sparse_reward" in result.infos:
                rewards = result.infos["sparse_reward"]
            contexts[:, step] = context_transitions(
                tensor(acted_on[step]), tensor(stored_actions), tensor(rewards)[:, None],
                tensor(result.next_observations), self.data.use_next_obs_in_context)
            valid[:, step] = torch.as_tensor(result.active, device=device)
            boundary = result.truncations & result.active & ~result.meta_episode_done
            if boundary.any():
                rows = torch.as_tensor(boundary, device=device)[:, None]
                updated = focal.task_latents(contexts[:, : step + 1], valid[:, : step + 1])
                latents.copy_(torch.where(rows, updated, latents))  # no boolean indexing: no sync
            if observer is not None:
                observer(stored_actions, result)

        return collect_meta_episodes(env, policy, on_step)

    def offline_context_rollout(self, focal: FocalBase, observer: StepObserver | None = None
                                ) -> MetaEpisodeBatch:
        """One meta-episode per task with z from ``offline_context_size`` offline transitions of
        the task, fixed throughout; ``observer`` is called after every step."""
        generator = torch.Generator(device=self.data.device)
        generator.manual_seed(self.seed)
        task_ids = torch.as_tensor(self.test_task_ids, device=self.data.device)
        latents = focal.task_latents(
            self.data.sample_context(task_ids, self.offline_context_size, generator))
        self.env.seed(self.env_seeds)
        return collect_meta_episodes(self.env, lambda observations: self._act(
            focal, observations, latents), observer)

    def evaluate(self, focal: FocalBase, contexts_per_task: int, context_size: int
                 ) -> MetaEpisodeEvaluation:
        """Both protocols and the embedding statistics."""
        online = self.online_context_rollout(focal)
        offline = self.offline_context_rollout(focal)
        latents = offline_task_embeddings(focal, self.data, contexts_per_task, context_size,
                                          self.seed)
        train_means = latents[: self.num_train_tasks].mean(axis=1)
        k = self.episodes_per_task
        return MetaEpisodeEvaluation(
            online_returns=online.episode_returns(k),
            online_successes=online.successes[..., 0].any(axis=1),
            offline_returns=offline.episode_returns(k),
            offline_successes=offline.successes[..., 0].any(axis=1),
            latents=latents,
            rms=embedding_rms(train_means),
            esr=embedding_esr(train_means),
            online_rollout=online,
            offline_rollout=offline,
        )

    def close(self) -> None:
        self.env.close()
