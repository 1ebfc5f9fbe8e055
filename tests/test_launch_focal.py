"""launch_focal.py end to end at tiny budgets: outputs, exact resume, both evaluation protocols,
the positional JSON command line and one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import launch_focal
from algorithms.focal import FOCAL, FocalHyperparameters
from algorithms.focal_data import OfflineTaskData, split_tasks
from algorithms.focal_evaluation import FocalEvaluator
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from utils.config import load_config
from utils.datasets import FORMAT_VERSION, TaskDataset, save_task_dataset, task_file
from utils.errors import UserError
from utils.logger import read_scalars
from utils.rollouts import collect_meta_episodes
from utils.runs import RunDirectory
from utils.stage_configs import FocalConfig

ROOT = Path(__file__).resolve().parent.parent



def write_random_datasets(data_dir: Path, env_type: str, seeds: range, num_trajectories: int = 6,
                          folder_env_type: str | None = None) -> Path:
    """Uniform-random rollouts of ``env_type`` in each seed's task, saved as stage 1 would."""
    directory = data_dir / (folder_env_type or env_type) / "default"
    for seed in seeds:
        env = make_batched_env(env_type, num_trajectories)
        task = env.task_from_seed(seed)
        env.set_tasks(np.tile(task, (num_trajectories, 1)))
        env.seed(range(num_trajectories))
        rng = np.random.default_rng(seed)
        batch = collect_meta_episodes(BatchedBAMDP(env, 1), lambda observations, rng=rng: (
            rng.uniform(-1, 1, (len(observations), 2)).astype(np.float32)))
        save_task_dataset(task_file(directory, seed), TaskDataset(
            observations=batch.observations, actions=batch.actions, rewards=batch.rewards,
            next_observations=batch.next_observations, terminations=batch.terminations,
            truncations=batch.truncations, lengths=batch.lengths,
            training_steps=np.arange(num_trajectories, dtype=np.int64) * 10, task=task,
            meta={"format_version": FORMAT_VERSION, "env_type": env_type, "seed": seed},
            sparse_rewards=batch.sparse_rewards))
    return directory


TINY = {
    "num_train_tasks": 4, "num_eval_tasks": 2, "num_trajs_per_task": 4, "meta_batch": 4,
    "batch_size": 8, "embedding_batch_size": 8, "net_size": 16, "context_hidden_sizes": [16],
    "num_iterations": 2, "num_train_steps_per_itr": 3, "log_interval": 1, "save_interval": 1,
    "num_steps_per_eval": 40, "max_path_length": 20, "num_embedding_contexts": 3,
    "device": "cpu", "use_tensorboard": False, "num_evals": 1,
}


def tiny_config(tmp_path: Path, env_type: str, **overrides) -> FocalConfig:
    config = load_config(FocalConfig, ["--env-type", env_type], config_dir="configs")
    return dataclasses.replace(config, **{**TINY, "data_dir": str(tmp_path / "data"),
                                          "runs_dir": str(tmp_path / "runs"), **overrides})


