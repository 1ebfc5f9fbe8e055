"""Stage 1 end to end at tiny budgets: dataset contents, batched seeds, resume, bad input."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import train_single_agent
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env, task_from_seed
from utils.config import load_config
from utils.datasets import load_task_dataset
from utils.errors import UserError
from utils.logger import scalar_series
from utils.runs import RunDirectory
from utils.stage_configs import DataCollectionConfig

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(tmp_path: Path, env_type: str, **overrides) -> DataCollectionConfig:
    config = load_config(DataCollectionConfig, ["--env-type", env_type],
                         config_dir="data_collection_config")
    small = {
        "num_iters": 2, "num_init_rollouts_pool": 3, "num_rollouts_per_iter": 2,
        "rl_updates_per_iter": 4, "batch_size": 16, "log_interval": 1, "save_interval": 1,
        "runs_dir": str(tmp_path / "runs"), "data_dir": str(tmp_path / "data"),
        "use_tensorboard": False, "device": "cpu",
    }
    if config.critic_hidden_sizes[0] > 64:
        small.update(critic_hidden_sizes=[32, 32], policy_hidden_sizes=[32, 32])
    return dataclasses.replace(config, **{**small, **overrides})


def native(bamdp: BatchedBAMDP, actions: np.ndarray) -> np.ndarray:
    return actions if hasattr(bamdp.action_space, "n") else bamdp.to_native_actions(actions)


@pytest.mark.parametrize("env_type", ["gridworld", "point_robot_sparse", "point_robot_wind",
                                      "escape_room", "sparse-point-robot"])
def test_dataset_holds_the_whole_history_with_consistent_rewards(tmp_path, env_type):
    config = tiny_config(tmp_path, env_type, seed=5)
    run_dir = train_single_agent.main(config)
    dataset = load_task_dataset(tmp_path / "data" / env_type / "default" / "task_5.npz",
                                expected_env_type=env_type)
    env = make_batched_env(env_type, 1, config.env_options)
    bamdp = BatchedBAMDP(env, dataset.meta["episodes_per_task"])
    assert dataset.num_trajectories == 3 + 2 * 2  # random pool + 2 iterations x 2 rollouts
    assert dataset.trajectory_len == bamdp.trajectory_len
    assert dataset.observations.shape[2] == bamdp.observation_dim
    np.testing.assert_array_equal(dataset.task, task_from_seed(env_type, 5))
    np.testing.assert_array_equal(dataset.training_steps, [0, 0, 0, 0, 0, 4, 4])
    assert dataset.meta["seed"] == 5 and dataset.meta["env_type"] == env_type
    mask = dataset.valid_mask()
    observation_dim = env.observation_space.shape[0]
    recomputed = env.reward(dataset.observations[..., :observation_dim],
                            native(bamdp, dataset.actions),
                            dataset.next_observations[..., :observation_dim], dataset.task)
    np.testing.assert_array_equal(recomputed[mask], dataset.rewards[..., 0][mask])
    if hasattr(bamdp.action_space, "n"):
        np.testing.assert_array_equal(dataset.actions.sum(axis=-1)[mask], 1.0)
    else:
        assert np.abs(dataset.actions).max() <= 1.0
    assert (dataset.sparse_rewards is not None) == (env_type == "sparse-point-robot")
    run = RunDirectory(run_dir)
    assert run.checkpoint_steps() == [1, 2]
    steps, returns = scalar_series(run_dir / "scalars.csv", "eval/return_sum")
    assert steps == [1, 2] and all(np.isfinite(returns))
    assert list(run.figure_dir.glob("eval_trajectory_task_0_step*.png"))


def test_batched_seeds_write_one_dataset_per_task(tmp_path):
    config = tiny_config(tmp_path, "point_robot_sparse", seeds="3-5")
    run_dir = train_single_agent.main(config)
    assert run_dir.name == "default_s3-5"
    tasks = []
    for seed in (3, 4, 5):
        dataset = load_task_dataset(tmp_path / f"data/point_robot_sparse/default/task_{seed}.npz")
        np.testing.assert_array_equal(dataset.task, task_from_seed("point_robot_sparse", seed))
        assert dataset.num_trajectories == 7
        tasks.append(dataset.task)
        env = make_batched_env("point_robot_sparse", 1)
        recomputed = env.reward(None, None, dataset.next_observations[..., :2], dataset.task)
        np.testing.assert_array_equal(recomputed, dataset.rewards[..., 0])
    assert len({tuple(task) for task in tasks}) == 3


def test_resume_continues_without_lost_or_duplicated_transitions(tmp_path):
    straight = tiny_config(tmp_path / "a", "gridworld", num_iters=4, save_interval=2)
    train_single_agent.main(straight)
    interrupted = tiny_config(tmp_path / "b", "gridworld", num_iters=2, save_interval=2)
    train_single_agent.main(interrupted)
    train_single_agent.main(dataclasses.replace(interrupted, num_iters=4, resume=True))
    first = load_task_dataset(tmp_path / "a/data/gridworld/default/task_73.npz")
    second = load_task_dataset(tmp_path / "b/data/gridworld/default/task_73.npz")
    assert second.num_trajectories == 3 + 4 * 2
    for name in ("observations", "actions", "rewards", "next_observations", "terminations",
                 "truncations", "lengths", "training_steps"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)
    steps, _ = scalar_series(tmp_path / "b/runs/data_collection/gridworld/default_s73/scalars.csv",
                             "eval/return_sum")
    assert steps == [1, 2, 3, 4]


def test_resume_drops_trajectories_saved_after_the_last_checkpoint(tmp_path):
    config = tiny_config(tmp_path, "gridworld", num_iters=2, save_interval=1)
    run_dir = train_single_agent.main(config)
    run = RunDirectory(run_dir)
    checkpoint = run.load_checkpoint("step_1.pt")
    (run.checkpoint_dir / "latest.pt").write_bytes((run.checkpoint_dir / "step_1.pt").read_bytes())
    train_single_agent.main(dataclasses.replace(config, resume=True))
    dataset = load_task_dataset(tmp_path / "data/gridworld/default/task_73.npz")
    assert checkpoint["num_trajectories"] == [5]
    assert dataset.num_trajectories == 7


def test_existing_dataset_needs_resume_or_overwrite(tmp_path):
    config = tiny_config(tmp_path, "gridworld", num_iters=1)
    train_single_agent.main(config)
    with pytest.raises(UserError, match="already exists"):
        train_single_agent.main(dataclasses.replace(config, exp_name="other"))
    train_single_agent.main(dataclasses.replace(config, exp_name="other", overwrite=True))


def test_script_rejects_bad_input_with_exit_code_2(tmp_path):
    for argv, message in [
        (["--env-type", "gridwold"], "no config file for env-type 'gridwold'"),
        (["--env-type", "gridworld", "--num-iters", "x"], "must be int"),
        (["--env-type", "gridworld", "--seeds", "5-1"], "is not a list of seeds"),
        (["--env-type", "gridworld", "--algorithm", "sac"], "does not fit"),
    ]:
        completed = subprocess.run(
            [sys.executable, "train_single_agent.py", *argv, "--runs-dir", str(tmp_path / "r"),
             "--data-dir", str(tmp_path / "d")],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert completed.returncode == 2, completed.stderr
        lines = completed.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], completed.stderr


@pytest.mark.parametrize(
    ("env_type", "extra"),
    [("cheetah_vel", {}), ("ant_dir", {}), ("ant_semicircle_sparse", {}),
     ("walker_rand_params", {}), ("cheetah-vel", {}), ("metaworld", {"env_name": "reach-v2"})],
)
def test_mujoco_and_metaworld_datasets(tmp_path, env_type, extra):
    config = tiny_config(tmp_path, env_type, seed=2, num_iters=1, num_init_rollouts_pool=1,
                         num_rollouts_per_iter=1, rl_updates_per_iter=2,
                         critic_hidden_sizes=[16], policy_hidden_sizes=[16], batch_size=8,
                         **extra)
    if env_type == "metaworld":
        with pytest.warns(UserWarning, match="alias"):
            train_single_agent.main(config)
    else:
        train_single_agent.main(config)
    dataset = load_task_dataset(tmp_path / "data" / env_type / "default" / "task_2.npz",
                                expected_env_type=env_type)
    options = config.environment_options()
    if env_type == "metaworld":
        with pytest.warns(UserWarning, match="alias"):
            env = make_batched_env(env_type, 1, options)
    else:
        env = make_batched_env(env_type, 1, options)
    bamdp = BatchedBAMDP(env, dataset.meta["episodes_per_task"])
    assert dataset.num_trajectories == 2
    assert dataset.observations.shape[1:] == (bamdp.trajectory_len, bamdp.observation_dim)
    np.testing.assert_array_equal(dataset.task, env.task_from_seed(2))
    mask = dataset.valid_mask()
    assert np.all(dataset.truncations[..., 0].sum(axis=1) == dataset.meta["episodes_per_task"])
    if env.reward_recomputable:
        observation_dim = env.observation_space.shape[0]
        recomputed = env.reward(dataset.observations[..., :observation_dim],
                                bamdp.to_native_actions(dataset.actions),
                                dataset.next_observations[..., :observation_dim], dataset.task)
        np.testing.assert_array_equal(recomputed[mask], dataset.rewards[..., 0][mask])
    if env_type == "ant_semicircle_sparse":
        assert dataset.meta["env_options"]["reward_variant"] == "dense"
        sparse_env = make_batched_env(env_type, 1)
        sparse = sparse_env.reward(dataset.observations[..., :29],
                                   bamdp.to_native_actions(dataset.actions),
                                   dataset.next_observations[..., :29], dataset.task)
        np.testing.assert_array_equal(sparse[mask], dataset.sparse_rewards[..., 0][mask])
    if env_type == "metaworld":
        assert dataset.meta["env_options"]["env_name"] == "reach-v2"
