"""Slow: online off-policy VariBAD learns on the gridworld (python -m pytest -m slow).

The gridworld config with a small-budget recipe: 250 iterations of 100 DQN updates on meta-batches
of 8 tasks x 128 transitions at learning rate 1e-3 (epsilon annealed over 100 iterations), 20 VAE
updates per iteration at learning rate 3e-3 with KL weight 0.1, stored beliefs recomputed after
every iteration, and the environment's reward r. On the 16 training goals the summed 4-episode
evaluation return of the last three evaluations must beat that of the first two by 10, and
episode 2 must beat episode 1 by 1: the agent goes straight back to the goal it found.

Measured on a 2-core CPU (about 6 minutes): -2.2 and -2.4 at iterations 25 and 50, 37.0, 37.7 and
36.7 at iterations 200-250 (episodes 5.1 / 9.6 / 11.1 / 11.3); seeds 1 and 2 give 38.2 and 39.7 at
iteration 250 with the same margins. Ablations of 300 iterations (10 VAE updates each): the paper's
VAE settings (lr 3e-4, KL weight 1) with collection-time beliefs ended near 6 with episode 2 below
episode 1 (the VAE did not yet identify a goal it had seen); VAE lr 1e-3 and KL weight 0.1 with
collection-time beliefs stayed below 0; the same with recomputed beliefs reached about 9.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import online_training
from utils.config import load_config
from utils.logger import read_scalars
from utils.stage_configs import OnlineConfig

pytestmark = pytest.mark.slow
ITERATIONS = 250


def test_online_gridworld_return_rises_and_episode_two_beats_episode_one(tmp_path):
    config = load_config(OnlineConfig, ["--env-type", "gridworld"], config_dir="online_config")
    run_dir = online_training.main(dataclasses.replace(
        config, num_iters=ITERATIONS, rl_updates_per_iter=100, meta_batch=8, batch_size=128,
        critic_lr=1e-3, epsilon_decay_iters=100, vae_updates_per_iter=20, vae_lr=3e-3,
        kl_weight=0.1, recompute_beliefs=True, belief_rewards=False,
        oracle_belief_rewards=False, log_interval=25, save_interval=ITERATIONS,
        runs_dir=str(tmp_path / "runs"), use_tensorboard=False, device="cpu"))

    rows = read_scalars(run_dir / "scalars.csv")
    steps = sorted({step for step, tag, _ in rows if tag == "eval/train_return_sum"})

    def mean(tag: str, chosen: list[int]) -> float:
        return float(np.mean([value for step, name, value in rows
                              if name == tag and step in chosen]))

    first, last = steps[:2], steps[-3:]  # evaluations at iterations 25, 50 and 200-250
    start, end = mean("eval/train_return_sum", first), mean("eval/train_return_sum", last)
    episodes = [mean(f"eval/train_return_episode_{k}", last) for k in (1, 2)]
    assert end > start + 10.0, (start, end)
    assert episodes[1] > episodes[0] + 1.0, episodes
