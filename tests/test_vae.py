"""The belief model: shapes and the prior, the closed-form KL, the vectorised ELBO against a loop
reference, Reward Relabelling and Policy Replaying, and task separation on a toy dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from algorithms.relabelling import (
    check_relabelling_possible,
    episode_bounds,
    policy_replaying,
    reward_relabelling,
)
from algorithms.vae import VAETrainer, reward_predictions
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from models.decoder import PairwiseMLP
from models.vae import VAE, gaussian_kl
from utils.batches import TrajectoryBatches, epoch_schedule
from utils.datasets import FORMAT_VERSION, TaskDataset, validate_task_dataset
from utils.errors import UserError
from utils.rollouts import collect_meta_episodes

OBSERVATION_DIM, ACTION_DIM = 3, 2


def make_vae(decoder: str = "deterministic", inputs=("next_state", "action", "state"),
             decode_state: bool = True, num_states: int | None = None,
             observation_dim: int = OBSERVATION_DIM, action_dim: int = ACTION_DIM) -> VAE:
    torch.manual_seed(0)
    return VAE(observation_dim, action_dim, latent_dim=4, gru_hidden_size=8,
               action_embedding_size=3, state_embedding_size=5, reward_embedding_size=2,
               reward_decoder=decoder, reward_decoder_inputs=inputs,
               reward_decoder_hidden_sizes=[6, 6], decode_state=decode_state,
               state_decoder_hidden_sizes=[6], task_dim=2, num_states=num_states)


def random_batch(batch_size: int = 3, horizon: int = 5, binary: bool = False,
                 num_states: int | None = None) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    rewards = torch.randn(batch_size, horizon, 1, generator=generator)
    if binary:
        rewards = (rewards > 0).float() * 1.1 - 0.1  # +1 or -0.1, like the gridworld
    batch = {
        "observations": torch.randn(batch_size, horizon, OBSERVATION_DIM, generator=generator),
        "actions": torch.randn(batch_size, horizon, ACTION_DIM, generator=generator),
        "rewards": rewards,
        "next_observations": torch.randn(batch_size, horizon, OBSERVATION_DIM,
                                         generator=generator),
        "lengths": torch.tensor([horizon, horizon - 2, 1])[:batch_size],
        "tasks": torch.randn(batch_size, 2, generator=generator),
    }
    if num_states:
        batch["cells"] = torch.randint(num_states, (batch_size, horizon), generator=generator)
    return batch


def test_encoder_shapes_prior_and_online_steps_agree():
    vae = make_vae()
    batch = random_batch()
    means, log_variances = vae.encoder(batch["actions"], batch["rewards"],
                                       batch["next_observations"])
    assert means.shape == log_variances.shape == (3, 6, 4)
    hidden, prior_mean, prior_log_variance = vae.encoder.prior(3)
    torch.testing.assert_close(means[:, 0], prior_mean)
    torch.testing.assert_close(prior_mean[0], vae.encoder.mean_head.bias)
    torch.testing.assert_close(log_variances[:, 0], prior_log_variance)
    for step in range(5):
        hidden, mean, log_variance = vae.encoder.step(
            hidden, batch["actions"][:, step], batch["rewards"][:, step],
            batch["next_observations"][:, step])
        torch.testing.assert_close(mean, means[:, step + 1], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(log_variance, log_variances[:, step + 1], atol=1e-6,
                                   rtol=1e-5)


def test_decoder_output_shapes():
    vae = make_vae(decoder="multihead_bernoulli", num_states=25)
    batch = random_batch(num_states=25)
    latents = torch.randn(3, 6, 4)
    pairs = vae.reward_decoder.all_pairs(latents, batch["observations"], batch["actions"],
                                         batch["next_observations"], batch["cells"])
    assert pairs.shape == (3, 6, 5)
    assert vae.reward_decoder.cell_probabilities(latents).shape == (3, 6, 25)
    assert vae.state_decoder.all_pairs(latents, batch["observations"],
                                       batch["actions"]).shape == (3, 6, 5, OBSERVATION_DIM)


def test_pairwise_mlp_equals_the_mlp_on_concatenated_inputs():
    torch.manual_seed(0)
    network = PairwiseMLP(4, 7, [6, 5], 2)
    latents, features = torch.randn(2, 3, 4), torch.randn(2, 5, 7)
    reference = torch.nn.Sequential(torch.nn.Linear(11, 6), torch.nn.ReLU(), *network.rest)
    with torch.no_grad():
        reference[0].weight.copy_(torch.cat([network.latent_layer.weight,
                                             network.feature_layer.weight], dim=1))
        reference[0].bias.copy_(network.latent_layer.bias)
    expected = reference(torch.cat([latents[:, :, None].expand(-1, -1, 5, -1),
                                    features[:, None].expand(-1, 3, -1, -1)], dim=-1))
    torch.testing.assert_close(network(latents, features), expected)


def test_kl_equals_the_closed_form():
    generator = torch.Generator().manual_seed(0)
    mean, prior_mean = torch.randn(4, 5, generator=generator), torch.randn(4, 5,
                                                                           generator=generator)
    log_variance, prior_log_variance = (torch.randn(4, 5, generator=generator),
                                        torch.randn(4, 5, generator=generator))
    expected = kl_divergence(Normal(mean, (0.5 * log_variance).exp()),
                             Normal(prior_mean, (0.5 * prior_log_variance).exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(mean, log_variance, prior_mean, prior_log_variance),
                               expected)


def loop_reference(vae: VAE, batch: dict[str, torch.Tensor], seed: int, to_prior: bool
                   ) -> dict[str, torch.Tensor]:
    """The ELBO terms computed one latent and one transition at a time."""
    batch_size, horizon = batch["rewards"].shape[:2]
    hidden, mean, log_variance = vae.encoder.prior(batch_size)
    means, log_variances = [mean], [log_variance]
    for step in range(horizon):
        hidden, mean, log_variance = vae.encoder.step(
            hidden, batch["actions"][:, step], batch["rewards"][:, step],
            batch["next_observations"][:, step])
        means.append(mean)
        log_variances.append(log_variance)
    means, log_variances = torch.stack(means, 1), torch.stack(log_variances, 1)
    noise = torch.randn(means.shape, generator=torch.Generator().manual_seed(seed))
    latents = means + (0.5 * log_variances).exp() * noise
    decoder = vae.reward_decoder
    terms = {name: torch.zeros(batch_size) for name in ("reward", "state", "kl", "task")}
    for index in range(batch_size):
        length = int(batch["lengths"][index])
        for latent_step in range(length + 1):
            latent = latents[index, latent_step]
            previous = (torch.zeros(4), torch.zeros(4)) if latent_step == 0 or to_prior else (
                means[index, latent_step - 1], log_variances[index, latent_step - 1])
            terms["kl"][index] += kl_divergence(
                Normal(means[index, latent_step], (0.5 * log_variances[index, latent_step]).exp()),
                Normal(previous[0], (0.5 * previous[1]).exp())).sum()
            terms["task"][index] += ((vae.task_decoder(latent) - batch["tasks"][index]) ** 2).sum()
            for step in range(length):
                cells = batch["cells"][index, step] if "cells" in batch else None
                prediction = decoder.aligned(
                    latent, batch["observations"][index, step], batch["actions"][index, step],
                    batch["next_observations"][index, step], cells)
                reward = batch["rewards"][index, step, 0]
                if decoder.is_bernoulli:
                    target = (reward == 1.0).float()
                    terms["reward"][index] += torch.nn.functional.binary_cross_entropy_with_logits(
                        prediction, target)
                else:
                    terms["reward"][index] += (prediction - reward) ** 2
                if vae.state_decoder is not None:
                    predicted = vae.state_decoder.aligned(
                        latent, batch["observations"][index, step], batch["actions"][index, step])
                    terms["state"][index] += ((predicted - batch["next_observations"][index, step])
                                              ** 2).sum()
    return terms


@pytest.mark.parametrize(
    ("decoder", "inputs", "decode_state", "to_prior"),
    [("deterministic", ("next_state", "action", "state"), True, False),
     ("deterministic", ("next_state",), False, True),
     ("deterministic", (), False, False),
     ("bernoulli", ("action", "state"), True, False),
     ("multihead_bernoulli", (), False, False)],
)
def test_vectorised_elbo_equals_a_loop_reference(decoder, inputs, decode_state, to_prior):
    num_states = 25 if decoder == "multihead_bernoulli" else None
    vae = make_vae(decoder, inputs, decode_state, num_states)
    batch = random_batch(binary=decoder != "deterministic", num_states=num_states)
    terms = vae.loss_terms(batch, kl_to_gauss_prior=to_prior,
                           generator=torch.Generator().manual_seed(7))
    reference = loop_reference(vae, batch, seed=7, to_prior=to_prior)
    for name in ("reward", "state", "kl", "task"):
        torch.testing.assert_close(terms[name], reference[name], atol=1e-4, rtol=1e-4,
                                   msg=name)


def test_trainer_update_moves_every_parameter_and_reports_terms():
    vae = make_vae()
    trainer = VAETrainer(vae, lr=1e-2, kl_weight=0.05)
    before = {name: value.detach().clone() for name, value in vae.named_parameters()}
    metrics = {key: float(value) for key, value in trainer.update(random_batch()).items()}
    for name, value in vae.named_parameters():
        assert not torch.equal(value, before[name]), name
    assert set(metrics) == {"loss", "reward_loss", "state_loss", "kl", "task_loss"}
    expected = metrics["reward_loss"] + metrics["state_loss"] + 0.05 * metrics["kl"] + metrics[
        "task_loss"]
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)


def make_datasets(env_type: str, num_tasks: int, num_trajectories: int, episodes: int,
                  options: dict | None = None) -> tuple[list[TaskDataset], BatchedBAMDP]:
    datasets = []
    for task_index in range(num_tasks):
        env = make_batched_env(env_type, num_trajectories, options)
        task = env.task_from_seed(task_index)
        env.set_tasks(np.tile(task, (num_trajectories, 1)))
        env.seed(range(100 * task_index, 100 * task_index + num_trajectories))
        bamdp = BatchedBAMDP(env, episodes)
        rng = np.random.default_rng(task_index)
        discrete = hasattr(bamdp.action_space, "n")
        batch = collect_meta_episodes(bamdp, lambda obs, rng=rng, discrete=discrete: (
            rng.integers(0, 5, len(obs)) if discrete else rng.uniform(-1, 1, (len(obs), 2))))
        datasets.append(TaskDataset(
            observations=batch.observations, actions=batch.actions, rewards=batch.rewards,
            next_observations=batch.next_observations, terminations=batch.terminations,
            truncations=batch.truncations, lengths=batch.lengths,
            training_steps=np.zeros(num_trajectories, dtype=np.int64), task=task,
            meta={"format_version": FORMAT_VERSION, "env_type": env_type}))
    return datasets, bamdp


@pytest.mark.parametrize(("env_type", "episodes"), [("gridworld", 4), ("point_robot_sparse", 2)])
def test_relabelled_rewards_and_terminations_follow_the_target_task(env_type, episodes):
    options = {"start_distribution": "uniform"}
    datasets, bamdp = make_datasets(env_type, 4, 30, episodes, options)
    env = make_batched_env(env_type, 1, options)
    relabelled = reward_relabelling(datasets, env, bamdp.to_native_actions, episodes, 1.0,
                                    np.random.default_rng(0))
    horizon = bamdp.max_episode_steps
    replaced = slice(0, horizon * (episodes // 2))
    kept = slice(horizon * (episodes // 2), None)
    for original, mixed in zip(datasets, relabelled, strict=True):
        validate_task_dataset(mixed, "relabelled")
        native = bamdp.to_native_actions(mixed.actions)
        rewards = env.reward(mixed.observations[..., :2], native, mixed.next_observations[..., :2],
                             mixed.task)
        np.testing.assert_array_equal(rewards, mixed.rewards[..., 0])
        goal = env.success(None, None, mixed.next_observations[..., :2], mixed.task)
        np.testing.assert_array_equal(goal, mixed.terminations[..., 0] > 0)
        for name in ("observations", "rewards", "next_observations"):
            np.testing.assert_array_equal(getattr(mixed, name)[:, kept],
                                          getattr(original, name)[:, kept])
        assert not np.array_equal(mixed.observations[:, replaced],
                                  original.observations[:, replaced])
        own = [np.array_equal(mixed.next_observations[row, replaced],
                              original.next_observations[row, replaced]) for row in range(30)]
        assert not any(own)  # with fraction 1 every first half comes from another task


def test_relabelling_fraction_and_refusals():
    datasets, bamdp = make_datasets("point_robot_sparse", 3, 200, 2)
    env = make_batched_env("point_robot_sparse", 1)
    relabelled = reward_relabelling(datasets, env, bamdp.to_native_actions, 2, 0.632,
                                    np.random.default_rng(1))
    changed = np.mean([not np.array_equal(a, b) for original, mixed in zip(
        datasets, relabelled, strict=True)
        for a, b in zip(original.observations, mixed.observations, strict=True)])
    assert changed == pytest.approx(0.632, abs=0.05)
    with pytest.raises(UserError, match="change the dynamics.*--policy-replaying"):
        check_relabelling_possible(make_batched_env("point_robot_wind"), "point_robot_wind")
    with pytest.raises(UserError, match="at least two tasks"):
        reward_relabelling(datasets[:1], env, bamdp.to_native_actions, 2, 1.0,
                           np.random.default_rng(0))


def test_mixing_follows_episode_boundaries_of_early_ends():
    datasets, bamdp = make_datasets("point_robot_sparse", 2, 4, 2)
    short = datasets[1]
    # make task 1's first episodes end after 10 steps: a shorter source episode
    observations = short.observations.copy()
    truncations = np.zeros_like(short.truncations)
    truncations[:, 9] = 1
    truncations[:, 69] = 1
    lengths = np.full(4, 70)
    for name in ("observations", "actions", "rewards", "next_observations", "terminations"):
        array = getattr(short, name).copy()
        array[:, 10:70] = array[:, 60:120]
        array[:, 70:] = 0
        setattr(short, name, array)
    short.truncations, short.lengths = truncations, lengths
    del observations
    env = make_batched_env("point_robot_sparse", 1)
    mixed = reward_relabelling(datasets, env, bamdp.to_native_actions, 2, 1.0,
                               np.random.default_rng(0))[0]
    validate_task_dataset(mixed, "mixed")
    np.testing.assert_array_equal(mixed.lengths, 70)  # a 10-step episode then its own 60
    for row in range(4):
        assert episode_bounds(mixed.truncations[row], 70) == [(0, 10), (10, 70)]
        np.testing.assert_array_equal(mixed.observations[row, 10:70],
                                      datasets[0].observations[row, 60:120])


def test_policy_replaying_replaces_every_first_episode_with_the_tasks_rollouts():
    datasets, _ = make_datasets("point_robot_wind", 2, 6, 2)
    replayed, _ = make_datasets("point_robot_wind", 2, 3, 2)
    mixed = policy_replaying(datasets, replayed, 2, np.random.default_rng(0))
    for task, dataset in enumerate(mixed):
        for row in range(6):
            first = dataset.observations[row, :25]
            assert any(np.array_equal(first, replayed[task].observations[source, :25])
                       for source in range(3))
        np.testing.assert_array_equal(dataset.observations[:, 25:],
                                      datasets[task].observations[:, 25:])
    with pytest.raises(UserError, match="do not match"):
        policy_replaying(datasets, replayed[::-1], 2, np.random.default_rng(0))


def test_epoch_schedule_visits_every_trajectory():
    rng = np.random.default_rng(0)
    steps = list(epoch_schedule([16, 16, 16], tasks_per_batch=2, trajectories_per_task=4,
                                rng=rng))
    assert len(steps) == 4 * 2
    seen = {(int(task), int(trajectory)) for tasks, trajectories in steps
            for task, trajectory in zip(tasks, trajectories, strict=True)}
    assert seen == {(task, trajectory) for task in range(3) for trajectory in range(16)}


def test_short_training_separates_two_point_robot_tasks():
    """Two goals, (1, 0) and (-1, 0); the behaviour drifts along +x from the origin, so the
    rewards of the two tasks differ and the final beliefs must split into two clusters."""
    datasets = []
    for goal in ([1.0, 0.0], [-1.0, 0.0]):
        env = make_batched_env("point_robot", 24, {"start_distribution": "origin",
                                                   "max_episode_steps": 30})
        env.set_tasks(np.tile(goal, (24, 1)))
        rng = np.random.default_rng(0)
        batch = collect_meta_episodes(BatchedBAMDP(env, 1), lambda observations, rng=rng: np.clip(
            rng.normal([0.6, 0.0], 0.5, (len(observations), 2)), -1.0, 1.0))
        datasets.append(TaskDataset(
            batch.observations, batch.actions, batch.rewards, batch.next_observations,
            batch.terminations, batch.truncations, batch.lengths, np.zeros(24, np.int64),
            np.array(goal), {}))
    torch.manual_seed(0)
    vae = VAE(2, 2, latent_dim=2, gru_hidden_size=32, action_embedding_size=8,
              state_embedding_size=16, reward_embedding_size=8, reward_decoder="deterministic",
              reward_decoder_inputs=["next_state"], reward_decoder_hidden_sizes=[32, 32])
    trainer = VAETrainer(vae, lr=3e-3, kl_weight=0.05)
    batches = TrajectoryBatches(datasets, torch.device("cpu"))
    before = [reward_predictions(vae, batches.gather(np.full(24, task), np.arange(24)))[0][:, -1]
              for task in range(2)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        for tasks, trajectories in epoch_schedule([24, 24], 2, 8, rng):
            trainer.update(batches.gather(tasks, trajectories))
    final = [reward_predictions(vae, batches.gather(np.full(24, task), np.arange(24)))[0][:, -1]
             .numpy() for task in range(2)]
    gap = np.linalg.norm(final[0].mean(axis=0) - final[1].mean(axis=0))
    spread = max(final[0].std(axis=0).max(), final[1].std(axis=0).max())
    assert gap > 5.0 * spread, (gap, spread)
    untrained_gap = float((before[0].mean(0) - before[1].mean(0)).norm())
    assert gap > 10 * untrained_gap
