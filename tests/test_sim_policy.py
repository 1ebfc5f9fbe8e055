"""sim_policy.py on tiny runs of every kind (stage 1, stage 3, online VariBAD, FOCAL): the run's
own evaluation reproduced exactly, chosen tasks, videos of a toy and a MuJoCo env, rollouts saved
as datasets that the loader and the stages accept, and one-line errors with exit code 2."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as imageio
import numpy as np
import pytest

import launch_focal
import online_training
import sim_policy
import train_single_agent
import train_vae_offline
from environments.registry import make_batched_env
from tests.test_focal_borel_envs import TINY_FOCAL as TINY_BOREL_FOCAL
from tests.test_focal_borel_envs import write_random_bamdp_datasets
from tests.test_launch_focal import tiny_config as tiny_focal_config
from tests.test_launch_focal import write_random_datasets
from tests.test_online_training import tiny_config as online_tiny_config
from tests.test_train_agent_offline import run_chain
from tests.test_train_single_agent import tiny_config as tiny_collection_config
from tests.test_train_vae_offline import vae_config
from utils.config import load_config
from utils.datasets import load_dataset_directory
from utils.errors import UserError, run_script
from utils.logger import scalar_series
from utils.plotting import trajectory_frames
from utils.simulation import logged_borel_evaluation
from utils.stage_configs import FocalConfig, SimulationConfig

ROOT = Path(__file__).resolve().parent.parent


def simulate(run_dir: Path, output: Path, **options) -> dict:
    """Run sim_policy on ``run_dir`` and return its ``returns.json``."""
    assert sim_policy.main(run_dir, SimulationConfig(device="cpu", output_dir=str(output),
                                                     **options)) == output
    return json.loads((output / "returns.json").read_text())


def assert_reproduces_the_logged_evaluation(report: dict, metrics: list[str]) -> None:
    assert report["own_evaluation"] and report["logged_step"] == report["checkpoint_step"]
    summary = report["summary"]
    assert set(metrics) <= set(summary)
    for name, entry in summary.items():
        assert entry["logged"] is not None, name
        assert entry["simulated"] == entry["logged"] and entry["equal"] is True, name
    assert any(entry["simulated"] != 0 for entry in summary.values())  # not trivially equal


def rows_of(report: dict, protocol: str) -> list[dict]:
    return [row for row in report["rows"] if row["protocol"] == protocol]


@pytest.fixture(scope="module")
def gridworld_ensemble(tmp_path_factory) -> Path:
    """A stage-1 DQN ensemble of three gridworld agents (k = 4)."""
    path = tmp_path_factory.mktemp("ensemble")
    return train_single_agent.main(tiny_collection_config(path, "gridworld", seeds="0-2"))


def test_stage1_ensemble_reproduces_its_evaluation_and_picks_members(gridworld_ensemble,
                                                                    tmp_path):
    report = simulate(gridworld_ensemble, tmp_path / "all")
    assert_reproduces_the_logged_evaluation(report, [
        "eval/return_episode_1", "eval/return_episode_4", "eval/return_sum",
        "eval/success_rate"])
    _, logged = scalar_series(gridworld_ensemble / "scalars.csv", "eval/return_sum")
    assert report["summary"]["eval/return_sum"]["simulated"] == logged[-1]
    rows = rows_of(report, "policy")
    assert [(row["task_seed"], row["episode"]) for row in rows] == [
        (seed, episode) for seed in (0, 1, 2) for episode in (1, 2, 3, 4)]
    assert all(row["length"] == 15 for row in rows)  # 4 x 15 steps, the gridworld never ends early
    csv_lines = (tmp_path / "all/returns.csv").read_text().splitlines()
    assert csv_lines[0] == "protocol,task_seed,repeat,episode,return,success,length,task"
    assert len(csv_lines) == 1 + 12

    one = simulate(gridworld_ensemble, tmp_path / "one", task_seeds="2")
    assert not one["own_evaluation"] and one["logged_step"] is None
    assert rows_of(one, "policy") == [row for row in rows if row["task_seed"] == 2]
    with pytest.raises(UserError, match=r"ensemble of 3 agents.*seed\(s\) \[7\]"):
        simulate(gridworld_ensemble, tmp_path / "x", task_seeds="2,7")
    with pytest.raises(UserError, match="--num-tasks 4: .* ensemble of 3 agents"):
        simulate(gridworld_ensemble, tmp_path / "x", num_tasks=4)


def test_single_agent_on_chosen_tasks_and_toy_videos(tmp_path):
    run_dir = train_single_agent.main(tiny_collection_config(
        tmp_path, "point_robot", seed=4, env_options={"max_episode_steps": 10}))
    own = simulate(run_dir, tmp_path / "own")
    assert_reproduces_the_logged_evaluation(own, ["eval/return_sum"])
    report = simulate(run_dir, tmp_path / "chosen", task_seeds="4,9", video=True)
    assert {row["task_seed"] for row in report["rows"]} == {4, 9}
    assert rows_of(report, "policy")[:3] == rows_of(own, "policy")  # its own task plays alike
    for seed in (4, 9):
        frames = imageio.imread(tmp_path / "chosen" / f"task_{seed}.gif", index=None)
        # one frame per position: 3 inner episodes x (10 steps + their start)
        assert frames.shape[0] == 3 * 11 and frames.shape[-1] in (3, 4)
        assert frames.std() > 0


def test_trajectory_frames_draw_the_path_step_by_step():
    env = make_batched_env("point_robot_sparse", 1)
    positions = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.1], [0.0, 0.0], [0.0, 0.1]])
    observations, next_observations = positions[[0, 1, 3, 4]], positions[[1, 2, 4, 4]]
    truncations = np.array([0.0, 1.0, 0.0, 1.0])[:, None]
    frames = trajectory_frames(env, env.task_from_seed(0), observations, next_observations,
                               truncations)
    assert len(frames) == 3 + 3 and frames[0].dtype == np.uint8 and frames[0].shape[-1] == 3
    assert not np.array_equal(frames[0], frames[2])


def test_offline_agent_reproduces_its_online_belief_evaluation(tmp_path):
    run_dir = run_chain(tmp_path, "gridworld", "0-1")
    report = simulate(run_dir, tmp_path / "own")
    assert_reproduces_the_logged_evaluation(report, [
        "eval/return_episode_1", "eval/return_episode_4", "eval/return_sum"])
    split = json.loads((run_dir / "tasks.json").read_text())
    assert [row["task_seed"] for row in rows_of(report, "online_belief")][::4] == \
        split["eval_seeds"]
    more = simulate(run_dir, tmp_path / "more", num_tasks=5)
    seeds = [row["task_seed"] for row in rows_of(more, "online_belief")][::4]
    assert seeds[:3] == split["eval_seeds"] and len(set(seeds)) == 5
    assert not set(seeds) & set(split["train_seeds"])


def test_focal_reproduces_both_protocols_and_saves_loadable_datasets(tmp_path):
    write_random_datasets(tmp_path / "data", "sparse-point-robot", range(6))
    run_dir = launch_focal.main(tiny_focal_config(tmp_path, "sparse-point-robot", num_evals=2,
                                                  sparse_rewards=False))  # dense, non-zero returns
    replay = tmp_path / "data/sparse-point-robot/replay"
    report = simulate(run_dir, tmp_path / "own", save_dataset=str(replay))
    assert_reproduces_the_logged_evaluation(report, [
        "AverageReturn_all_test_tasks", "AverageReturn_all_train_tasks",
        "AverageReturn_online_context_episode2_all_test_tasks"])
    offline = rows_of(report, "offline_context")
    assert [(row["task_seed"], row["repeat"], row["episode"]) for row in offline] == [
        (seed, repeat, episode) for seed in (4, 5) for repeat in (0, 1) for episode in (1, 2)]
    assert {row["task_seed"] for row in rows_of(report, "offline_context_train_tasks")} == {0, 1}

    datasets = load_dataset_directory(replay, expected_env_type="sparse-point-robot")
    assert [dataset.meta["seed"] for dataset in datasets] == [0, 1, 4, 5]
    held_out = datasets[2]
    assert held_out.num_trajectories == 2 * 2 + 2 * 2  # offline + online protocol, 2 repeats
    assert held_out.sparse_rewards is not None
    assert np.all(held_out.training_steps == report["training_steps"])
    launch_focal.main(tiny_focal_config(tmp_path, "sparse-point-robot", dataset_name="replay",
                                        num_train_tasks=3, num_eval_tasks=1, exp_name="on_replay",
                                        num_trajs_per_task=None))

    chosen = simulate(run_dir, tmp_path / "chosen", num_tasks=1, episodes=3)
    assert not chosen["own_evaluation"]
    assert [(row["task_seed"], row["episode"]) for row in rows_of(chosen, "offline_context")] \
        == [(4, 1), (4, 2), (4, 3)] * 2
    assert len(rows_of(chosen, "online_context")) == 2 * 3
    with pytest.raises(UserError, match="holds no task file for seed"):
        simulate(run_dir, tmp_path / "x", task_seeds="40")


def test_focal_on_a_borel_env_type_plays_its_runs_meta_episode_protocols(tmp_path):
    # The quick start's FOCAL run: the gridworld (Discrete actions, DiscreteFOCAL) evaluated with
    # BOReL's protocol of k = 4 inner episodes per task.
    write_random_bamdp_datasets(tmp_path / "data", "gridworld", range(6))
    config = load_config(FocalConfig, ["--env-type", "gridworld"], config_dir="configs")
    run_dir = launch_focal.main(dataclasses.replace(
        config, **TINY_BOREL_FOCAL, data_dir=str(tmp_path / "data"),
        runs_dir=str(tmp_path / "runs")))
    replay = tmp_path / "data/gridworld/replay"
    report = simulate(run_dir, tmp_path / "own", save_dataset=str(replay))
    assert_reproduces_the_logged_evaluation(report, [
        "AverageReturn_online_context_sum_all_test_tasks",
        "AverageReturn_offline_context_episode4_all_test_tasks"])
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    for protocol in ("offline_context", "online_context"):
        rows = rows_of(report, protocol)
        assert [(row["task_seed"], row["episode"]) for row in rows] == [
            (seed, episode) for seed in (4, 5) for episode in (1, 2, 3, 4)]
        np.testing.assert_allclose([row["return"] for row in rows],
                                   np.ravel(evaluation[protocol]), rtol=1e-6)
    datasets = load_dataset_directory(replay, expected_env_type="gridworld")
    assert [dataset.meta["seed"] for dataset in datasets] == [4, 5]
    assert all(dataset.num_trajectories == 2 and dataset.trajectory_len == 60
               for dataset in datasets)

    chosen = simulate(run_dir, tmp_path / "chosen", task_seeds="5", video=True)
    assert not chosen["own_evaluation"]
    assert {row["task_seed"] for row in chosen["rows"]} == {5}
    assert (tmp_path / "chosen/task_5.gif").is_file()
    with pytest.raises(UserError, match="--episodes 2: a FOCAL run on 'gridworld' plays "
                                        "meta-episodes of the 4 inner episodes"):
        simulate(run_dir, tmp_path / "x", episodes=2)


def test_stage1_rollouts_train_a_vae(gridworld_ensemble, tmp_path):
    data_dir = gridworld_ensemble.parents[3] / "data"
    replay = data_dir / "gridworld" / "replay"
    simulate(gridworld_ensemble, tmp_path / "out", save_dataset=str(replay))
    datasets = load_dataset_directory(replay, expected_env_type="gridworld")
    assert [dataset.meta["seed"] for dataset in datasets] == [0, 1, 2]
    assert all(dataset.num_trajectories == 1 and dataset.trajectory_len == 60
               for dataset in datasets)
    with pytest.raises(UserError, match="already exists"):
        simulate(gridworld_ensemble, tmp_path / "out", save_dataset=str(replay))
    simulate(gridworld_ensemble, tmp_path / "out", save_dataset=str(replay), overwrite=True)
    config = vae_config(tmp_path, "gridworld", dataset_name="replay", data_dir=str(data_dir))
    assert (train_vae_offline.main(config) / "checkpoints/latest.pt").is_file()


def test_mujoco_run_is_reproduced_and_rendered(tmp_path):
    run_dir = train_single_agent.main(tiny_collection_config(
        tmp_path, "cheetah_vel", seed=2, num_iters=1, num_init_rollouts_pool=1,
        num_rollouts_per_iter=1, rl_updates_per_iter=2, critic_hidden_sizes=[16],
        policy_hidden_sizes=[16], batch_size=8, env_options={"max_episode_steps": 4}))
    report = simulate(run_dir, tmp_path / "sim", video=True)
    assert_reproduces_the_logged_evaluation(report, ["eval/return_sum"])
    frames = imageio.imread(tmp_path / "sim/task_2.gif", index=None)
    assert frames.shape[:3] == (2 * 4, 240, 320) and frames.std() > 0


def test_bad_runs_and_options_end_with_one_line_and_exit_code_2(gridworld_ensemble, tmp_path,
                                                                capsys):
    def exit_message(*argv: str) -> str:
        with pytest.raises(SystemExit) as raised:
            run_script(lambda: sim_policy.main(*sim_policy.parse_command_line(list(argv))))
        assert raised.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        return lines[0]

    assert "is not a run directory" in exit_message(str(tmp_path))
    without = tmp_path / "runs/data_collection/gridworld/empty_s0"
    without.mkdir(parents=True)
    shutil.copy(gridworld_ensemble / "config.yaml", without)
    assert "has no checkpoint (checkpoints/latest.pt)" in exit_message(str(without))
    vae_like = tmp_path / "runs/vae/gridworld/default_s73"
    shutil.copytree(gridworld_ensemble, vae_like)
    message = exit_message(str(vae_like))
    assert "unknown kind 'vae'" in message and "data_collection" in message
    assert "exclude each other" in exit_message(str(gridworld_ensemble), "--num-tasks", "1",
                                                "--task-seeds", "0")
    assert "end-of-episode flag" in exit_message(str(gridworld_ensemble), "--episodes", "1")
    assert "unknown flag '--num-task'" in exit_message(str(gridworld_ensemble), "--num-task", "1")
    assert "missing RUN_DIR" in exit_message()

    completed = subprocess.run([sys.executable, "sim_policy.py", str(without)], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"error: run {without} has no checkpoint (checkpoints/latest.pt): it has not saved one "
        "yet"]


def test_a_new_kind_is_one_entry_in_the_table(gridworld_ensemble, tmp_path, monkeypatch):
    other = tmp_path / "runs/other/gridworld/default_s0-2"
    shutil.copytree(gridworld_ensemble, other)
    with pytest.raises(UserError, match="unknown kind 'other'"):
        simulate(other, tmp_path / "before")
    monkeypatch.setitem(sim_policy.KINDS, "other", sim_policy.Kind(
        "a stand-in", sim_policy.simulate_collection_run, logged_borel_evaluation))
    assert_reproduces_the_logged_evaluation(simulate(other, tmp_path / "after"),
                                            ["eval/return_sum"])


@pytest.mark.parametrize("env_type", ["gridworld", "point_robot"])
def test_online_varibad_reproduces_its_held_out_and_training_task_evaluation(tmp_path,
                                                                             env_type):
    run_dir = online_training.main(online_tiny_config(tmp_path, env_type,
                                                      num_eval_train_tasks=2))
    report = simulate(run_dir, tmp_path / "own")
    assert_reproduces_the_logged_evaluation(report, [
        "eval/return_sum", "eval/success_rate", "eval/train_return_sum",
        "eval/train_return_episode_1"])
    split = json.loads((run_dir / "tasks.json").read_text())
    episodes = sum(name.startswith("eval/return_episode") for name in report["summary"])
    assert [row["task_seed"] for row in rows_of(report, "online_belief")][::episodes] == \
        split["eval_seeds"]
    assert [row["task_seed"] for row in rows_of(report, "online_belief_train_tasks")
            ][::episodes] == split["evaluated_train_seeds"] == [0, 1]
    chosen = simulate(run_dir, tmp_path / "chosen", task_seeds="1", episodes=2)
    assert not chosen["own_evaluation"]
    assert [(row["task_seed"], row["episode"]) for row in chosen["rows"]] == [(1, 1), (1, 2)]
