"""FOCAL's evaluation: deterministic rollouts in held-out tasks, all copies stepped together.

Two protocols, both on a ``BatchedBAMDP`` with one episode of ``max_path_length`` steps per call and
``num_evals`` copies of every evaluated task:

- **Offline context** (FOCAL's, spec focal.md 4.2): before each of the P = ceil(num_steps_per_eval
  / max_path_length) trajectories, ``max_path_length`` transitions drawn from the task's *offline*
  data are appended to its context, z = mean q_phi(context so far), and the policy tanh(mu(s, z))
  is rolled out. Trajectory k is thus conditioned on k * max_path_length offline transitions; the
  headline number (``AverageReturn_all_test_tasks``) is the last trajectory's return averaged over
  tasks and repeats.
- **Online context** (BOReL's protocol): the first episode is played with the prior z = 0 (no
  context yet); each later episode with z from the policy's own earlier transitions in the task.

Returns sum the env's sparse reward (``infos['sparse_reward']``) when ``sparse_returns`` is on and
the env reports one (sparse-point-robot), else the reward. Env streams and context draws use fixed
seeds, so successive evaluations differ only through the networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from algorithms.focal import FOCAL
from algorithms.focal_data import OfflineTaskData, context_transitions
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from utils.embeddings import embedding_esr, embedding_rms
from utils.errors import UserError
from utils.rollouts import MetaEpisodeBatch, StepObserver, collect_meta_episodes

ENCODING_CHUNK_TRANSITIONS = 65_536


@dataclass
class EvaluationResult:
    """Returns averaged over repeats: ``test_returns`` (num_test_tasks, P) per offline-context
    trajectory, ``train_returns`` likewise (None if not evaluated), ``online_returns``
    (num_test_tasks, num_online_episodes); ``latents`` (num_tasks, C, L) for C contexts of every
    task of the data; embedding ``rms`` and ``esr`` over the training tasks; and the last
    offline-context rollout (for a trajectory figure)."""

    test_returns: np.ndarray
    train_returns: np.ndarray | None
    online_returns: np.ndarray
    latents: np.ndarray
    rms: float
    esr: float
    last_rollout: MetaEpisodeBatch


def return_columns(test_returns: np.ndarray, train_returns: np.ndarray | None,
                   online_returns: np.ndarray) -> dict[str, float]:
    """The return columns of FOCAL's progress.csv from per-task returns averaged over repeats:
    offline-context ``test_returns`` (num_test_tasks, P) and ``train_returns`` (or None), and
    online-context ``online_returns`` (num_test_tasks, E). The headline
    ``AverageReturn_all_test_tasks`` is the last trajectory's return averaged over tasks."""
    columns = {
        "AverageReturn_all_test_tasks": float(test_returns[:, -1].mean()),
        "AverageReturn_first_trajectory_all_test_tasks": float(test_returns[:, 0].mean()),
    }
    if test_returns.shape[0] <= 2:
        for index, value in enumerate(test_returns[:, -1]):
            columns[f"AverageReturn_all_test_tasks{index}"] = float(value)
    if train_returns is not None:
        columns["AverageReturn_all_train_tasks"] = float(train_returns[:, -1].mean())
    online = online_returns.mean(axis=0)
    for episode, value in enumerate(online, start=1):
        columns[f"AverageReturn_online_context_episode{episode}_all_test_tasks"] = float(value)
    columns["AverageReturn_online_context_sum_all_test_tasks"] = float(online.sum())
    return columns

