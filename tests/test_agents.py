"""SAC and DQN: every parameter moves, targets follow the Polyak rule, K stacked agents equal K
single agents given the same batches, the replay buffer and the DQN exploration schedule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from algorithms.agents import epsilon_at
from algorithms.common import step
from algorithms.dqn import DQN
from algorithms.sac import SAC
from models.ensemble import EnsembleLinear, EnsembleMLP, member_state
from models.policies import tanh_gaussian_log_prob
from utils.replay import EnsembleReplayBuffer
from utils.stage_configs import DataCollectionConfig

OBSERVATION_DIM, ACTION_DIM, NUM_ACTIONS = 4, 2, 5


def sac_batch(num_members: int, batch_size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "observations": torch.randn(num_members, batch_size, OBSERVATION_DIM, generator=generator),
        "actions": torch.rand(num_members, batch_size, ACTION_DIM, generator=generator) * 2 - 1,
        "rewards": torch.randn(num_members, batch_size, 1, generator=generator),
        "next_observations": torch.randn(num_members, batch_size, OBSERVATION_DIM,
                                         generator=generator),
        "terminations": (torch.rand(num_members, batch_size, 1, generator=generator) < 0.2).float(),
    }


def dqn_batch(num_members: int, batch_size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    batch = sac_batch(num_members, batch_size, seed)
    actions = torch.randint(NUM_ACTIONS, (num_members, batch_size),
                            generator=torch.Generator().manual_seed(seed + 1))
    batch["actions"] = torch.nn.functional.one_hot(actions, NUM_ACTIONS).float()
    return batch


def make_sac(num_members: int, tuning: bool = False) -> SAC:
    return SAC(num_members, OBSERVATION_DIM, ACTION_DIM, [16, 16], [16, 16], entropy_alpha=0.1,
               automatic_entropy_tuning=tuning)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.named_parameters()}


def test_sac_update_changes_every_parameter_and_polyak_targets():
    torch.manual_seed(0)
    agent = make_sac(2, tuning=True)
    policy, critic = snapshot(agent.policy), snapshot(agent.critic)
    target = snapshot(agent.target_critic)
    log_alpha = agent.log_alpha.detach().clone()
    metrics = agent.update(sac_batch(2))
    for name, value in agent.policy.named_parameters():
        assert not torch.equal(value, policy[name]), f"policy {name} did not move"
    for name, value in agent.critic.named_parameters():
        assert not torch.equal(value, critic[name]), f"critic {name} did not move"
        expected = (1 - agent.tau) * target[name] + agent.tau * value.detach()
        torch.testing.assert_close(dict(agent.target_critic.named_parameters())[name], expected)
    assert not torch.equal(agent.log_alpha, log_alpha)
    assert {"critic_loss", "policy_loss", "alpha_loss", "alpha", "q_value", "log_prob"} <= set(
        metrics)
    assert all(value.shape == () and not value.requires_grad and torch.isfinite(value)
               for value in metrics.values())


def test_dqn_update_changes_every_parameter_and_polyak_targets():
    torch.manual_seed(0)
    agent = DQN(2, OBSERVATION_DIM, NUM_ACTIONS, [16, 16], tau=0.01)
    before, target = snapshot(agent.q_network), snapshot(agent.target_network)
    agent.update(dqn_batch(2))
    for name, value in agent.q_network.named_parameters():
        assert not torch.equal(value, before[name]), f"{name} did not move"
        expected = 0.99 * target[name] + 0.01 * value.detach()
        torch.testing.assert_close(dict(agent.target_network.named_parameters())[name], expected)


def test_dqn_loss_matches_a_loop_reference():
    torch.manual_seed(0)
    agent = DQN(1, OBSERVATION_DIM, NUM_ACTIONS, [8], gamma=0.9)
    batch = dqn_batch(1, batch_size=6)
    reference = 0.0
    for index in range(6):  # the loss computed transition by transition
        taken = int(batch["actions"][0, index].argmax())
        value = agent.q_network(batch["observations"][:, index : index + 1])[0, 0, taken]
        next_best = agent.target_network(batch["next_observations"][:, index : index + 1]).max()
        target = batch["rewards"][0, index, 0] + 0.9 * (
            1 - batch["terminations"][0, index, 0]) * next_best
        reference += float((value - target).detach() ** 2) / 6
    assert float(agent.update(batch)["q_loss"]) == pytest.approx(reference, rel=1e-5)


def copy_member(source, target, member: int, modules: list[str]) -> None:
    for name in modules:
        getattr(target, name).load_state_dict(member_state(getattr(source, name), member))


def test_batched_sac_equals_single_agents_given_the_same_batches(monkeypatch):
    monkeypatch.setattr(torch, "randn_like", lambda tensor: torch.full_like(tensor, 0.3))
    torch.manual_seed(0)
    ensemble = make_sac(3, tuning=True)
    singles = []
    for member in range(3):
        single = make_sac(1, tuning=True)
        single.policy.load_state_dict(member_state(ensemble.policy, member))
        for network in ("critic", "target_critic"):  # critic members are (twin, member)-major
            state = getattr(ensemble, network).state_dict()
            getattr(single, network).load_state_dict(
                {key: value[[member, 3 + member]].clone() for key, value in state.items()})
        singles.append(single)
    batches = [sac_batch(3, seed=seed) for seed in range(3)]
    for batch in batches:
        ensemble.update(batch)
        for member, single in enumerate(singles):
            single.update({key: value[member : member + 1] for key, value in batch.items()})
    for member, single in enumerate(singles):
        for name, value in single.policy.state_dict().items():
            torch.testing.assert_close(value[0], ensemble.policy.state_dict()[name][member],
                                       atol=1e-6, rtol=1e-5)
        for name, value in single.critic.state_dict().items():
            torch.testing.assert_close(
                value, ensemble.critic.state_dict()[name][[member, 3 + member]],
                atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(single.log_alpha[0], ensemble.log_alpha[member])


def test_batched_dqn_equals_single_agents_given_the_same_batches():
    torch.manual_seed(0)
    ensemble = DQN(3, OBSERVATION_DIM, NUM_ACTIONS, [16, 16])
    singles = [DQN(1, OBSERVATION_DIM, NUM_ACTIONS, [16, 16]) for _ in range(3)]
    for member, single in enumerate(singles):
        copy_member(ensemble, single, member, ["q_network", "target_network"])
    for seed in range(3):
        batch = dqn_batch(3, seed=seed)
        ensemble.update(batch)
        for member, single in enumerate(singles):
            single.update({key: value[member : member + 1] for key, value in batch.items()})
    for member, single in enumerate(singles):
        for name, value in single.q_network.state_dict().items():
            torch.testing.assert_close(value[0], ensemble.q_network.state_dict()[name][member],
                                       atol=1e-6, rtol=1e-5)


def test_gradient_clipping_is_per_member():
    torch.manual_seed(0)
    clipped = SAC(2, OBSERVATION_DIM, ACTION_DIM, [16], [16], max_grad_norm=1e-3)
    single = SAC(1, OBSERVATION_DIM, ACTION_DIM, [16], [16], max_grad_norm=1e-3)
    copy_member(clipped, single, 0, ["policy"])
    state = clipped.critic.state_dict()
    for network in ("critic", "target_critic"):
        getattr(single, network).load_state_dict({key: value[[0, 2]].clone()
                                                  for key, value in state.items()})
    batch = sac_batch(2)
    batch["rewards"][1] *= 1000.0  # member 1's huge gradients must not shrink member 0's
    torch.manual_seed(1)
    clipped.update(batch)
    torch.manual_seed(1)
    single.update({key: value[:1] for key, value in batch.items()})
    for name, value in single.critic.state_dict().items():
        torch.testing.assert_close(value, clipped.critic.state_dict()[name][[0, 2]], atol=1e-6,
                                   rtol=1e-5)


def test_state_dict_round_trip_restores_training_exactly():
    torch.manual_seed(0)
    agent = make_sac(2, tuning=True)
    agent.update(sac_batch(2))
    clone = make_sac(2, tuning=True)
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))
    torch.manual_seed(5)
    first = agent.update(sac_batch(2, seed=1))
    torch.manual_seed(5)
    second = clone.update(sac_batch(2, seed=1))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert clone.num_updates == agent.num_updates == 2


def test_sac_deterministic_actions_are_tanh_of_the_mean():
    torch.manual_seed(0)
    agent = make_sac(2)
    observations = torch.randn(2, 7, OBSERVATION_DIM)
    mean, _ = agent.policy(observations)
    torch.testing.assert_close(agent.act(observations, deterministic=True), torch.tanh(mean))
    samples = agent.act(observations)
    assert samples.shape == (2, 7, ACTION_DIM) and samples.abs().max() <= 1.0


def test_dqn_epsilon_greedy_explores_at_the_given_rate():
    torch.manual_seed(0)
    agent = DQN(1, OBSERVATION_DIM, NUM_ACTIONS, [8])
    observations = torch.randn(1, 4000, OBSERVATION_DIM)
    greedy = agent.act(observations)
    explored = agent.act(observations, epsilon=0.5)
    differs = (explored != greedy).float().mean().item()
    assert differs == pytest.approx(0.5 * 4 / 5, abs=0.03)


def test_epsilon_schedule():
    config = DataCollectionConfig(epsilon_initial=1.0, epsilon_final=0.0, epsilon_decay_iters=50)
    assert epsilon_at(config, 0) == 1.0
    assert epsilon_at(config, 25) == pytest.approx(0.5)
    assert epsilon_at(config, 50) == 0.0 and epsilon_at(config, 80) == 0.0


def test_replay_buffer_keeps_valid_steps_per_member_and_samples_only_them():
    buffer = EnsembleReplayBuffer(2, capacity=10, dims={
        "observations": 1, "actions": 1, "rewards": 1, "next_observations": 1,
        "terminations": 1})
    steps = np.arange(2 * 4, dtype=np.float32).reshape(2, 4, 1)
    arrays = {name: steps + offset for offset, name in enumerate(
        ["observations", "actions", "rewards", "next_observations", "terminations"])}
    buffer.add_trajectories(arrays, lengths=np.array([3, 4]), member_of_trajectory=np.array([1, 0]))
    assert buffer.sizes.tolist() == [4, 3]
    sample = buffer.sample(500, torch.Generator().manual_seed(0))
    assert set(sample["observations"][0, :, 0].tolist()) == {4.0, 5.0, 6.0, 7.0}
    assert set(sample["observations"][1, :, 0].tolist()) == {0.0, 1.0, 2.0}
    torch.testing.assert_close(sample["rewards"], sample["observations"] + 2)
    big = {name: np.tile(values, (1, 4, 1)) for name, values in arrays.items()}
    buffer.add_trajectories(big, lengths=np.array([16, 16]), member_of_trajectory=np.array([0, 1]))
    assert buffer.sizes.tolist() == [10, 10]


def test_replay_buffer_sample_tasks_draws_from_each_listed_member_after_growing():
    dims = {name: 2 for name in ("observations", "actions", "next_observations")}
    buffer = EnsembleReplayBuffer(3, capacity=40, dims={**dims, "rewards": 1, "terminations": 1},
                                  initial_capacity=2)
    lengths = np.array([5, 9, 7])
    steps = np.arange(10, dtype=np.float32)[None, :, None]
    member_codes = np.array([100.0, 200.0, 300.0], dtype=np.float32)[:, None, None]
    values = np.broadcast_to(member_codes + steps, (3, 10, 1))  # member k's step t: 100 (k+1) + t
    arrays = {name: np.repeat(values, dim, axis=2) for name, dim in
              {**dims, "rewards": 1, "terminations": 1}.items()}
    buffer.add_trajectories(arrays, lengths, np.arange(3))
    assert buffer.allocated == 10  # grown from 2: to 5 for member 0, then doubled for member 1
    members = torch.tensor([2, 0, 2, 1])
    sample = buffer.sample_tasks(members, 300, torch.Generator().manual_seed(1))
    assert sample["observations"].shape == (1, 4 * 300, 2) and sample["rewards"].shape == (
        1, 1200, 1)
    for slot, member in enumerate(members.tolist()):
        drawn = sample["rewards"][0, slot * 300:(slot + 1) * 300, 0]
        assert set(drawn.tolist()) == {100.0 * (member + 1) + t for t in range(lengths[member])}
        torch.testing.assert_close(sample["actions"][0, slot * 300:(slot + 1) * 300],
                                   drawn[:, None].expand(300, 2))


def test_ensemble_mlp_members_are_independent():
    torch.manual_seed(0)
    network = EnsembleMLP(3, 5, [8], 2)
    inputs = torch.randn(3, 4, 5)
    outputs = network(inputs)
    changed = inputs.clone()
    changed[1] += 1.0
    new_outputs = network(changed)
    assert torch.equal(outputs[0], new_outputs[0]) and torch.equal(outputs[2], new_outputs[2])
    assert not torch.equal(outputs[1], new_outputs[1])
    assert network(torch.randn(3, 2, 6, 5)).shape == (3, 2, 6, 2)


@pytest.mark.parametrize("leading", [(7,), (2, 5)])
def test_ensemble_mlp_with_in_place_relus_matches_a_per_member_loop_to_second_order(leading):
    # The stacked MLP applies its ReLUs in place; values, gradients and the gradients of an
    # input-gradient penalty (BRAC's, a double backward) must equal a loop over the members
    # with out-of-place operations.
    torch.manual_seed(0)
    network = EnsembleMLP(3, 4, [6, 5], 1).double()
    inputs = torch.randn(3, *leading, 4, dtype=torch.double)

    def reference(points: torch.Tensor) -> torch.Tensor:
        members = []
        for member in range(3):
            hidden = points[member]
            for layer in network.network:
                if isinstance(layer, EnsembleLinear):
                    hidden = hidden @ layer.weight[member] + layer.bias[member, 0]
                else:
                    hidden = torch.relu(hidden)
            members.append(hidden)
        return torch.stack(members)

    def penalty_gradients(function) -> list[torch.Tensor]:
        points = inputs.clone().requires_grad_(True)
        values = function(points)
        (slopes,) = torch.autograd.grad(values.sum(), points, create_graph=True)
        loss = values.square().mean() + (slopes.square().sum(-1) - 1.0).square().mean()
        return list(torch.autograd.grad(loss, [points, *network.parameters()]))

    torch.testing.assert_close(network(inputs), reference(inputs))
    for gradient, expected in zip(penalty_gradients(network), penalty_gradients(reference),
                                  strict=True):
        torch.testing.assert_close(gradient, expected)
        assert gradient.abs().sum() > 0


def test_dqn_cql_penalty_is_logsumexp_minus_the_data_q_value():
    torch.manual_seed(0)
    agent = DQN(1, OBSERVATION_DIM, NUM_ACTIONS, [8], cql_alpha=2.0)
    batch = dqn_batch(1, batch_size=6)
    with torch.no_grad():
        all_values = agent.q_network(batch["observations"])[0]
    taken = batch["actions"][0].argmax(-1)
    expected = np.mean([float(torch.logsumexp(all_values[index], 0)
                              - all_values[index, taken[index]]) for index in range(6)])
    metrics = {key: float(value) for key, value in agent.update(batch).items()}
    assert metrics["cql_penalty"] == pytest.approx(expected, rel=1e-5)
    assert metrics["cql_penalty"] > 0.0


def test_sac_cql_lowers_q_values_of_actions_absent_from_the_data():
    def gap_after_training(cql_alpha: float) -> float:
        torch.manual_seed(0)
        agent = SAC(1, OBSERVATION_DIM, ACTION_DIM, [32], [32], entropy_alpha=0.1,
                    critic_lr=3e-3, cql_alpha=cql_alpha, cql_num_actions=4)
        for seed in range(200):
            batch = sac_batch(1, batch_size=64, seed=seed)
            batch["actions"] = torch.zeros_like(batch["actions"])  # the data only holds a = 0
            agent.update(batch)
        observations = sac_batch(1, batch_size=256, seed=999)["observations"]
        with torch.no_grad():
            data = agent.q_values(agent.critic, observations, torch.zeros(1, 256, ACTION_DIM))
            elsewhere = agent.q_values(agent.critic, observations,
                                       torch.full((1, 256, ACTION_DIM), 0.9))
        return float((elsewhere - data).mean())

    without, with_cql = gap_after_training(0.0), gap_after_training(5.0)
    assert abs(without) < 0.5  # plain SAC: no reason to rank unseen actions lower
    assert with_cql < -2.0  # CQL pushes the unseen action's value well below the data's


def test_one_output_ensemble_layer_equals_the_batched_matrix_product():
    # The CPU path of a one-output layer with several members is a dot product per row; it must
    # give the values and gradients of baddbmm.
    torch.manual_seed(0)
    layer = EnsembleLinear(3, 6, 1)
    layer.init_uniform(0.5)
    inputs = torch.randn(3, 4, 5, 6, requires_grad=True)
    outputs = layer(inputs)
    reference = torch.baddbmm(layer.bias, inputs.reshape(3, 20, 6), layer.weight).reshape(
        3, 4, 5, 1)
    torch.testing.assert_close(outputs, reference)
    weights = torch.randn_like(outputs)
    gradients = torch.autograd.grad((outputs * weights).sum(), [inputs, layer.weight,
                                                                layer.bias])
    expected = torch.autograd.grad((reference * weights).sum(), [inputs, layer.weight,
                                                                 layer.bias])
    for gradient, reference_gradient in zip(gradients, expected, strict=True):
        torch.testing.assert_close(gradient, reference_gradient)


def test_log_prob_from_the_drawn_noise_equals_the_recomputed_one():
    torch.manual_seed(0)
    mean = torch.randn(2, 5, 3, requires_grad=True)
    log_std = torch.randn(2, 5, 3).clamp(-2, 1).requires_grad_(True)
    noise = torch.randn(2, 5, 3)
    pre_tanh = mean + log_std.exp() * noise
    given = tanh_gaussian_log_prob(pre_tanh, mean, log_std, noise)
    recomputed = tanh_gaussian_log_prob(pre_tanh, mean, log_std)
    torch.testing.assert_close(given, recomputed)
    # by hand: sum_i [-u_i^2/2 - log sigma_i - log(2 pi)/2 - log(1 - tanh(p_i)^2)]
    by_hand = (-0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi)
               - torch.log(1 - torch.tanh(pre_tanh) ** 2)).sum(-1, keepdim=True)
    torch.testing.assert_close(given, by_hand, rtol=1e-4, atol=1e-4)
    for first, second in zip(torch.autograd.grad(given.sum(), [mean, log_std],
                                                 retain_graph=True),
                             torch.autograd.grad(recomputed.sum(), [mean, log_std]),
                             strict=True):
        torch.testing.assert_close(first, second)


def test_sac_policy_step_computes_no_critic_gradients():
    torch.manual_seed(0)
    agent = make_sac(2)
    agent.update(sac_batch(2))
    # the critic's gradients are those of its own step; the policy step added nothing to them
    critic_gradients = {name: parameter.grad.clone()
                        for name, parameter in agent.critic.named_parameters()}
    agent.policy_optimizer.zero_grad(set_to_none=True)
    observations = sac_batch(2)["observations"]
    new_actions, log_probs = agent.policy.sample(observations)
    values = agent.q_values(agent.critic, observations, new_actions).min(dim=0).values
    step(agent.policy_optimizer, (log_probs - values).mean(), None)
    for name, parameter in agent.critic.named_parameters():
        torch.testing.assert_close(parameter.grad, critic_gradients[name])
    assert all(parameter.grad is not None for parameter in agent.policy.parameters())