def read_progress(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_tiny_point_robot_run_writes_progress_logs_figures_and_checkpoints(tmp_path):
    write_random_datasets(tmp_path / "data", "point-robot", range(6))
    config = tiny_config(tmp_path, "point-robot", use_value_penalty=True, use_tensorboard=True)
    run_dir = launch_focal.main(config)
    assert run_dir == tmp_path / "runs/focal/point-robot/default_s73"
    rows = read_progress(run_dir)
    assert [row["Epoch"] for row in rows] == ["1", "2"]
    assert rows[-1]["Number of train steps total"] == "6"
    for column in ("AverageReturn_all_test_tasks", "AverageReturn_all_train_tasks",
                   "AverageReturn_online_context_episode1_all_test_tasks",
                   "AverageReturn_online_context_sum_all_test_tasks", "Z Loss", "QF Loss",
                   "Dual Critic Loss", "alpha", "div_estimate Mean", "Embedding RMS",
                   "Embedding ESR", "Number of env steps total"):
        assert np.isfinite(float(rows[-1][column])), column
    # Dense returns of 20 steps at distance <= ~3: in [-60, 0].
    assert -60.0 <= float(rows[-1]["AverageReturn_all_test_tasks"]) <= 0.0
    tags = {tag for _, tag, _ in read_scalars(run_dir / "scalars.csv")}
    assert {"eval/test_return", "eval/embedding_esr", "focal/z_loss", "focal/alpha"} <= tags
    assert list((run_dir / "tensorboard").iterdir())
    assert list((run_dir / "figures").glob("eval_task_embeddings_step2.png"))
    assert list((run_dir / "figures").glob("eval_trajectory_test_task_0_step2.png"))
    assert RunDirectory(run_dir).checkpoint_steps() == [1, 2]
    split = json.loads((run_dir / "meta.json").read_text())["task_split"]
    assert split["train_seeds"] == [0, 1, 2, 3] and split["eval_seeds"] == [4, 5]
    # The latest evaluation per held-out task: FOCAL's 2 offline-context trajectories and the
    # 2 online-context episodes (num_online_episodes), matching progress.csv's means.
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["step"] == 2 and evaluation["task_seeds"] == [4, 5]
    offline, online = (np.array(evaluation[key]) for key in ("offline_context",
                                                              "online_context"))
    assert offline.shape == (2, 2) and online.shape == (2, 2)
    assert float(rows[-1]["AverageReturn_all_test_tasks"]) == pytest.approx(
        offline[:, -1].mean())
    assert float(rows[-1]["AverageReturn_online_context_sum_all_test_tasks"]) == pytest.approx(
        online.sum(axis=1).mean())


def test_resume_continues_exactly(tmp_path):
    write_random_datasets(tmp_path / "data", "sparse-point-robot", range(6))
    straight = launch_focal.main(tiny_config(tmp_path, "sparse-point-robot", num_iterations=4,
                                             exp_name="straight", use_brac=True, c_iter=2))
    interrupted = tiny_config(tmp_path, "sparse-point-robot", num_iterations=2,
                              exp_name="resumed", use_brac=True, c_iter=2, save_interval=2)
    launch_focal.main(interrupted)
    resumed = launch_focal.main(dataclasses.replace(interrupted, num_iterations=4, resume=True))
    first = RunDirectory(straight).load_checkpoint()
    second = RunDirectory(resumed).load_checkpoint()
    for name in ("encoder", "policy", "q_networks", "value", "dual_critic", "target_value"):
        for key, value in first["focal"][name].items():
            assert torch.equal(value, second["focal"][name][key]), f"{name}.{key}"
    assert torch.equal(first["focal"]["alpha"]["value"], second["focal"]["alpha"]["value"])
    untimed = [[{column: value for column, value in row.items() if "Time" not in column}
                for row in read_progress(run)] for run in (straight, resumed)]
    assert untimed[0] == untimed[1]


def tiny_evaluator(tmp_path: Path, env_type: str, **settings) -> tuple[FocalEvaluator, FOCAL]:
    directory = write_random_datasets(tmp_path / "data", env_type, range(3))
    split = split_tasks(directory, 2, 1)
    data = OfflineTaskData.load(split, env_type, "all", None, env_type.startswith("sparse"),
                                True, False, "cpu")
    evaluator = FocalEvaluator(env_type, {}, data, 2, test_task_ids=[2], train_task_ids=[0],
                               num_evals=2, num_steps_per_eval=50, max_path_length=20,
                               num_online_episodes=3, sparse_returns=True, seed=0)
    torch.manual_seed(0)
    hyperparameters = FocalHyperparameters(latent_size=3, net_size=8, context_hidden_sizes=[8],
                                           **settings)
    return evaluator, FOCAL(data.observation_dim, data.action_dim, data.transition_dim,
                            hyperparameters)


def test_offline_context_grows_by_one_path_per_trajectory(tmp_path):
    evaluator, focal = tiny_evaluator(tmp_path, "point-robot")
    sizes = []
    original = focal.task_latents
    focal.task_latents = lambda context, mask=None: (sizes.append(tuple(context.shape)),
                                                     original(context, mask))[1]
    returns, _ = evaluator.offline_context_returns(focal)
    assert returns.shape == (4, 3)  # (test + train tasks) x 2 repeats, ceil(50 / 20) paths
    assert sizes == [(4, 20, 5), (4, 40, 5), (4, 60, 5)]


def test_online_context_starts_from_the_prior_then_uses_own_transitions(tmp_path):
    evaluator, focal = tiny_evaluator(tmp_path, "sparse-point-robot")
    seen, rollouts = [], []
    original_act = focal.act
    focal.act = lambda states, latents, deterministic=True: (
        seen.append(latents.clone()), original_act(states, latents, deterministic))[1]
    original_episode_returns = evaluator.episode_returns
    evaluator.episode_returns = lambda batch: (rollouts.append(batch),
                                               original_episode_returns(batch))[1]
    returns = evaluator.online_context_returns(focal)
    assert returns.shape == (2, 3)
    assert torch.count_nonzero(seen[0]) == 0  # episode 1: z = 0
    first = rollouts[0]
    context = torch.cat([torch.as_tensor(values) for values in (
        first.observations, first.actions, first.sparse_rewards)], dim=-1)
    expected = focal.encoder(context, torch.as_tensor(first.valid_mask())).detach()
    torch.testing.assert_close(seen[20], expected)  # episode 2's first step
    # Reported returns sum the sparse reward (in [0, 1] per step), not the dense one.
    np.testing.assert_allclose(returns[:, 0], (first.sparse_rewards[..., 0]).sum(axis=1))


def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        launch_focal.main(tiny_config(tmp_path, "point-robot"))
    write_random_datasets(tmp_path / "data", "point-robot", range(3))
    with pytest.raises(UserError, match="holds 3 tasks, but --num-train-tasks 4"):
        launch_focal.main(tiny_config(tmp_path, "point-robot"))
    write_random_datasets(tmp_path / "data", "point-robot", range(6),
                          folder_env_type="sparse-point-robot")
    with pytest.raises(UserError, match="collected on env-type 'point-robot', expected "
                                        "'sparse-point-robot'"):
        launch_focal.main(tiny_config(tmp_path, "sparse-point-robot"))
    with pytest.raises(UserError, match="plays one episode per task; --episodes-per-task "
                                        "applies to BOReL's env-types"):
        launch_focal.main(tiny_config(tmp_path, "sparse-point-robot", episodes_per_task=2))
    with pytest.raises(UserError, match="does not exist"):  # a BOReL name reads its own folder
        launch_focal.main(dataclasses.replace(tiny_config(tmp_path, "sparse-point-robot"),
                                              env_type="point_robot_sparse"))


def test_positional_json_command_line_and_exit_code_2(tmp_path):
    write_random_datasets(tmp_path / "data", "point-robot", range(6))
    flags = [f"--{key.replace('_', '-')}="
             + (",".join(map(str, value)) if isinstance(value, list) else str(value))
             for key, value in TINY.items()]
    common = ["--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")]
    completed = subprocess.run(
        [sys.executable, "launch_focal.py", "configs/point-robot.json", *flags, *common],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "runs/focal/point-robot/default_s73/progress.csv").is_file()
    failed = subprocess.run(
        [sys.executable, "launch_focal.py", "--env-type", "cheetah-vel", *common],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "dataset directory" in lines[0] and "does not exist" in lines[0]


def test_every_focal_config_names_a_registered_focal_env_type():
    expected = {"point-robot", "sparse-point-robot", "point-robot-wind", "cheetah-vel",
                "cheetah-dir", "ant-dir", "ant-goal", "humanoid-dir", "walker-rand-params",
                "hopper-rand-params"}
    assert expected <= {path.stem for path in (ROOT / "configs").glob("*.json")}
    for path in sorted((ROOT / "configs").glob("*.json")):
        config = load_config(FocalConfig, launch_focal.command_line([str(path)]),
                             config_dir="configs")
        assert config.env_type == path.stem
        assert config.num_train_tasks + config.num_eval_tasks >= 4
