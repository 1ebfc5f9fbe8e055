"""FOCAL for Discrete actions: the exact KL to the behaviour model and the policy loss against hand
computations, every parameter moving, the batched shapes, gradient routing and state round trips."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch

from algorithms.focal import FocalHyperparameters, metric_loss
from algorithms.focal_discrete import DiscreteFOCAL, categorical_kl

OBSERVATION_DIM, NUM_ACTIONS, LATENT = 3, 5, 4
TRANSITION_DIM = OBSERVATION_DIM + NUM_ACTIONS + 1


def settings(**overrides) -> FocalHyperparameters:
    base = FocalHyperparameters(latent_size=LATENT, net_size=16, context_hidden_sizes=[16, 16],
                                use_value_penalty=True, alpha_init=2.0, alpha_max=50.0,
                                reward_scale=5.0)
    return dataclasses.replace(base, **overrides)


def make_focal(seed: int = 0, **overrides) -> DiscreteFOCAL:
    torch.manual_seed(seed)
    return DiscreteFOCAL(OBSERVATION_DIM, NUM_ACTIONS, TRANSITION_DIM, settings(**overrides))


def one_hot(indices: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(indices, NUM_ACTIONS).float()


def random_batch(tasks: int = 5, batch_size: int = 7, context: int = 6, extra: int = 2,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * 2 - 1

    def actions(*shape: int) -> torch.Tensor:
        return one_hot(torch.randint(NUM_ACTIONS, shape, generator=generator))

    return {
        "task_ids": torch.tensor([0, 1, 1, 2, 0][:tasks]),
        "context": uniform(tasks, context, TRANSITION_DIM),
        "observations": uniform(tasks, batch_size, OBSERVATION_DIM),
        "actions": actions(tasks, batch_size),
        "rewards": uniform(tasks, batch_size, 1),
        "next_observations": uniform(tasks, batch_size, OBSERVATION_DIM),
        "terminations": (uniform(tasks, batch_size, 1) > 0.8).float(),
        "next_actions": actions(tasks, batch_size),
        "next_action_valid": torch.ones(tasks, batch_size, 1),
        "extra_observations": uniform(extra, tasks, batch_size, OBSERVATION_DIM),
        "extra_actions": actions(extra, tasks, batch_size),
    }


def parameters_of(focal: DiscreteFOCAL) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().clone()
            for name, network in focal.networks().items()
            for key, value in network.named_parameters()}


def set_constant_output(linear: torch.nn.Linear, values: list[float]) -> None:
    """Make a last layer output ``values`` whatever its input."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor(values))


def test_categorical_kl_equals_the_hand_computation():
    # pi = (1/4, 1/2, 1/4), beta = (1/4, 1/4, 1/2):
    # KL = 1/4 ln 1 + 1/2 ln 2 + 1/4 ln(1/2) = ln(2) / 4.
    log_pi = torch.log(torch.tensor([[0.25, 0.5, 0.25]]))
    log_beta = torch.log(torch.tensor([[0.25, 0.25, 0.5]]))
    kl = categorical_kl(log_pi, log_beta)
    assert kl.shape == (1, 1)
    assert float(kl) == pytest.approx(math.log(2) / 4, rel=1e-6)
    assert float(categorical_kl(log_pi, log_pi)) == pytest.approx(0.0, abs=1e-7)


def test_policy_loss_and_divergence_equal_the_hand_computation_with_fixed_networks():
    # Constant networks: pi(.|s, z) = softmax(log [1, 2, 1, 4, 2]) = [1, 2, 1, 4, 2] / 10,
    # beta = uniform, Q_1 = [1, 2, 3, 4, 5], Q_2 = [2, 1, 3, 3, 6] for every state. With the
    # critic and behaviour learning rates at 0 they stay so through the update, and
    #   L_pi = sum_a pi(a) (log pi(a) - min_j Q_j(a)) + alpha KL(pi || beta),
    #   KL = sum_a pi(a) (log pi(a) + log 5).
    focal = make_focal(qf_lr=0.0, c_lr=0.0, train_alpha=False, alpha_init=3.0)
    weights = [1.0, 2.0, 1.0, 4.0, 2.0]
    set_constant_output(focal.policy.network.network[-1], [math.log(w) for w in weights])
    set_constant_output(focal.behaviour.network.network[-1], [0.0] * NUM_ACTIONS)
    q_head = focal.q_networks.network.network[-1]
    with torch.no_grad():
        q_head.weight.zero_()
        q_head.bias.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 3.0, 3.0, 6.0]]
                                       ).view_as(q_head.bias))
    pi = [w / 10 for w in weights]
    minimum_q = [1.0, 1.0, 3.0, 3.0, 5.0]
    kl = sum(p * (math.log(p) + math.log(5)) for p in pi)
    expected_policy_loss = sum(p * (math.log(p) - q) for p, q in zip(pi, minimum_q,
                                                                       strict=True)) + 3.0 * kl
    divergence = focal.divergence(torch.rand(2, 3, OBSERVATION_DIM), torch.rand(2, 3, LATENT))
    assert divergence.shape == (2, 3, 1)
    torch.testing.assert_close(divergence, torch.full((2, 3, 1), kl), rtol=1e-5, atol=1e-6)
    metrics = {key: float(value) for key, value in focal.update(random_batch()).items()}
    assert metrics["divergence"] == pytest.approx(kl, rel=1e-5)
    assert metrics["policy_loss"] == pytest.approx(expected_policy_loss, rel=1e-5)
    assert metrics["log_prob"] == pytest.approx(sum(p * math.log(p) for p in pi), rel=1e-5)


