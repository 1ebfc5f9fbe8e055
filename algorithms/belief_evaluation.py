"""Figures of a belief-conditioned agent's evaluation, shared by stage 3 and online VariBAD.

The rollout comes from :func:`algorithms.belief_rollouts.evaluate_with_online_belief` (spec
borel.md 5.5) and its scalars from :func:`utils.rollouts.evaluation_scalars`; the figures are the
per-episode trajectories, the rewards predicted along them, and the belief over time.
"""

from __future__ import annotations

import numpy as np
import torch

from algorithms.belief_rollouts import reward_map
from environments.bamdp import BatchedBAMDP
from models.vae import VAE
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
