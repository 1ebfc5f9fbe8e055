"""Evaluation of a belief-conditioned agent, shared by offline (stage 3) and online VariBAD.

Protocol (spec borel.md 5.5): on each evaluation task one meta-episode of k inner episodes with
the deterministic policy (tanh of the mean, or greedy DQN), acting on [s, mu, log sigma^2] with
the belief updated after every step from the prior and never reset inside the meta-episode.
Copy i's random stream is seeded with ``seeds[i] + 1`` before every evaluation, so evaluations
are repeatable. Reported: the mean over tasks of each inner episode's return, of their sum, and
the fraction of tasks where the goal was reached (``eval/return_episode_k``, ``eval/return_sum``,
``eval/success_rate``), plus figures: per-episode trajectories, rewards predicted along them,
and the belief over time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from algorithms.agents import Agent, act
from algorithms.belief_rollouts import OnlineBelief, collect_with_belief, reward_map
from environments.bamdp import BatchedBAMDP
from models.vae import VAE
from utils.errors import UserError
from utils.logger import Logger
from utils.plotting import (
    belief_map_figure,
    grid_belief_figure,
    reward_prediction_figure,
    trajectory_figure,
)
from utils.rollouts import MetaEpisodeBatch

FIGURE_TASKS = 4
MAP_EXTENT = (-2.0, 2.0, -1.0, 2.0)
CANDIDATES_PER_TASK = 1000


def evaluation_seeds(train_seeds: list[int], count: int, seed: int,
                     task_of_seed: Callable[[int], np.ndarray] | None = None,
                     train_tasks: np.ndarray | None = None) -> list[int]:
    """Seeds of the evaluation tasks: 10^6 (seed + 1) + i, skipping any training seed.

    With ``task_of_seed`` (and the training tasks), a candidate is also skipped when its task
    equals a training task or an already chosen evaluation task, so the held-out tasks are new
    even in a finite task family (the gridworld's 21 goals)."""
    seeds, candidate = [], 1_000_000 * (seed + 1)
    seen = [] if train_tasks is None else [np.asarray(task) for task in train_tasks]
    last = candidate + CANDIDATES_PER_TASK * max(count, 1)
    while len(seeds) < count:
        if candidate >= last:
            raise UserError(f"cannot find {count} evaluation tasks that differ from the "
                            f"{len(train_seeds)} training tasks and from each other; the task "
                            "family is too small (lower --num-train-tasks or --num-eval-tasks)")
        if candidate not in train_seeds:
            if task_of_seed is None:
                seeds.append(candidate)
            else:
                task = task_of_seed(candidate)
                if not any(np.array_equal(task, other) for other in seen):
                    seeds.append(candidate)
                    seen.append(task)
        candidate += 1
    return seeds


def evaluate_with_belief(agent: Agent, belief: OnlineBelief, bamdp: BatchedBAMDP,
                         seeds: list[int]) -> tuple[MetaEpisodeBatch, np.ndarray]:
    """One deterministic meta-episode in every copy of ``bamdp`` (copy i seeded with
    ``seeds[i] + 1``); returns the rollout and the beliefs (K, T + 1, 2L), the prior first."""
    bamdp.seed([seed + 1 for seed in seeds])
    return collect_with_belief(bamdp, belief, lambda hyper_observations: act(
        agent, hyper_observations, 1, deterministic=True))


def evaluation_scalars(rollout: MetaEpisodeBatch, episodes_per_task: int,
                       prefix: str = "eval/") -> dict[str, float]:
    """``<prefix>return_episode_k`` (k = 1..episodes), ``<prefix>return_sum`` and
    ``<prefix>success_rate``, each averaged over the rollout's tasks."""
    returns = rollout.episode_returns(episodes_per_task)
    scalars = {f"{prefix}return_episode_{episode + 1}": float(returns[:, episode].mean())
               for episode in range(episodes_per_task)}
    scalars[f"{prefix}return_sum"] = float(returns.sum(axis=1).mean())
    scalars[f"{prefix}success_rate"] = float(rollout.successes[..., 0].any(axis=1).mean())
    return scalars


@torch.no_grad()
def draw_figures(logger: Logger, evaluation: BatchedBAMDP, vae: VAE, rollout: MetaEpisodeBatch,
                 beliefs: np.ndarray, tasks: np.ndarray, seeds: list[int], multihead: bool,
                 device: torch.device, step: int) -> None:
    """Per-episode trajectories of the first evaluation tasks, the rewards predicted along them
    from the belief before each step, and the belief over time (gridworld: per-cell reward
    beliefs; point robots and ants: expected reward over the plane). Rows 0.. of ``rollout``
    and ``beliefs`` are the tasks ``tasks`` / ``seeds``."""
    env = evaluation.env
    count = min(FIGURE_TASKS, len(seeds))
    lengths = rollout.lengths
    planar = env.trajectory_xy(rollout.observations[0]) is not None
    if planar:
        for index in range(count):
            logger.figure(f"eval/trajectory_task_{index}", trajectory_figure(
                env, tasks[index], rollout.observations[index], rollout.next_observations[index],
                rollout.truncations[index], int(lengths[index]), title=f"seed {seeds[index]}"),
                step)
    latent_dim = vae.latent_dim
    means = torch.as_tensor(beliefs[:count, :-1, :latent_dim], device=device)
    batch = {name: torch.as_tensor(getattr(rollout, name)[:count], device=device)
             for name in ("observations", "actions", "next_observations")}
    cells = (torch.as_tensor(env.cell_index(rollout.next_observations[:count]), device=device)
             if multihead else None)
    predictions = vae.reward_decoder.mean_reward(vae.reward_decoder.aligned(
        means, batch["observations"], batch["actions"], batch["next_observations"], cells))
    true = [rollout.rewards[index, : lengths[index], 0] for index in range(count)]
    predicted = [predictions[index, : lengths[index]].cpu().numpy() for index in range(count)]
    logger.figure("eval/reward_predictions", reward_prediction_figure(
        true, predicted, [f"seed {seed}" for seed in seeds[:count]]), step)
    length = int(lengths[0])
    moments = sorted({int(moment) for moment in np.linspace(0, length, 6)})
    positions = np.concatenate([rollout.observations[0, :1], rollout.next_observations[0]])
    if multihead:
        probabilities = vae.reward_decoder.cell_probabilities(torch.as_tensor(
            beliefs[0, moments, :latent_dim], device=device)).cpu().numpy()
        logger.figure("eval/reward_belief_task_0", grid_belief_figure(
            probabilities, positions[moments], tasks[0], moments, env.num_cells), step)
    elif planar and "next_state" in vae.reward_decoder.inputs:
        xs, ys = np.meshgrid(np.arange(MAP_EXTENT[0], MAP_EXTENT[1], 0.1),
                             np.arange(MAP_EXTENT[2], MAP_EXTENT[3], 0.1))
        points = np.stack([xs.ravel(), ys.ravel()], axis=1)
        maps = np.stack([reward_map(vae, torch.as_tensor(beliefs[0, moment, :latent_dim],
                                                         device=device), points).reshape(xs.shape)
                         for moment in moments])
        logger.figure("eval/belief_map_task_0", belief_map_figure(
            env, tasks[0], maps, MAP_EXTENT, env.trajectory_xy(positions), moments), step)