def test_behaviour_loss_is_the_cross_entropy_of_the_data_actions():
    focal = make_focal()
    set_constant_output(focal.behaviour.network.network[-1], [0.0, math.log(3), 0.0, 0.0, 0.0])
    # beta = (1, 3, 1, 1, 1) / 7; data actions 1 and 4.
    actions = one_hot(torch.tensor([[1, 4]]))
    loss = focal.behaviour_loss(torch.zeros(1, 2, OBSERVATION_DIM), actions,
                                torch.zeros(1, 2, LATENT))
    assert float(loss.detach()) == pytest.approx(-(math.log(3 / 7) + math.log(1 / 7)) / 2, rel=1e-6)


@pytest.mark.parametrize("overrides", [{}, {"value_penalty_state": "current",
                                            "allow_backward_z": True, "max_entropy": False}])
def test_one_update_changes_every_trainable_parameter(overrides):
    focal = make_focal(**overrides)
    before = parameters_of(focal)
    metrics = focal.update(random_batch())
    after = parameters_of(focal)
    assert not [name for name in before if torch.equal(before[name], after[name])]
    assert all(math.isfinite(value) for value in metrics.values())
    assert set(metrics) >= {"z_loss", "q_loss", "v_loss", "policy_loss", "behaviour_loss",
                            "alpha", "divergence"}
    target = dict(focal.target_value.named_parameters())
    assert all(not torch.equal(target[name], value)
               for name, value in focal.value.named_parameters())


def test_batched_update_shapes_and_one_forward_pass_per_network():
    focal = make_focal(use_value_penalty=False)
    tasks, batch_size = 5, 7
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for name in ("encoder", "q_networks", "value", "policy", "behaviour"):
        getattr(focal, name).register_forward_hook(
            lambda module, inputs, output, name=name: shapes.setdefault(name, []).append(
                tuple(output.shape)))
    focal.update(random_batch(tasks=tasks, batch_size=batch_size, extra=0))
    assert shapes == {
        "encoder": [(tasks, LATENT)],
        "behaviour": [(tasks, batch_size, NUM_ACTIONS)] * 2,  # its own step, then the KL
        "q_networks": [(2, tasks, batch_size, NUM_ACTIONS)] * 2,  # Q loss, then the policy's
        "value": [(tasks, batch_size, 1)],
        "policy": [(tasks, batch_size, NUM_ACTIONS)],
    }
    actions = focal.act(torch.rand(tasks, OBSERVATION_DIM), torch.rand(tasks, LATENT))
    assert actions.shape == (tasks,) and actions.dtype == torch.long
    sampled = focal.act(torch.rand(4, 3, OBSERVATION_DIM), torch.rand(4, 3, LATENT),
                        deterministic=False)
    assert sampled.shape == (4, 3) and int(sampled.min()) >= 0
    assert int(sampled.max()) < NUM_ACTIONS


def test_deterministic_action_is_the_most_likely_one():
    focal = make_focal()
    set_constant_output(focal.policy.network.network[-1], [0.0, 0.0, 0.0, 2.0, 0.0])
    assert focal.act(torch.rand(6, OBSERVATION_DIM), torch.rand(6, LATENT)).tolist() == [3] * 6


def test_encoder_gradient_comes_only_from_the_metric_loss():
    focal = make_focal()
    batch = random_batch()
    parameters = list(focal.encoder.parameters())
    metric_only = torch.autograd.grad(
        focal.settings.z_loss_weight * metric_loss(focal.encoder(batch["context"]),
                                                   batch["task_ids"]), parameters)
    focal.update(batch)
    for parameter, expected in zip(parameters, metric_only, strict=True):
        torch.testing.assert_close(parameter.grad, expected, rtol=0, atol=1e-6)


def test_without_brac_the_behaviour_model_is_not_trained_and_alpha_stays():
    focal = make_focal(use_brac=False)
    before = [value.clone() for value in focal.behaviour.parameters()]
    metrics = {key: float(value) for key, value in focal.update(random_batch()).items()}
    assert all(torch.equal(old, new) for old, new in zip(before, focal.behaviour.parameters(),
                                                          strict=True))
    assert metrics["divergence"] == 0.0 and metrics["alpha"] == 2.0


def test_state_dict_round_trip_continues_identically():
    first = make_focal(seed=1)
    first.update(random_batch(seed=1))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = make_focal(seed=2)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    for focal in (first, second):
        torch.manual_seed(7)
        focal.update(random_batch(seed=3))
    for name, value in parameters_of(first).items():
        assert torch.equal(value, parameters_of(second)[name]), name
    assert torch.equal(first.alpha.value, second.alpha.value)
    assert "behaviour" in first.state_dict()["optimizers"]
