"""Slow: BOReL on the gridworld at a small budget is Bayes-adaptive (python -m pytest -m slow).

Stages 1 -> 2 -> 3 on all 21 goals at the budgets of ``reproduce.py --preset quick``; on the
evaluation meta-episodes BOReL's summed 4-episode return must beat a random policy and the stage-1
single-task agents, and episode 2 (and the later ones) must beat episode 1: it uses what the
earlier episodes revealed.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import train_agent_offline
import train_single_agent
import train_vae_offline
from algorithms.agents import act, load_collection_agents
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from utils.config import apply_mapping, load_config
from utils.logger import read_scalars
from utils.presets import QUICK_PRESETS
from utils.rollouts import collect_meta_episodes
from utils.runs import RunDirectory
from utils.stage_configs import DataCollectionConfig, OfflineConfig, VAEConfig

pytestmark = pytest.mark.slow
EVALUATIONS_AVERAGED = 4


def summed_returns(eval_tasks: np.ndarray, policy, copies_per_task: int = 1) -> np.ndarray:
    """Per-episode returns (4,) averaged over the evaluation tasks, for a policy of raw
    observations (K, 3) -> integer actions."""
    env = make_batched_env("gridworld", len(eval_tasks) * copies_per_task)
    env.set_tasks(np.tile(eval_tasks, (copies_per_task, 1)))
    bamdp = BatchedBAMDP(env, 4)
    return collect_meta_episodes(bamdp, policy).episode_returns(4).mean(axis=0)


def test_gridworld_borel_beats_random_and_single_task_agents_and_adapts(tmp_path):
    common = {"runs_dir": str(tmp_path / "runs"), "data_dir": str(tmp_path / "data"),
              "use_tensorboard": False, "device": "cpu"}
    preset = QUICK_PRESETS["gridworld"]  # the budgets of reproduce.py --preset quick
    collection = load_config(DataCollectionConfig, ["--env-type", "gridworld"],
                             config_dir="data_collection_config")
    collection = apply_mapping(collection, preset.collection, "quick preset")
    collection_run = train_single_agent.main(dataclasses.replace(
        collection, seeds=preset.task_seeds, **common))
    vae = load_config(VAEConfig, ["--env-type", "gridworld"], config_dir="vae_config")
    train_vae_offline.main(dataclasses.replace(apply_mapping(vae, preset.vae, "quick preset"),
                                               **common))
    offline = load_config(OfflineConfig, ["--env-type", "gridworld"],
                          config_dir="offline_config")
    run_dir = train_agent_offline.main(dataclasses.replace(
        apply_mapping(offline, preset.offline, "quick preset"), **common))

    rows = read_scalars(run_dir / "scalars.csv")
    steps = sorted({step for step, tag, _ in rows if tag == "eval/return_sum"})
    last = set(steps[-EVALUATIONS_AVERAGED:])
    borel = np.array([np.mean([value for step, tag, value in rows
                               if tag == f"eval/return_episode_{episode}" and step in last])
                      for episode in range(1, 5)])

    eval_tasks = np.array(json.loads((run_dir / "tasks.json").read_text())["eval_tasks"])
    rng = np.random.default_rng(0)
    random = summed_returns(eval_tasks, lambda observations: rng.integers(0, 5,
                                                                         len(observations)))
    agents, seeds, _ = load_collection_agents(RunDirectory(collection_run), torch.device("cpu"))
    # every stage-1 agent (each trained on one goal) plays every evaluation task
    single_task = summed_returns(
        np.tile(eval_tasks, (len(seeds), 1)),
        lambda observations: act(agents, observations, len(seeds), deterministic=True))

    assert borel.sum() > random.sum() + 5.0, (borel, random)
    assert borel.sum() > single_task.sum() + 5.0, (borel, single_task)
    assert borel[1] > borel[0] + 1.0, borel  # episode 2 uses what episode 1 revealed
    assert borel[2:].mean() > borel[0] + 1.0, borel
