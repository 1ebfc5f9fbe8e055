"""Online off-policy VariBAD (online_training.py): buffers, belief rewards, the task split,
tiny end-to-end runs with their files and evaluation tags, and an exact resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import online_training
from algorithms.agents import make_agent
from algorithms.belief_rollouts import OnlineBelief, collect_with_belief
from algorithms.online import OnlineBuffers, policy_transitions, reward_source
from algorithms.state_relabelling import encoder_beliefs
from algorithms.vae import build_vae
from environments.bamdp import BatchedBAMDP
from environments.registry import get_spec, make_batched_env, resolve_options
from environments.toy_navigation.gridworld import goal_cells
from models.vae import VAE
from utils.config import load_config
from utils.errors import UserError
from utils.logger import read_scalars
from utils.replay import EnsembleReplayBuffer, TrajectoryBuffer
from utils.rollouts import stored_action_dim
from utils.runs import RunDirectory
from utils.seeding import evaluation_seeds
from utils.stage_configs import OnlineConfig

ROOT = Path(__file__).resolve().parent.parent
ONLINE_ENV_TYPES = ("gridworld", "point_robot_sparse", "cheetah_vel", "ant_semicircle_sparse",
                    "point_robot_wind", "escape_room", "point_robot", "ant_semicircle", "ant_dir")


def tiny_config(tmp_path: Path, env_type: str, **overrides) -> OnlineConfig:
    config = load_config(OnlineConfig, ["--env-type", env_type], config_dir="online_config")
    settings = {
        "runs_dir": str(tmp_path / "runs"), "use_tensorboard": False, "device": "cpu",
        "num_train_tasks": 3, "num_eval_tasks": 2, "num_iters": 2, "num_init_rollouts_pool": 2,
        "num_rollouts_per_iter": 2, "num_tasks_sample": 2, "rl_updates_per_iter": 3,
        "vae_updates_per_iter": 2, "meta_batch": 2, "batch_size": 16,
        "critic_hidden_sizes": [16], "policy_hidden_sizes": [16], "gru_hidden_size": 16,
        "log_interval": 1, "save_interval": 1}
    return dataclasses.replace(config, **{**settings, **overrides})


def small_vae(observation_dim: int = 3, action_dim: int = 2) -> VAE:
    torch.manual_seed(0)
    return VAE(observation_dim, action_dim, 3, 8, 4, 6, 2, "deterministic", ["next_state"],
               [8, 8])


# ------------------------------------------------------------------------------------ buffers
def test_trajectory_buffer_keeps_the_last_trajectories_of_each_task_and_grows():
    buffer = TrajectoryBuffer(2, capacity=5, trajectory_len=3, dims={"rewards": 1},
                              initial_capacity=1)
    rewards = np.arange(7, dtype=np.float32)[:, None, None].repeat(3, axis=1)
    buffer.add({"rewards": rewards}, np.full(7, 3), np.array([0, 0, 0, 0, 0, 0, 1]))
    assert buffer.allocated == 5 and buffer.sizes.tolist() == [5, 1]
    oldest_first = buffer.gather(np.zeros(5, np.int64), buffer.ordered_slots(0))
    assert oldest_first["rewards"][:, 0, 0].tolist() == [1, 2, 3, 4, 5]  # 0 was overwritten
    assert buffer.gather(np.array([1]), np.array([0]))["rewards"][0, 0, 0] == 6
    copy = TrajectoryBuffer(2, capacity=5, trajectory_len=3, dims={"rewards": 1})
    copy.load_state_dict(buffer.state_dict())
    for task in (0, 1):
        np.testing.assert_array_equal(copy.gather(np.full(5, task), np.arange(5))["rewards"],
                                      buffer.gather(np.full(5, task), np.arange(5))["rewards"])
    np.testing.assert_array_equal(copy.positions, buffer.positions)


def test_growing_replay_buffer_stores_and_samples_as_a_preallocated_one():
    dims = {"observations": 2, "actions": 1, "rewards": 1, "next_observations": 2,
            "terminations": 1}
    rng = np.random.default_rng(0)
    grown = EnsembleReplayBuffer(2, 50, dims, initial_capacity=4)
    full = EnsembleReplayBuffer(2, 50, dims)
    for _ in range(5):  # member 0 receives 55 transitions: it wraps around after growing
        arrays = {name: rng.normal(size=(3, 6, dim)).astype(np.float32)
                  for name, dim in dims.items()}
        lengths, members = np.array([6, 4, 5]), np.array([0, 1, 0])
        grown.add_trajectories(arrays, lengths, members)
        full.add_trajectories(arrays, lengths, members)
    assert grown.allocated == 50 and grown.sizes.tolist() == [50, 20]
    first = grown.sample(7, torch.Generator().manual_seed(3))
    second = full.sample(7, torch.Generator().manual_seed(3))
    for name in dims:
        torch.testing.assert_close(first[name], second[name], atol=0, rtol=0)
    restored = EnsembleReplayBuffer(2, 50, dims, initial_capacity=1)
    restored.load_state_dict(full.state_dict())
    again = restored.sample(7, torch.Generator().manual_seed(3))
    for name in dims:
        torch.testing.assert_close(again[name], second[name], atol=0, rtol=0)


# ------------------------------------------------------------------------------------ tasks
def test_held_out_gridworld_goals_are_the_goals_not_trained_on():
    env = make_batched_env("gridworld")
    train_tasks = np.stack([env.task_from_seed(seed) for seed in range(16)])
    seeds = evaluation_seeds(list(range(16)), 5, 73, env.task_from_seed, train_tasks)
    held_out = {tuple(env.task_from_seed(seed)) for seed in seeds}
    assert held_out == {tuple(goal) for goal in goal_cells(5)} - {tuple(t) for t in train_tasks}
    with pytest.raises(UserError, match="cannot find 6 evaluation tasks"):
        evaluation_seeds(list(range(16)), 6, 73, env.task_from_seed, train_tasks)


# ------------------------------------------------------------------------------------ rewards
def test_reward_source_follows_the_switch_iteration():
    assert reward_source(False, False, None, 5) == "reward"
    assert reward_source(True, False, None, 0) == "belief"
    assert reward_source(True, True, 3, 2) == "reward"
    assert reward_source(True, True, 3, 3) == "oracle"


def test_stored_hyperstates_hold_the_collection_beliefs_and_recompute_uses_the_current_vae():
    vae = small_vae()
    bamdp = BatchedBAMDP(make_batched_env("point_robot_sparse", 2), 2)
    bamdp.set_tasks(np.stack([bamdp.env.task_from_seed(seed) for seed in range(2)]))
    belief = OnlineBelief(vae.encoder, 2, torch.device("cpu"))
    rng = np.random.default_rng(0)
    rollout, beliefs = collect_with_belief(bamdp, belief, lambda hyper: rng.uniform(-1, 1,
                                                                                      (2, 2)))
    assert beliefs.shape == (2, 121, 6)
    buffers = OnlineBuffers(2, 120, 3, 2, 3, 1000, 1000, torch.device("cpu"), oracle=False,
                            keep_policy_trajectories=True)
    generator = torch.Generator().manual_seed(0)
    transitions = policy_transitions(vae, vars(rollout), rollout.lengths,
                                     torch.as_tensor(beliefs), "reward", 1, generator, None,
                                     goal_is_terminal=False)
    buffers.add(rollout, transitions, np.array([0, 1]))
    stored = buffers.policy.storage
    np.testing.assert_array_equal(stored["observations"][1, :120, 3:].numpy(), beliefs[1, :-1])
    np.testing.assert_array_equal(stored["next_observations"][1, :120, 3:].numpy(),
                                  beliefs[1, 1:])
    np.testing.assert_array_equal(stored["rewards"][0, :120].numpy(), rollout.rewards[0])
    # the successor of the first episode's last step is the second episode's start state
    next_states = stored["next_observations"][1, :120, :3].numpy()
    np.testing.assert_array_equal(next_states[59], rollout.observations[1, 60])
    assert next_states[59, 2] == 0.0 and rollout.next_observations[1, 59, 2] == 1.0
    np.testing.assert_array_equal(next_states[:59], rollout.next_observations[1, :59])
    np.testing.assert_array_equal(next_states[119], rollout.next_observations[1, 119])

    with torch.no_grad():  # a VAE update changes the encoder; recompute follows it
        for parameter in vae.encoder.parameters():
            parameter.add_(0.1)
    buffers.rebuild_policy(vae, "belief", 4, generator, None, False, torch.device("cpu"))
    expected = encoder_beliefs(vae, *(torch.as_tensor(getattr(rollout, name)) for name in (
        "actions", "rewards", "next_observations"))).numpy()
    np.testing.assert_allclose(stored["observations"][1, :120, 3:].numpy(), expected[1, :-1],
                               atol=1e-6)
    assert not np.allclose(expected[1, :-1], beliefs[1, :-1])
    assert buffers.policy.sizes.tolist() == [120, 120]


def test_belief_reward_is_the_decoders_expected_reward():
    vae = small_vae()
    with torch.no_grad():  # a decoder whose prediction is 0.7 whatever z and s'
        last = vae.reward_decoder.network.rest[-1]
        last.weight.zero_()
        last.bias.fill_(0.7)
    arrays = {"observations": np.zeros((2, 4, 3), np.float32),
              "actions": np.zeros((2, 4, 2), np.float32), "rewards": np.zeros((2, 4, 1)),
              "next_observations": np.ones((2, 4, 3), np.float32),
              "terminations": np.zeros((2, 4, 1), np.float32),
              "truncations": np.zeros((2, 4, 1), np.float32),
              "successes": np.zeros((2, 4, 1), np.float32)}
    beliefs = torch.randn(2, 5, 6)
    transitions = policy_transitions(vae, arrays, np.array([4, 4]), beliefs, "belief", 8,
                                     torch.Generator().manual_seed(0), None, False)
    np.testing.assert_allclose(transitions["rewards"], 0.7, atol=1e-6)


@pytest.mark.parametrize(("goal_is_terminal", "expected"), [(True, [0, 1, 1, 1]),
                                                              (False, [0, 0, 0, 1])])
def test_goal_steps_are_td_terminals_only_when_asked(goal_is_terminal, expected):
    steps = np.zeros((1, 4, 1), np.float32)
    arrays = {"observations": np.zeros((1, 4, 3), np.float32),
              "actions": np.zeros((1, 4, 2), np.float32), "rewards": steps,
              "next_observations": np.zeros((1, 4, 3), np.float32),
              "terminations": np.array([0, 1, 1, 1], np.float32).reshape(1, 4, 1),
              "truncations": steps, "successes": np.array([0, 1, 1, 0],
                                                          np.float32).reshape(1, 4, 1)}
    transitions = policy_transitions(small_vae(), arrays, np.array([4]), torch.zeros(1, 5, 6),
                                     "reward", 1, torch.Generator(), None, goal_is_terminal)
    assert transitions["terminations"][0, :, 0].tolist() == expected  # step 3: a fall


def exact_gridworld_belief_rewards(next_observations: np.ndarray, goal: np.ndarray
                                   ) -> np.ndarray:
    """(1 - 0.1 (n - 1)) / n along one meta-episode, n = goal cells not yet ruled out."""
    candidates = {tuple(cell) for cell in goal_cells(5)}
    rewards = []
    for cell in map(tuple, np.rint(next_observations[:, :2])):
        candidates = {cell} if cell == tuple(goal) else candidates - {cell}
        rewards.append((1 - 0.1 * (len(candidates) - 1)) / len(candidates))
    return np.array(rewards)


def test_gridworld_oracle_belief_rewards_reach_the_policy_buffer(tmp_path):
    config = tiny_config(tmp_path, "gridworld", num_iters=1, belief_rewards=True,
                         oracle_belief_rewards=True)
    run_dir = online_training.main(config)
    buffers = RunDirectory(run_dir).load_checkpoint()["buffers"]
    trajectories, policy = buffers["vae"], buffers["policy"]
    goal = np.array(json.loads((run_dir / "tasks.json").read_text())["train_tasks"][0])
    count = int(trajectories["sizes"][0])
    expected = np.concatenate([exact_gridworld_belief_rewards(
        trajectories["storage"]["next_observations"][0, index].numpy(), goal)
        for index in range(count)])
    stored = policy["storage"]["rewards"][0, : 60 * count, 0].numpy()
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    assert not np.allclose(stored, trajectories["storage"]["rewards"][0, :count].numpy().ravel())


def test_learned_belief_rewards_start_at_the_switch_iteration(tmp_path):
    config = tiny_config(tmp_path, "point_robot_sparse", num_train_tasks=2, num_tasks_sample=2,
                         num_rollouts_per_iter=1, num_init_rollouts_pool=1, num_iters=2,
                         belief_rewards=True, switch_to_belief_reward=1)
    run_dir = online_training.main(config)
    buffers = RunDirectory(run_dir).load_checkpoint()["buffers"]
    rewards = buffers["policy"]["storage"]["rewards"][..., 0].numpy()
    true_rewards = buffers["vae"]["storage"]["rewards"][..., 0].numpy()
    assert buffers["vae"]["sizes"].tolist() == [3, 3]
    for task in range(2):  # the random pool and iteration 0 keep r; iteration 1 stores R+
        for index in range(3):
            stored = rewards[task, 120 * index : 120 * (index + 1)]
            if index < 2:
                np.testing.assert_array_equal(stored, true_rewards[task, index])
            else:
                assert not np.isin(stored, (0.0, 1.0)).all() and np.all(np.isfinite(stored))


# ------------------------------------------------------------------------------------ runs
@pytest.mark.parametrize(("env_type", "episodes", "figures"), [
    ("gridworld", 4, ["eval_reward_belief_task_0_step2.png", "eval_trajectory_task_1_step2.png",
                      "eval_reward_predictions_step2.png"]),
    ("point_robot_sparse", 2, ["eval_belief_map_task_0_step2.png",
                               "eval_trajectory_task_0_step2.png",
                               "eval_reward_predictions_step1.png"]),
])
def test_tiny_online_run_writes_its_files_and_evaluation_tags(tmp_path, env_type, episodes,
                                                             figures):
    run_dir = online_training.main(tiny_config(tmp_path, env_type, num_eval_train_tasks=3))
    assert run_dir == tmp_path / "runs" / "online" / env_type / "default_s73"
    for name in ("config.yaml", "meta.json", "tasks.json", "model.json", "scalars.csv",
                 "checkpoints/latest.pt", "checkpoints/step_1.pt", "checkpoints/step_2.pt"):
        assert (run_dir / name).is_file(), name
    for name in figures:
        assert (run_dir / "figures" / name).stat().st_size > 1000, name
    split = json.loads((run_dir / "tasks.json").read_text())
    assert split["train_seeds"] == [0, 1, 2] and len(split["eval_seeds"]) == 2
    assert split["evaluated_train_seeds"] == [0, 1, 2]
    assert not {tuple(task) for task in split["eval_tasks"]} & {
        tuple(task) for task in split["train_tasks"]}
    rows = read_scalars(run_dir / "scalars.csv")
    tags = {tag for _, tag, _ in rows}
    evaluation = [f"return_episode_{k}" for k in range(1, episodes + 1)] + [
        "return_sum", "success_rate"]
    for name in evaluation:
        assert f"eval/{name}" in tags and f"eval/train_{name}" in tags, name
    assert f"eval/return_episode_{episodes + 1}" not in tags
    assert {"vae/loss", "vae/reward_loss", "vae/kl", "train/environment_steps",
            "time/seconds_per_iteration"} <= tags
    assert ("train/q_loss" in tags) == (env_type == "gridworld")
    assert ("train/epsilon" in tags) == (env_type == "gridworld")
    assert ("train/policy_loss" in tags) == (env_type == "point_robot_sparse")
    assert sorted({step for step, tag, _ in rows if tag == "eval/return_sum"}) == [1, 2]
    assert all(np.isfinite(value) for _, _, value in rows)
    steps = dict((step, value) for step, tag, value in rows if tag == "train/environment_steps")
    trajectory_len = 60 if env_type == "gridworld" else 120
    assert steps[1] == (3 * 2 + 2 * 2) * trajectory_len  # random pool + one iteration
    checkpoint = RunDirectory(run_dir).load_checkpoint("step_2.pt")
    assert {"agent", "trainer"} <= set(checkpoint) and "buffers" not in checkpoint


@pytest.mark.parametrize(("env_type", "options"), [
    ("point_robot_sparse", {"belief_rewards": True, "recompute_beliefs": True}),
    ("gridworld", {"belief_rewards": True, "oracle_belief_rewards": True}),
])
def test_resume_continues_exactly(tmp_path, env_type, options):
    whole = online_training.main(tiny_config(tmp_path, env_type, num_iters=3, log_interval=2,
                                             exp_name="whole", **options))
    first = tiny_config(tmp_path, env_type, num_iters=3, log_interval=2, exp_name="resumed",
                        save_interval=2, **options)
    online_training.main(dataclasses.replace(first, num_iters=2))
    resumed = online_training.main(dataclasses.replace(first, resume=True))
    expected, actual = (RunDirectory(path).load_checkpoint() for path in (whole, resumed))
    for part in ("agent", "trainer"):
        for name, value in expected[part].items():
            if isinstance(value, dict) and name.endswith("optimizer"):
                continue
            if isinstance(value, dict):
                for key, tensor in value.items():
                    torch.testing.assert_close(actual[part][name][key], tensor, atol=0, rtol=0)
    for name, value in expected["buffers"]["policy"]["storage"].items():
        torch.testing.assert_close(actual["buffers"]["policy"]["storage"][name], value,
                                   atol=0, rtol=0)

    def logged(path: Path) -> list:
        return [row for row in read_scalars(path / "scalars.csv")
                if not row[1].startswith("time/")]

    assert logged(whole) == logged(resumed)


# ------------------------------------------------------------------------------------ input
def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(UserError, match="needs --belief-rewards true"):
        online_training.main(tiny_config(tmp_path, "gridworld", belief_rewards=False,
                                         oracle_belief_rewards=True))
    with pytest.raises(UserError, match="needs an env with an exact belief"):
        online_training.main(tiny_config(tmp_path, "point_robot_sparse", belief_rewards=True,
                                         oracle_belief_rewards=True))
    with pytest.raises(UserError, match="cannot find 6 evaluation tasks"):
        online_training.main(tiny_config(tmp_path, "gridworld", num_train_tasks=16,
                                         num_eval_tasks=6))
    with pytest.raises(UserError, match="--num-eval-train-tasks must be at least 1"):
        online_training.main(tiny_config(tmp_path, "gridworld", num_eval_train_tasks=0))
    with pytest.raises(UserError, match="--num-init-rollouts-pool must be at least 1"):
        online_training.main(tiny_config(tmp_path, "gridworld", num_init_rollouts_pool=0))
    with pytest.raises(UserError, match="--algorithm sac does not fit"):
        online_training.main(tiny_config(tmp_path, "gridworld", algorithm="sac"))
    with pytest.raises(UserError, match="multi-head reward decoder needs a grid"):
        online_training.main(tiny_config(tmp_path, "point_robot_sparse",
                                         reward_decoder="multihead_bernoulli"))
    run_dir = online_training.main(tiny_config(tmp_path, "gridworld", num_iters=0))
    assert RunDirectory(run_dir).load_checkpoint()["iteration"] == 0  # the random pool only
    with pytest.raises(UserError, match="already exists"):
        online_training.main(tiny_config(tmp_path, "gridworld", num_iters=0))


@pytest.mark.parametrize("env_type", ONLINE_ENV_TYPES)
def test_every_online_config_builds_its_env_vae_and_agent(env_type):
    assert (ROOT / "online_config" / f"{env_type}.yaml").is_file()
    config = load_config(OnlineConfig, ["--env-type", env_type], config_dir="online_config")
    options = resolve_options(env_type, config.environment_options())
    bamdp = BatchedBAMDP(make_batched_env(env_type, 1, options),
                         config.episodes_per_task or get_spec(env_type).episodes_per_task)
    multihead = config.reward_decoder == "multihead_bernoulli"
    action_dim = stored_action_dim(bamdp.action_space)
    vae = build_vae(config, bamdp.observation_dim, action_dim, bamdp.env.task_dim,
                    bamdp.env.num_states if multihead else None)
    agent = make_agent(config, 1, bamdp.observation_dim + 2 * config.latent_dim,
                       bamdp.action_space, torch.device("cpu"))
    assert vae.encoder.latent_dim == config.latent_dim and agent.num_members == 1
    assert config.num_train_tasks + config.num_eval_tasks <= 120
    make_batched_env(env_type, 1, resolve_options(
        env_type, config.environment_options(evaluation=True))).close()
    bamdp.close()
