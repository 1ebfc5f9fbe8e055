"""Slow: the stage-1 agents learn their single task (python -m pytest -m slow)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import train_single_agent
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env, task_from_seed
from utils.config import load_config
from utils.logger import scalar_series
from utils.rollouts import collect_meta_episodes
from utils.stage_configs import DataCollectionConfig

pytestmark = pytest.mark.slow


def random_return(env_type: str, seed: int, episodes: int, options: dict) -> float:
    env = make_batched_env(env_type, 20, options)
    env.set_tasks(np.tile(task_from_seed(env_type, seed), (20, 1)))
    bamdp = BatchedBAMDP(env, episodes)
    rng = np.random.default_rng(0)
    discrete = hasattr(bamdp.action_space, "n")
    batch = collect_meta_episodes(bamdp, lambda observations: (
        rng.integers(0, 5, len(observations)) if discrete
        else rng.uniform(-1, 1, (len(observations), 2))))
    return float(batch.episode_returns(episodes).sum(axis=1).mean())


def final_return(tmp_path, env_type: str, seed: int, **overrides) -> tuple[float, float]:
    config = load_config(DataCollectionConfig, ["--env-type", env_type],
                         config_dir="data_collection_config")
    config = dataclasses.replace(
        config, seed=seed, runs_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"),
        use_tensorboard=False, device="cpu", **overrides)
    run_dir = train_single_agent.main(config)
    _, returns = scalar_series(run_dir / "scalars.csv", "eval/return_sum")
    episodes = 4 if env_type == "gridworld" else 3
    return returns[-1], random_return(env_type, seed, episodes, config.env_options)


def test_dqn_learns_a_fixed_goal_gridworld(tmp_path):
    learned, random = final_return(tmp_path, "gridworld", seed=73, num_iters=25, log_interval=5)
    assert random < 0.0
    assert learned > 35.0  # at most 4 x 15 = 60; reaching the goal in ~6 steps gives ~ 4 x 9.5


def test_sac_learns_a_fixed_goal_point_robot(tmp_path):
    learned, random = final_return(tmp_path, "point_robot", seed=3, num_iters=40,
                                   num_init_rollouts_pool=10, rl_updates_per_iter=100,
                                   log_interval=5)
    assert random < -100.0
    assert learned > -60.0
