"""Stage 2 end to end at tiny budgets: outputs, Reward Relabelling and Policy Replaying runs,
resume, and bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train_single_agent
import train_vae_offline
from utils.config import load_config
from utils.datasets import load_task_dataset
from utils.errors import UserError
from utils.logger import scalar_series
from utils.runs import RunDirectory
from utils.stage_configs import DataCollectionConfig, VAEConfig

ROOT = Path(__file__).resolve().parent.parent


def collect(tmp_path: Path, env_type: str, seeds: str, **overrides) -> None:
    config = load_config(DataCollectionConfig, ["--env-type", env_type],
                         config_dir="data_collection_config")
    train_single_agent.main(dataclasses.replace(config, **{
        "seeds": seeds, "num_iters": 2, "num_init_rollouts_pool": 2, "num_rollouts_per_iter": 2,
        "rl_updates_per_iter": 3, "batch_size": 16, "log_interval": 2, "save_interval": 2,
        "runs_dir": str(tmp_path / "runs"), "data_dir": str(tmp_path / "data"),
        "use_tensorboard": False, "device": "cpu", **overrides}))


def vae_config(tmp_path: Path, env_type: str, **overrides) -> VAEConfig:
    config = load_config(VAEConfig, ["--env-type", env_type], config_dir="vae_config")
    return dataclasses.replace(config, **{
        "num_iters": 2, "log_interval": 1, "save_interval": 1, "eval_interval": 2,
        "gru_hidden_size": 16, "runs_dir": str(tmp_path / "runs"),
        "data_dir": str(tmp_path / "data"), "use_tensorboard": False, "device": "cpu",
        **overrides})


@pytest.fixture(scope="module")
def gridworld_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("gridworld")
    collect(path, "gridworld", "0-3")
    return path


def test_gridworld_vae_run_writes_its_outputs(gridworld_data, tmp_path):
    shutil.copytree(gridworld_data / "data", tmp_path / "data")
    run_dir = train_vae_offline.main(vae_config(tmp_path, "gridworld"))
    run = RunDirectory(run_dir)
    assert run_dir == tmp_path / "runs/vae/gridworld/default_s73"
    model = json.loads((run_dir / "model.json").read_text())
    assert model["observation_dim"] == 3 and model["action_dim"] == 5
    assert model["num_states"] == 25 and model["trajectory_len"] == 60
    assert model["seeds"] == [0, 1, 2, 3]
    assert run.checkpoint_steps() == [1, 2]
    steps, losses = scalar_series(run_dir / "scalars.csv", "vae/loss")
    assert steps == [1, 2] and all(np.isfinite(losses))
    assert list(run.figure_dir.glob("vae_reward_belief_task_0_step2.png"))


def test_num_trajs_per_task_keeps_a_seeded_random_subset_not_the_first_ones(gridworld_data):
    """BOReL section 9.12: the original kept the first N trajectories (early training only)."""
    directory = gridworld_data / "data/gridworld/default"
    full, seeds = train_vae_offline.prepare_datasets(
        vae_config(gridworld_data, "gridworld"), directory)
    subsets = []
    for seed in (73, 73, 5):
        chosen, _ = train_vae_offline.prepare_datasets(
            vae_config(gridworld_data, "gridworld", num_trajs_per_task=3, seed=seed), directory)
        rows = []
        for whole, part in zip(full, chosen, strict=True):
            assert part.num_trajectories == 3
            rows.append([next(index for index in range(whole.num_trajectories)
                              if np.array_equal(whole.observations[index], trajectory))
                         for trajectory in part.observations])
        subsets.append(rows)
    assert seeds == [0, 1, 2, 3] and full[0].num_trajectories == 6
    assert subsets[0] == subsets[1]  # the run's seed fixes the subset
    assert subsets[0] != subsets[2]
    assert any(rows != [0, 1, 2] for rows in subsets[0])  # not the first ones
    assert all(rows == sorted(rows) for rows in subsets[0])  # collection order is kept


def test_resume_gives_the_same_model_as_an_uninterrupted_run(gridworld_data, tmp_path):
    for name in ("straight", "resumed"):
        shutil.copytree(gridworld_data / "data", tmp_path / name / "data")
    straight = train_vae_offline.main(vae_config(tmp_path / "straight", "gridworld"))
    first = vae_config(tmp_path / "resumed", "gridworld", num_iters=1)
    train_vae_offline.main(first)
    resumed = train_vae_offline.main(dataclasses.replace(first, num_iters=2, resume=True))
    expected = RunDirectory(straight).load_checkpoint()["trainer"]["vae"]
    actual = RunDirectory(resumed).load_checkpoint()["trainer"]["vae"]
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, atol=0, rtol=0, msg=name)


def test_resume_keeps_optimiser_steps_on_the_host_and_refuses_another_device_type(
        gridworld_data, tmp_path, monkeypatch):
    shutil.copytree(gridworld_data / "data", tmp_path / "data")
    original_load = train_vae_offline.VAETrainer.load_state_dict
    original_read = RunDirectory.load_checkpoint
    loaded = {}

    def recording_load(trainer, state):
        original_load(trainer, state)
        loaded["steps"] = [entry["step"] for entry in trainer.optimizer.state.values()]
        loaded["parameters"] = {parameter.device.type for parameter in trainer.vae.parameters()}

    def recording_read(run, *arguments, **options):
        loaded.setdefault("reads", []).append((arguments, options))
        return original_read(run, *arguments, **options)

    monkeypatch.setattr(train_vae_offline.VAETrainer, "load_state_dict", recording_load)
    monkeypatch.setattr(RunDirectory, "load_checkpoint", recording_read)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        first = vae_config(tmp_path, "gridworld", num_iters=1, device=device,
                           exp_name=f"on_{device}")
        train_vae_offline.main(first)
        loaded.clear()
        train_vae_offline.main(dataclasses.replace(first, num_iters=2, resume=True))
        # The checkpoint is read into host memory (the default map_location) and the trainer
        # copies it onto the device. Plain Adam reads its step counters on the host each step: on
        # a GPU, counters loaded onto the device would cost a synchronisation per parameter per
        # step.
        assert loaded["reads"] == [((), {})]
        assert loaded["steps"] and {step.device.type for step in loaded["steps"]} == {"cpu"}
        assert loaded["parameters"] == {device}
    monkeypatch.undo()

    # A run started on a GPU does not resume on the CPU: one line, and nothing in the run changes
    # (its meta.json still says where it started).
    run = RunDirectory(tmp_path / "runs/vae/gridworld/on_cpu_s73")
    meta = json.loads((run.path / "meta.json").read_text())
    (run.path / "meta.json").write_text(json.dumps({**meta, "device": "cuda:0"}))
    files = {path: path.read_bytes() for path in run.path.rglob("*") if path.is_file()}
    resumed = dataclasses.replace(vae_config(tmp_path, "gridworld", exp_name="on_cpu"),
                                  num_iters=3, resume=True)
    with pytest.raises(UserError, match="was started on cuda:0 .* pass --device cuda"):
        train_vae_offline.main(resumed)
    assert {path: path.read_bytes() for path in run.path.rglob("*") if path.is_file()} == files
    # Where meta.json does not tell, the checkpoint's random states do (a CUDA generator's state
    # is a 16-byte Philox seed and offset, a CPU one's 5 KB).
    (run.path / "meta.json").write_text(json.dumps(meta))
    checkpoint = run.load_checkpoint()
    checkpoint["noise"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(checkpoint, run.checkpoint_dir / "latest.pt")
    before = (run.checkpoint_dir / "latest.pt").read_bytes()
    with pytest.raises(UserError, match="another device type"):
        train_vae_offline.main(resumed)
    assert (run.checkpoint_dir / "latest.pt").read_bytes() == before


def test_point_robot_sparse_with_reward_relabelling(tmp_path):
    collect(tmp_path, "point_robot_sparse", "0-2")
    run_dir = train_vae_offline.main(vae_config(tmp_path, "point_robot_sparse",
                                                relabelling_fraction=1.0))
    assert list(RunDirectory(run_dir).figure_dir.glob("vae_reward_predictions_step2.png"))


def test_wind_with_policy_replaying_collects_other_tasks_rollouts(tmp_path):
    collect(tmp_path, "point_robot_wind", "0-2")
    config = vae_config(tmp_path, "point_robot_wind", policy_replaying=True,
                        replaying_rollouts_per_policy=2, num_replaying_policies=5)
    train_vae_offline.main(config)
    for seed in range(3):
        replayed = load_task_dataset(
            tmp_path / f"data/point_robot_wind/policy_replaying/task_{seed}.npz",
            expected_env_type="point_robot_wind")
        original = load_task_dataset(tmp_path / f"data/point_robot_wind/default/task_{seed}.npz")
        np.testing.assert_array_equal(replayed.task, original.task)
        assert replayed.meta["replayed_seeds"] == sorted(set(range(3)) - {seed})
        assert replayed.num_trajectories == 2 * 2  # 2 other agents x 2 rollouts each
    rerun = dataclasses.replace(config, exp_name="again")
    train_vae_offline.main(rerun)  # the saved rollouts are reused, not collected again


def test_bad_input_is_refused(gridworld_data, tmp_path):
    collect(tmp_path, "point_robot_wind", "0-1")
    with pytest.raises(UserError, match="change the dynamics.*--policy-replaying"):
        train_vae_offline.main(vae_config(tmp_path, "point_robot_wind",
                                          hindsight_relabelling=True))
    with pytest.raises(UserError, match="choose one"):
        train_vae_offline.main(vae_config(tmp_path, "point_robot_wind",
                                          hindsight_relabelling=True, policy_replaying=True))
    shutil.copytree(gridworld_data / "data/gridworld", tmp_path / "data/escape_room")
    with pytest.raises(UserError, match="collected on env-type 'gridworld', expected "
                       "'escape_room'"):
        train_vae_offline.main(vae_config(tmp_path, "escape_room"))
    with pytest.raises(UserError, match="dataset directory .* does not exist"):
        train_vae_offline.main(vae_config(tmp_path, "point_robot_sparse"))
    assert not (tmp_path / "runs/vae").exists()  # nothing partial left behind
    completed = subprocess.run(
        [sys.executable, "train_vae_offline.py", "--env-type", "point_robot_sparse",
         "--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"error: dataset directory {tmp_path}/data/point_robot_sparse/default does not exist"]


@pytest.mark.parametrize("env_type", ["cheetah_vel", "ant_semicircle_sparse"])
def test_mujoco_vae_runs_with_reward_relabelling(tmp_path, env_type):
    collect(tmp_path, env_type, "0-1", num_iters=1, num_init_rollouts_pool=1,
            num_rollouts_per_iter=1, critic_hidden_sizes=[16], policy_hidden_sizes=[16])
    config = vae_config(tmp_path, env_type, num_iters=1, tasks_batch_size=2,
                        trajs_per_task_batch=2, relabelling_fraction=1.0, eval_interval=1)
    run_dir = train_vae_offline.main(config)
    steps, losses = scalar_series(run_dir / "scalars.csv", "vae/reward_loss")
    assert steps == [1] and np.isfinite(losses[0])
    if env_type == "ant_semicircle_sparse":
        dataset = load_task_dataset(tmp_path / "data" / env_type / "default" / "task_0.npz")
        assert dataset.sparse_rewards is not None and config.use_sparse_rewards
