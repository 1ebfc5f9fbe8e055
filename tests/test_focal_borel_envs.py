"""FOCAL on BOReL's env-types: BOReL's k-episode evaluation protocol (online context: z = 0 in
inner episode 1, then z from the meta-episode's own transitions; offline context: one fixed z), and
launch_focal.py end to end on tiny stage-1 collections of the gridworld (Discrete actions) and the
semi-circle (Box actions)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import launch_focal
import train_single_agent
from algorithms.focal import FOCAL, FocalHyperparameters
from algorithms.focal_data import OfflineTaskData, context_transitions, split_tasks
from algorithms.focal_discrete import DiscreteFOCAL
from algorithms.focal_meta_evaluation import MetaEpisodeEvaluator
from environments.bamdp import BatchedBAMDP
from environments.registry import get_spec, make_batched_env
from utils.config import load_config
from utils.datasets import FORMAT_VERSION, TaskDataset, save_task_dataset, task_file
from utils.errors import UserError
from utils.logger import read_scalars
from utils.rollouts import collect_meta_episodes
from utils.stage_configs import DataCollectionConfig, FocalConfig


def write_random_bamdp_datasets(data_dir: Path, env_type: str, seeds: range,
                                num_trajectories: int = 4) -> Path:
    """Uniform-random meta-episodes of a BOReL env-type (k inner episodes), saved as stage 1."""
    spec = get_spec(env_type)
    directory = data_dir / env_type / "default"
    for seed in seeds:
        env = BatchedBAMDP(make_batched_env(env_type, num_trajectories), spec.episodes_per_task)
        task = env.env.task_from_seed(seed)
        env.set_tasks(np.tile(task, (num_trajectories, 1)))
        env.seed(range(num_trajectories))
        rng = np.random.default_rng(seed)
        if hasattr(env.action_space, "n"):
            def policy(observations, rng=rng, count=int(env.action_space.n)):
                return rng.integers(0, count, len(observations))
        else:
            def policy(observations, rng=rng, width=env.action_space.shape[0]):
                return rng.uniform(-1, 1, (len(observations), width)).astype(np.float32)
        batch = collect_meta_episodes(env, policy)
        save_task_dataset(task_file(directory, seed), TaskDataset(
            observations=batch.observations, actions=batch.actions, rewards=batch.rewards,
            next_observations=batch.next_observations, terminations=batch.terminations,
            truncations=batch.truncations, lengths=batch.lengths,
            training_steps=np.arange(num_trajectories, dtype=np.int64), task=task,
            meta={"format_version": FORMAT_VERSION, "env_type": env_type, "seed": seed,
                  "episodes_per_task": spec.episodes_per_task,
                  "max_episode_steps": env.max_episode_steps},
            sparse_rewards=batch.sparse_rewards))
    return directory


def tiny_setup(tmp_path: Path, env_type: str, episodes_per_task: int | None = None
               ) -> tuple[MetaEpisodeEvaluator, DiscreteFOCAL | FOCAL, OfflineTaskData]:
    directory = write_random_bamdp_datasets(tmp_path / "data", env_type, range(3))
    data = OfflineTaskData.load(split_tasks(directory, 2, 1), env_type, "all", None, False,
                                False, False, "cpu")
    evaluator = MetaEpisodeEvaluator(env_type, {}, data, 2, [2],
                                     episodes_per_task or get_spec(env_type).episodes_per_task,
                                     None, seed=0)
    torch.manual_seed(0)
    agent_class = DiscreteFOCAL if hasattr(evaluator.action_space, "n") else FOCAL
    focal = agent_class(data.observation_dim, data.action_dim, data.transition_dim,
                        FocalHyperparameters(latent_size=3, net_size=8,
                                             context_hidden_sizes=[8]))
    return evaluator, focal, data


def recorded_latents(focal) -> list[torch.Tensor]:
    """Make ``focal.act`` record the z it is called with, one entry per step."""
    seen: list[torch.Tensor] = []
    original = focal.act
    focal.act = lambda states, latents, deterministic=True: (
        seen.append(latents.clone()), original(states, latents, deterministic))[1]
    return seen


@pytest.mark.parametrize("env_type", ["gridworld", "point_robot_sparse"])
def test_online_context_uses_the_prior_in_episode_1_then_the_meta_episodes_own_transitions(
        tmp_path, env_type):
    evaluator, focal, _ = tiny_setup(tmp_path, env_type)
    seen = recorded_latents(focal)
    rollout = evaluator.online_context_rollout(focal)
    k, horizon = evaluator.episodes_per_task, evaluator.env.max_episode_steps
    assert len(seen) == k * horizon and rollout.lengths.tolist() == [k * horizon]
    context = context_transitions(*[torch.as_tensor(values) for values in (
        rollout.observations, rollout.actions, rollout.rewards, rollout.next_observations)],
        use_next_observations=False)
    for episode in range(k):
        steps = seen[episode * horizon: (episode + 1) * horizon]
        if episode == 0:
            expected = torch.zeros(1, 3)  # the prior: empty context
        else:  # every transition of the earlier inner episodes of this meta-episode
            expected = focal.encoder(context[:, : episode * horizon]).detach()
            assert torch.count_nonzero(expected) > 0
        for latents in steps:
            torch.testing.assert_close(latents, expected)


def test_offline_context_fixes_z_from_one_meta_episode_of_offline_data(tmp_path):
    evaluator, focal, data = tiny_setup(tmp_path, "gridworld")
    seen = recorded_latents(focal)
    evaluator.offline_context_rollout(focal)
    generator = torch.Generator().manual_seed(0)
    expected = focal.encoder(data.sample_context(torch.tensor([2]), 60, generator)).detach()
    assert len(seen) == 60 and torch.count_nonzero(expected) > 0
    for latents in seen:
        torch.testing.assert_close(latents, expected)


@pytest.mark.parametrize("env_type", ["gridworld", "point_robot_sparse"])
def test_both_rollouts_call_the_observer_after_every_step(tmp_path, env_type):
    # sim_policy records video frames through this hook.
    evaluator, focal, _ = tiny_setup(tmp_path, env_type)
    for rollout in (evaluator.online_context_rollout, evaluator.offline_context_rollout):
        calls = []
        batch = rollout(focal, lambda actions, result, calls=calls: calls.append(
            (actions.copy(), result.rewards.copy())))
        assert len(calls) == batch.lengths[0] == evaluator.env.trajectory_len
        np.testing.assert_array_equal(np.concatenate([rewards for _, rewards in calls]),
                                      batch.rewards[0, :, 0])


def test_evaluation_rejects_data_of_another_episode_count(tmp_path):
    with pytest.raises(UserError, match="holds meta-episodes of 4 x 15 steps, but the "
                                        "evaluation plays 2 x 15"):
        tiny_setup(tmp_path, "gridworld", episodes_per_task=2)


TINY_COLLECTION = {
    "num_iters": 2, "num_init_rollouts_pool": 3, "num_rollouts_per_iter": 2,
    "rl_updates_per_iter": 4, "batch_size": 16, "log_interval": 1, "save_interval": 1,
    "use_tensorboard": False, "device": "cpu", "seeds": "0-5",
}
TINY_FOCAL = {
    "num_train_tasks": 4, "num_eval_tasks": 2, "num_trajs_per_task": None, "meta_batch": 4,
    "batch_size": 8, "embedding_batch_size": 8, "net_size": 16, "context_hidden_sizes": [16],
    "num_iterations": 2, "num_train_steps_per_itr": 3, "log_interval": 1, "save_interval": 1,
    "num_embedding_contexts": 3, "device": "cpu", "use_tensorboard": False,
}


@pytest.mark.parametrize(("env_type", "agent_network"), [("gridworld", "behaviour"),
                                                         ("point_robot_sparse", "dual_critic")])
def test_stage_1_collection_then_focal_end_to_end(tmp_path, env_type, agent_network):
    folders = {"data_dir": str(tmp_path / "data"), "runs_dir": str(tmp_path / "runs")}
    collection = load_config(DataCollectionConfig, ["--env-type", env_type],
                             config_dir="data_collection_config")
    collection = dataclasses.replace(collection, **TINY_COLLECTION, **folders)
    if collection.critic_hidden_sizes[0] > 32:
        collection = dataclasses.replace(collection, critic_hidden_sizes=[32, 32],
                                         policy_hidden_sizes=[32, 32])
    train_single_agent.main(collection)
    config = load_config(FocalConfig, ["--env-type", env_type], config_dir="configs")
    run_dir = launch_focal.main(dataclasses.replace(config, **TINY_FOCAL, **folders))

    spec = get_spec(env_type)
    k, horizon = spec.episodes_per_task, spec.options["max_episode_steps"]
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["step"] == 2 and evaluation["task_seeds"] == [4, 5]
    assert np.array(evaluation["tasks"]).shape == (2, 2)
    for protocol in ("online_context", "offline_context"):
        returns = np.array(evaluation[protocol])
        assert returns.shape == (2, k)
        if env_type == "gridworld":  # -0.1 per step off the goal, +1 on it
            assert np.all(returns >= -0.1 * horizon - 1e-5) and np.all(returns <= horizon)
        else:  # +1 per step within the goal radius
            assert np.all(returns >= 0) and np.all(returns <= horizon)
        assert len(evaluation[f"{protocol}_success"]) == 2

    tags = {tag for _, tag, _ in read_scalars(run_dir / "scalars.csv")}
    expected = {f"eval/{prefix}return_episode_{episode}" for prefix in ("", "offline_context_")
                for episode in range(1, k + 1)}
    expected |= {"eval/return_sum", "eval/success_rate", "eval/offline_context_return_sum",
                 "eval/offline_context_success_rate", "eval/embedding_rms", "focal/q_loss"}
    assert expected <= tags
    assert not {f"eval/return_episode_{k + 1}", "eval/test_return"} & tags
    final = [(step, value) for step, tag, value in read_scalars(run_dir / "scalars.csv")
             if tag == "eval/return_sum"][-1]
    assert final == (2, pytest.approx(np.array(evaluation["online_context"]).sum(axis=1).mean()))

    progress = (run_dir / "progress.csv").read_text().splitlines()
    assert len(progress) == 3
    assert f"AverageReturn_offline_context_episode{k}_all_test_tasks" in progress[0]
    figures = {path.name for path in (run_dir / "figures").iterdir()}
    assert {"eval_task_embeddings_step2.png",
            "eval_trajectory_test_task_0_online_context_step2.png",
            "eval_trajectory_test_task_0_offline_context_step2.png"} <= figures
    checkpoint = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert agent_network in checkpoint["focal"]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["evaluation_protocol"] == "meta_episodes"
    assert meta["task_split"]["eval_seeds"] == [4, 5]