def offline_task_embeddings(focal: FOCAL, data: OfflineTaskData, contexts_per_task: int,
                            context_size: int, seed: int) -> np.ndarray:
    """z of ``contexts_per_task`` offline contexts of ``context_size`` transitions of every task
    of ``data``, drawn with a generator seeded by ``seed + 1``: (num_tasks, C, L)."""
    generator = torch.Generator(device=data.device)
    generator.manual_seed(seed + 1)
    task_ids = torch.arange(data.num_tasks, device=data.device).repeat_interleave(
        contexts_per_task)
    rows_per_chunk = max(1, ENCODING_CHUNK_TRANSITIONS // context_size)
    latents = [focal.task_latents(data.sample_context(chunk, context_size, generator))
               for chunk in task_ids.split(rows_per_chunk)]
    return torch.cat(latents).view(data.num_tasks, contexts_per_task, -1).cpu().numpy()


def copy_seeds(base_seed: int, count: int, stream: int) -> list[int]:
    """Fixed, distinct env-stream seeds for ``count`` copies."""
    return [int(np.random.SeedSequence([base_seed, stream, copy]).generate_state(1)[0])
            for copy in range(count)]


class FocalEvaluator:
    """Offline- and online-context evaluation of a :class:`FOCAL` agent on tasks of ``data``."""

    def __init__(self, env_type: str, env_options: dict[str, Any], data: OfflineTaskData,
                 num_train_tasks: int, test_task_ids: list[int], train_task_ids: list[int],
                 num_evals: int, num_steps_per_eval: int, max_path_length: int,
                 num_online_episodes: int, sparse_returns: bool, seed: int) -> None:
        if num_evals < 1 or max_path_length < 1 or num_steps_per_eval < 1:
            raise UserError("--num-evals, --max-path-length and --num-steps-per-eval must be >= 1")
        self.data, self.seed, self.num_train_tasks = data, seed, num_train_tasks
        self.test_task_ids, self.train_task_ids = list(test_task_ids), list(train_task_ids)
        self.num_evals, self.sparse_returns = num_evals, sparse_returns
        self.max_path_length = max_path_length
        self.num_trajectories = math.ceil(num_steps_per_eval / max_path_length)
        self.num_online_episodes = num_online_episodes
        evaluated = self.test_task_ids + self.train_task_ids
        self.offline_copies = np.repeat(np.array(evaluated, dtype=np.int64), num_evals)
        self.online_copies = np.repeat(np.array(self.test_task_ids, dtype=np.int64), num_evals)
        self.offline_seeds = copy_seeds(seed, len(self.offline_copies), stream=0)
        self.online_seeds = copy_seeds(seed, len(self.online_copies), stream=1)
        self.offline_env = self._make_env(env_type, env_options, self.offline_copies)
        self.online_env = self._make_env(env_type, env_options, self.online_copies)

    @classmethod
    def from_config(cls, config: Any, data: OfflineTaskData,
                    test_task_ids: list[int] | None = None,
                    train_task_ids: list[int] | None = None,
                    num_episodes: int | None = None) -> FocalEvaluator:
        """The evaluator of a FOCAL run with config ``config`` (a ``FocalConfig``) on ``data``
        (its training tasks first). By default it evaluates what the run evaluates: the
        ``num_eval_tasks`` held-out tasks and, with ``evaluate_train_tasks``, as many training
        tasks. ``num_episodes`` replaces the number of offline-context trajectories P and of
        online-context episodes."""
        num_train, num_test = config.num_train_tasks, config.num_eval_tasks
        if test_task_ids is None:
            test_task_ids = list(range(num_train, num_train + num_test))
        if train_task_ids is None:
            train_task_ids = (list(range(min(num_test, num_train)))
                              if config.evaluate_train_tasks else [])
        num_steps_per_eval, num_online_episodes = (config.num_steps_per_eval,
                                                   config.num_online_episodes)
        if num_episodes is not None:
            num_steps_per_eval = num_episodes * config.max_path_length
            num_online_episodes = num_episodes
        return cls(
            config.env_type, config.environment_options(evaluation=True), data, num_train,
            test_task_ids=test_task_ids, train_task_ids=train_task_ids,
            num_evals=config.num_evals, num_steps_per_eval=num_steps_per_eval,
            max_path_length=config.max_path_length, num_online_episodes=num_online_episodes,
            sparse_returns=config.sparse_rewards, seed=config.seed)

    def _make_env(self, env_type: str, env_options: dict[str, Any], copies: np.ndarray
                  ) -> BatchedBAMDP | None:
        if copies.size == 0:
            return None
        env = BatchedBAMDP(make_batched_env(env_type, int(copies.size), env_options),
                           episodes_per_task=1, max_episode_steps=self.max_path_length)
        observation_dim, action_shape = env.observation_dim, env.action_space.shape
        if (observation_dim, action_shape) != (self.data.observation_dim,
                                               (self.data.action_dim,)):
            raise UserError(
                f"env-type {env_type!r} has observations of size {observation_dim} and actions "
                f"{action_shape}, but the dataset has {self.data.observation_dim} and "
                f"({self.data.action_dim},): was it collected on another env-type or with "
                "episodes-per-task > 1?")
        env.set_tasks(self.data.tasks[copies])
        return env

    def _rollout(self, env: BatchedBAMDP, focal: FOCAL, latents: torch.Tensor,
                 on_step: StepObserver | None = None) -> MetaEpisodeBatch:
        def policy(observations: np.ndarray) -> np.ndarray:
            states = torch.as_tensor(observations, dtype=torch.float32, device=focal.device)
            return focal.act(states, latents, deterministic=True).cpu().numpy()

        return collect_meta_episodes(env, policy, on_step)

    def episode_returns(self, batch: MetaEpisodeBatch) -> np.ndarray:
        """Return of every copy's episode (K,): sparse rewards where asked and reported."""
        rewards = batch.rewards
        if self.sparse_returns and batch.sparse_rewards is not None:
            rewards = batch.sparse_rewards
        return (rewards[..., 0] * batch.valid_mask()).sum(axis=1)

    def stacked_returns(self, rollouts: list[MetaEpisodeBatch]) -> np.ndarray:
        """Returns (copies, len(rollouts)) in float64, one column per rollout."""
        return np.stack([self.episode_returns(batch) for batch in rollouts], axis=1
                        ).astype(np.float64)

    def per_task(self, returns: np.ndarray) -> np.ndarray:
        """Average the repeats: (num_tasks * num_evals, ...) -> (num_tasks, ...)."""
        return returns.reshape(-1, self.num_evals, *returns.shape[1:]).mean(axis=1)

    def offline_context_rollouts(self, focal: FOCAL, on_step: StepObserver | None = None
                                 ) -> list[MetaEpisodeBatch]:
        """The P rollouts of the offline-context protocol, one episode per copy each; copies are
        ``offline_copies`` (every evaluated task, ``num_evals`` repeats)."""
        env = self.offline_env
        env.seed(self.offline_seeds)
        generator = torch.Generator(device=self.data.device)
        generator.manual_seed(self.seed)
        task_ids = torch.as_tensor(self.offline_copies, device=self.data.device)
        contexts: list[torch.Tensor] = []
        rollouts = []
        for _ in range(self.num_trajectories):
            contexts.append(self.data.sample_context(task_ids, self.max_path_length, generator))
            latents = focal.task_latents(torch.cat(contexts, dim=1))
            rollouts.append(self._rollout(env, focal, latents, on_step))
        return rollouts

    def offline_context_returns(self, focal: FOCAL) -> tuple[np.ndarray, MetaEpisodeBatch]:
        """Returns (copies, P) of the offline-context protocol, and the last rollout."""
        rollouts = self.offline_context_rollouts(focal)
        return self.stacked_returns(rollouts), rollouts[-1]

    def online_context_rollouts(self, focal: FOCAL, on_step: StepObserver | None = None
                                ) -> list[MetaEpisodeBatch]:
        """The ``num_online_episodes`` rollouts of the online-context protocol (copies are
        ``online_copies``): episode 1 with z = 0, then z from the policy's own transitions of the
        earlier episodes."""
        env = self.online_env
        env.seed(self.online_seeds)
        device = self.data.device
        latents = torch.zeros(len(self.online_copies), focal.settings.latent_size, device=device)
        contexts: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        rollouts = []
        for _ in range(self.num_online_episodes):
            batch = self._rollout(env, focal, latents, on_step)
            rollouts.append(batch)
            rewards = batch.rewards
            if self.data.sparse_rewards and batch.sparse_rewards is not None:
                rewards = batch.sparse_rewards
            arrays = [torch.as_tensor(values, device=device) for values in (
                batch.observations, batch.actions, rewards, batch.next_observations)]
            contexts.append(context_transitions(*arrays, self.data.use_next_obs_in_context))
            masks.append(torch.as_tensor(batch.valid_mask(), device=device))
            latents = focal.task_latents(torch.cat(contexts, dim=1), torch.cat(masks, dim=1))
        return rollouts

    def online_context_returns(self, focal: FOCAL) -> np.ndarray:
        """Returns (copies, num_online_episodes) of the online-context protocol."""
        return self.stacked_returns(self.online_context_rollouts(focal))

    def task_embeddings(self, focal: FOCAL, contexts_per_task: int, context_size: int
                        ) -> np.ndarray:
        """z of ``contexts_per_task`` fresh offline contexts of every task: (num_tasks, C, L)."""
        return offline_task_embeddings(focal, self.data, contexts_per_task, context_size,
                                       self.seed)

    def evaluate(self, focal: FOCAL, contexts_per_task: int, context_size: int
                 ) -> EvaluationResult:
        """Both protocols and the embedding statistics."""
        offline, last_rollout = self.offline_context_returns(focal)
        per_task = self.per_task(offline)
        num_test = len(self.test_task_ids)
        online = (self.per_task(self.online_context_returns(focal)) if self.online_env
                  else np.zeros((0, self.num_online_episodes)))
        latents = self.task_embeddings(focal, contexts_per_task, context_size)
        train_means = latents[: self.num_train_tasks].mean(axis=1)
        return EvaluationResult(
            test_returns=per_task[:num_test],
            train_returns=per_task[num_test:] if self.train_task_ids else None,
            online_returns=online,
            latents=latents,
            rms=embedding_rms(train_means),
            esr=embedding_esr(train_means),
            last_rollout=last_rollout,
        )

    def close(self) -> None:
        for env in (self.offline_env, self.online_env):
            if env is not None:
                env.close()
