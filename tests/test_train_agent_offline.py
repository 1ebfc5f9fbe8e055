"""Stage 3: State Relabelling against a step-by-step encoder rollout, the hyper-state cache, the
online belief, evaluation seeds, tiny 1 -> 2 -> 3 chains, resume and bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import train_agent_offline
import train_single_agent
import train_vae_offline
from algorithms.belief_rollouts import OnlineBelief
from algorithms.state_relabelling import HyperstateCache, relabel_states
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from models.vae import VAE
from utils.config import load_config, load_saved_config
from utils.datasets import FORMAT_VERSION, TaskDataset, save_task_dataset, task_file
from utils.errors import UserError
from utils.logger import scalar_series
from utils.rollouts import collect_meta_episodes
from utils.runs import RunDirectory
from utils.stage_configs import DataCollectionConfig, OfflineConfig, VAEConfig


def small_vae(observation_dim: int = 3, action_dim: int = 2) -> VAE:
    torch.manual_seed(0)
    return VAE(observation_dim, action_dim, 3, 8, 4, 6, 2, "deterministic", ["next_state"],
               [8, 8])


def rollouts(env_type: str, num: int, episodes: int, seed: int = 0) -> tuple[TaskDataset,
                                                                             BatchedBAMDP]:
    env = make_batched_env(env_type, num)
    env.set_tasks(np.tile(env.task_from_seed(seed), (num, 1)))
    bamdp = BatchedBAMDP(env, episodes)
    rng = np.random.default_rng(seed)
    batch = collect_meta_episodes(bamdp, lambda obs: rng.uniform(-1, 1, (len(obs), 2)))
    dataset = TaskDataset(batch.observations, batch.actions, batch.rewards,
                          batch.next_observations, batch.terminations, batch.truncations,
                          batch.lengths, np.zeros(num, np.int64), env.task_from_seed(seed),
                          {"format_version": FORMAT_VERSION, "env_type": env_type})
    return dataset, bamdp


def test_hyperstates_equal_a_step_by_step_encoder_rollout():
    vae = small_vae()
    dataset, _ = rollouts("point_robot_sparse", 3, 2)
    dataset.lengths[2] = 70  # a shorter, padded trajectory
    dataset.observations[2, 70:] = 0
    relabelled = relabel_states(vae, [dataset], torch.device("cpu"))[0]
    assert relabelled.observations.shape == (3, 120, 3 + 6)
    with torch.no_grad():
        hidden, mean, log_variance = vae.encoder.prior(3)
        for step in range(120):
            belief = torch.cat([mean, log_variance], -1).numpy()
            valid = step < dataset.lengths
            expected = np.concatenate([dataset.observations[:, step], belief], -1)
            np.testing.assert_allclose(relabelled.observations[valid, step], expected[valid],
                                       atol=1e-5)
            hidden, mean, log_variance = vae.encoder.step(
                hidden, torch.as_tensor(dataset.actions[:, step]),
                torch.as_tensor(dataset.rewards[:, step]),
                torch.as_tensor(dataset.next_observations[:, step]))
            after = torch.cat([mean, log_variance], -1).numpy()
            expected_next = np.concatenate([dataset.next_observations[:, step], after], -1)
            np.testing.assert_allclose(relabelled.next_observations[valid, step],
                                       expected_next[valid], atol=1e-5)
    np.testing.assert_array_equal(relabelled.observations[2, 70:], 0.0)
    np.testing.assert_array_equal(relabelled.rewards, dataset.rewards)


def test_belief_rewards_replace_rewards_when_asked():
    vae = small_vae()
    dataset, _ = rollouts("point_robot_sparse", 2, 2)
    relabelled = relabel_states(vae, [dataset], torch.device("cpu"), belief_reward_samples=5)[0]
    assert not np.array_equal(relabelled.rewards, dataset.rewards)
    assert np.all(np.isfinite(relabelled.rewards))


def test_online_belief_equals_the_encoder_over_the_same_transitions():
    vae = small_vae()
    env = make_batched_env("point_robot_sparse", 3)
    env.set_tasks(np.stack([env.task_from_seed(seed) for seed in range(3)]))
    bamdp = BatchedBAMDP(env, 2)
    belief = OnlineBelief(vae.encoder, 3, torch.device("cpu"))
    rng = np.random.default_rng(0)
    seen = []

    def policy(observations):
        seen.append(belief.augment(observations))
        return rng.uniform(-1, 1, (3, 2))

    batch = collect_meta_episodes(bamdp, policy, belief.update)
    with torch.no_grad():
        means, log_variances = vae.encoder(torch.as_tensor(batch.actions),
                                           torch.as_tensor(batch.rewards),
                                           torch.as_tensor(batch.next_observations))
    expected = torch.cat([means, log_variances], -1).numpy()
    np.testing.assert_allclose(belief.beliefs(), expected, atol=1e-5)
    np.testing.assert_allclose(np.stack(seen, 1)[..., 3:], expected[:, :-1], atol=1e-5)


def test_cache_is_reused_while_its_sources_match(tmp_path):
    dataset, _ = rollouts("point_robot_sparse", 2, 2)
    data = tmp_path / "task_0.npz"
    checkpoint = tmp_path / "latest.pt"
    save_task_dataset(data, dataset)
    checkpoint.write_bytes(b"weights")
    cache = HyperstateCache(tmp_path / "cache")
    sources = cache.describe_sources([(0, data)], checkpoint, {"seed": 1})
    assert not cache.is_valid(sources)
    cache.store([0], [dataset], sources)
    assert cache.is_valid(sources)
    assert not cache.is_valid(cache.describe_sources([(0, data)], checkpoint, {"seed": 2}))
    os.utime(checkpoint, ns=(1, 1))
    assert not cache.is_valid(cache.describe_sources([(0, data)], checkpoint, {"seed": 2}))
    task_file(tmp_path / "cache", 0).unlink()
    assert not cache.is_valid(sources)


def test_evaluation_seeds_are_deterministic_and_disjoint():
    seeds = train_agent_offline.evaluation_seeds(list(range(10)) + [2_000_001], 5, seed=1)
    assert seeds == [2_000_000, 2_000_002, 2_000_003, 2_000_004, 2_000_005]
    goals = {tuple(make_batched_env("gridworld").task_from_seed(seed))
             for seed in train_agent_offline.evaluation_seeds([], 21, seed=73)}
    assert len(goals) == 21  # the gridworld evaluates every goal


def run_chain(tmp_path: Path, env_type: str, seeds: str, **offline) -> Path:
    common = {"runs_dir": str(tmp_path / "runs"), "data_dir": str(tmp_path / "data"),
              "use_tensorboard": False, "device": "cpu"}
    collection = load_config(DataCollectionConfig, ["--env-type", env_type],
                             config_dir="data_collection_config")
    train_single_agent.main(dataclasses.replace(
        collection, seeds=seeds, num_iters=1, num_init_rollouts_pool=2, num_rollouts_per_iter=2,
        rl_updates_per_iter=3, batch_size=16, **common))
    vae = load_config(VAEConfig, ["--env-type", env_type], config_dir="vae_config")
    train_vae_offline.main(dataclasses.replace(vae, num_iters=1, gru_hidden_size=16, **common))
    config = load_config(OfflineConfig, ["--env-type", env_type], config_dir="offline_config")
    config = dataclasses.replace(config, **{
        "num_train_tasks": None, "num_eval_tasks": 3, "num_trajs_per_task": None,
        "num_iters": 2, "rl_updates_per_iter": 3, "meta_batch": 2, "batch_size": 16,
        "log_interval": 1, "save_interval": 1, "critic_hidden_sizes": [16],
        "policy_hidden_sizes": [16], **common, **offline})
    return train_agent_offline.main(config)


@pytest.mark.parametrize(("env_type", "figures"), [
    ("gridworld", ["eval_reward_belief_task_0_step2.png", "eval_trajectory_task_0_step2.png"]),
    ("point_robot_sparse", ["eval_belief_map_task_0_step2.png",
                            "eval_reward_predictions_step2.png"]),
])
def test_tiny_chain_from_collection_to_offline_meta_rl(tmp_path, env_type, figures):
    run_dir = run_chain(tmp_path, env_type, "0-2")
    split = json.loads((run_dir / "tasks.json").read_text())
    assert split["train_seeds"] == [0, 1, 2]
    assert len(split["eval_seeds"]) == 3 and not set(split["eval_seeds"]) & {0, 1, 2}
    steps, returns = scalar_series(run_dir / "scalars.csv", "eval/return_sum")
    assert steps == [1, 2] and all(np.isfinite(returns))
    episodes = 4 if env_type == "gridworld" else 2
    _, last_episode = scalar_series(run_dir / "scalars.csv", f"eval/return_episode_{episodes}")
    assert len(last_episode) == 2
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["step"] == 2 and evaluation["seeds"] == split["eval_seeds"]
    per_task = np.array(evaluation["returns"])
    assert per_task.shape == (3, episodes) and len(evaluation["successes"]) == 3
    # the logged means are the means of the per-task returns of the same evaluation
    np.testing.assert_allclose(per_task[:, -1].mean(), last_episode[-1], rtol=1e-6)
    np.testing.assert_allclose(per_task.sum(axis=1).mean(), returns[-1], rtol=1e-6)
    for name in figures:
        assert (run_dir / "figures" / name).stat().st_size > 1000, name
    cache = tmp_path / f"runs/vae/{env_type}/default_s73/hyperstates"
    assert (cache / "manifest.json").is_file() and task_file(cache, 0).is_file()


def test_cache_reuse_rebuild_and_resume(tmp_path):
    run_dir = run_chain(tmp_path, "gridworld", "0-1")
    cache = tmp_path / "runs/vae/gridworld/default_s73/hyperstates"
    stamp = task_file(cache, 0).stat().st_mtime_ns
    config = load_saved_config_offline(run_dir)
    again = train_agent_offline.main(dataclasses.replace(config, exp_name="again"))
    assert task_file(cache, 0).stat().st_mtime_ns == stamp  # reused
    train_agent_offline.main(dataclasses.replace(config, exp_name="rebuilt",
                                                 transform_data_bamdp=True))
    assert task_file(cache, 0).stat().st_mtime_ns != stamp  # rebuilt on request
    first = dataclasses.replace(config, exp_name="resumed", num_iters=1)
    train_agent_offline.main(first)
    resumed = train_agent_offline.main(dataclasses.replace(first, num_iters=2, resume=True))
    expected = RunDirectory(again).load_checkpoint()["agent"]["q_network"]
    actual = RunDirectory(resumed).load_checkpoint()["agent"]["q_network"]
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, atol=0, rtol=0)


def load_saved_config_offline(run_dir: Path) -> OfflineConfig:
    return load_saved_config(OfflineConfig, run_dir / "config.yaml")


def test_bad_input_is_refused(tmp_path):
    run_chain(tmp_path, "point_robot_sparse", "0-1")
    config = load_saved_config_offline(
        tmp_path / "runs/offline/point_robot_sparse/default_s73")
    with pytest.raises(UserError, match=r"no vae run 'missing' .*available: default_s73"):
        train_agent_offline.main(dataclasses.replace(config, vae_run="missing"))
    shutil.copytree(tmp_path / "runs/vae/point_robot_sparse", tmp_path / "runs/vae/escape_room")
    with pytest.raises(UserError, match="was trained on 'point_robot_sparse', not 'escape_room'"):
        train_agent_offline.main(dataclasses.replace(config, env_type="escape_room"))
    with pytest.raises(UserError, match="--num-train-tasks 5 but .* holds 2 tasks"):
        train_agent_offline.main(dataclasses.replace(config, num_train_tasks=5,
                                                     exp_name="too_many"))
    collection = load_config(DataCollectionConfig, ["--env-type", "point_robot_sparse"],
                             config_dir="data_collection_config")
    train_single_agent.main(dataclasses.replace(
        collection, seed=0, num_iters=1, num_init_rollouts_pool=1, num_rollouts_per_iter=1,
        rl_updates_per_iter=1, episodes_per_task=1, overwrite=True, exp_name="flat",
        runs_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"),
        use_tensorboard=False, device="cpu"))
    with pytest.raises(UserError, match="does not fit the VAE run"):
        train_agent_offline.main(dataclasses.replace(config, exp_name="mismatch",
                                                     transform_data_bamdp=True))
