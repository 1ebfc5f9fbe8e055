"""Slow: FOCAL on stage-1 sparse-point-robot data separates the tasks and beats offline SAC without
a task embedding trained on the same data (python -m pytest -m slow tests/test_learning_focal.py).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

import launch_focal
import train_single_agent
from utils.config import load_config
from utils.stage_configs import DataCollectionConfig, FocalConfig

pytestmark = pytest.mark.slow



def collect_data(tmp_path: Path, seeds: str) -> None:
    """Stage 1 at a reduced budget: 128-unit SAC agents, 100 random + 100 learning episodes."""
    config = load_config(DataCollectionConfig, ["--env-type", "sparse-point-robot"],
                         config_dir="data_collection_config")
    train_single_agent.main(dataclasses.replace(
        config, seeds=seeds, num_iters=100, critic_hidden_sizes=[128, 128],
        policy_hidden_sizes=[128, 128], batch_size=256, save_interval=100, log_interval=50,
        save_models=False, data_dir=str(tmp_path / "data"), runs_dir=str(tmp_path / "runs"),
        use_tensorboard=False, device="cpu"))


def final_row(tmp_path: Path, **overrides) -> dict[str, float]:
    """FOCAL with the sparse-point-robot config at a reduced budget; the last progress row."""
    config = load_config(FocalConfig, ["--env-type", "sparse-point-robot"], config_dir="configs")
    config = dataclasses.replace(
        config, num_train_tasks=10, num_eval_tasks=4, num_iterations=20,
        num_train_steps_per_itr=200, batch_size=128, embedding_batch_size=128, net_size=64,
        context_hidden_sizes=[64, 64], log_interval=5, data_dir=str(tmp_path / "data"),
        runs_dir=str(tmp_path / "runs"), use_tensorboard=False, device="cpu", **overrides)
    run_dir = launch_focal.main(config)
    with (run_dir / "progress.csv").open(newline="") as stream:
        return {key: float(value) for key, value in list(csv.DictReader(stream))[-1].items()}


def test_focal_separates_tasks_and_beats_offline_sac_without_embedding(tmp_path):
    collect_data(tmp_path, "0-13")
    focal = final_row(tmp_path, exp_name="focal")
    baseline = final_row(tmp_path, exp_name="no_embedding", use_task_embedding=False)
    print(f"sparse returns on held-out tasks: FOCAL {focal['AverageReturn_all_test_tasks']:.2f}, "
          f"without embedding {baseline['AverageReturn_all_test_tasks']:.2f}; embedding RMS "
          f"{focal['Embedding RMS']:.2f}, ESR {focal['Embedding ESR']:.2f}")
    # Tasks separate: most pairs of training tasks lie further apart than FOCAL's 2/3 threshold.
    assert focal["Embedding ESR"] >= 0.5 and focal["Embedding RMS"] >= 0.5
    # The sum over 20 steps of the sparse reward (at most 1 per step) on held-out goals.
    assert focal["AverageReturn_all_test_tasks"] >= 2.0
    assert focal["AverageReturn_all_test_tasks"] >= baseline["AverageReturn_all_test_tasks"] + 1.0
