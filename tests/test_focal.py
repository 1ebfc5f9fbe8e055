"""FOCAL's pieces: the metric loss against a loop, gradient routing, BRAC's estimate and alpha, the
update touching every parameter, state round trips, the offline sampler and embedding statistics."""

from __future__ import annotations

import dataclasses
import io
import itertools
import math

import numpy as np
import pytest
import torch

from algorithms.brac import dual_critic_penalty, kl_dual_estimate
from algorithms.focal import FOCAL, FocalHyperparameters, metric_loss
from algorithms.focal_data import OfflineTaskData, quality_slice_mask, select_trajectories
from models.context_encoder import ContextEncoder
from utils.datasets import FORMAT_VERSION, TaskDataset
from utils.embeddings import embedding_esr, embedding_rms
from utils.errors import UserError

OBSERVATION_DIM, ACTION_DIM, LATENT = 3, 2, 4
TRANSITION_DIM = OBSERVATION_DIM + ACTION_DIM + 1
NEGATIVES = ["inverse_square", "inverse", "linear", "square"]



def reference_metric_loss(latents: torch.Tensor, task_ids: list[int], negative: str, beta: float,
                          epsilon: float, positive: str, distance: str) -> float:
    """FOCAL's z_loss written pair by pair, as the original code's double loop."""
    positive_sum = negative_sum = 0.0
    positive_count = negative_count = 0
    for i, j in itertools.combinations(range(len(task_ids)), 2):
        squared_terms = [(float(a) - float(b)) ** 2 for a, b in zip(latents[i], latents[j],
                                                                      strict=True)]
        squared = sum(squared_terms) / (len(squared_terms) if distance == "mean" else 1)
        length = math.sqrt(squared + 1e-3)
        if task_ids[i] == task_ids[j]:
            positive_sum += length if positive == "rms" else squared
            positive_count += 1
        else:
            negative_sum += {"inverse_square": beta / (squared + epsilon),
                             "inverse": beta / (length + epsilon),
                             "linear": -beta * length, "square": -beta * squared}[negative]
            negative_count += 1
    return positive_sum / (positive_count + 1e-3) + negative_sum / (negative_count + 1e-3)


@pytest.mark.parametrize("negative", NEGATIVES)
@pytest.mark.parametrize(("positive", "distance"), [("rms", "mean"), ("square", "sum")])
def test_vectorised_metric_loss_equals_the_loop_reference(negative, positive, distance):
    generator = torch.Generator().manual_seed(0)
    latents = torch.rand(9, LATENT, generator=generator, dtype=torch.float64) * 2 - 1
    for task_ids in ([0, 3, 3, 1, 0, 2, 3, 1, 5], list(range(9)), [4] * 9):
        loss = metric_loss(latents, torch.tensor(task_ids), negative, 2.0, 0.1, positive, distance)
        expected = reference_metric_loss(latents, task_ids, negative, 2.0, 0.1, positive, distance)
        assert float(loss) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_metric_loss_pulls_same_task_together_and_pushes_tasks_apart():
    latents = torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.0, 1.0]], requires_grad=True)
    metric_loss(latents, torch.tensor([0, 0, 1])).backward()
    # Gradient descent moves the two task-0 embeddings toward each other along x and the task-1
    # embedding away from them along y.
    assert latents.grad[0, 0] < 0 < latents.grad[1, 0]
    assert latents.grad[2, 1] < 0


def tiny_settings(**overrides) -> FocalHyperparameters:
    base = FocalHyperparameters(latent_size=LATENT, net_size=16, context_hidden_sizes=[16, 16],
                                use_value_penalty=True, alpha_init=5.0, alpha_max=50.0,
                                reward_scale=5.0)
    return dataclasses.replace(base, **overrides)


def random_batch(tasks: int = 5, batch_size: int = 7, context: int = 6, extra: int = 2,
                 seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 2 - 1).to(device)

    batch = {
        "task_ids": torch.tensor([0, 1, 1, 2, 0][:tasks]).to(device),
        "context": uniform(tasks, context, TRANSITION_DIM),
        "observations": uniform(tasks, batch_size, OBSERVATION_DIM),
        "actions": uniform(tasks, batch_size, ACTION_DIM) * 0.9,
        "rewards": uniform(tasks, batch_size, 1),
        "next_observations": uniform(tasks, batch_size, OBSERVATION_DIM),
        "terminations": (uniform(tasks, batch_size, 1) > 0.8).float(),
        "next_actions": uniform(tasks, batch_size, ACTION_DIM) * 0.9,
        "next_action_valid": (uniform(tasks, batch_size, 1) > -0.6).float(),
        "extra_observations": uniform(extra, tasks, batch_size, OBSERVATION_DIM),
        "extra_actions": uniform(extra, tasks, batch_size, ACTION_DIM) * 0.9,
    }
    return batch


def make_focal(seed: int = 0, device: str = "cpu", **overrides) -> FOCAL:
    torch.manual_seed(seed)
    return FOCAL(OBSERVATION_DIM, ACTION_DIM, TRANSITION_DIM, tiny_settings(**overrides), device)


def parameters_of(focal: FOCAL) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().clone()
            for name, network in focal.networks().items()
            for key, value in network.named_parameters()}


@pytest.mark.parametrize("coupled", [False, True])
def test_encoder_gradient_comes_only_from_the_metric_loss_unless_coupled(coupled):
    focal = make_focal(allow_backward_z=coupled)
    batch = random_batch()
    parameters = list(focal.encoder.parameters())
    metric_only = torch.autograd.grad(
        focal.settings.z_loss_weight * metric_loss(focal.encoder(batch["context"]),
                                                   batch["task_ids"]), parameters)
    focal.update(batch)
    differences = [float((parameter.grad - expected).abs().max())
                   for parameter, expected in zip(parameters, metric_only, strict=True)]
    if coupled:
        assert max(differences) > 1e-6
    else:
        assert max(differences) < 1e-6


@pytest.mark.parametrize("coupled", [False, True])
def test_without_the_metric_loss_only_coupling_moves_the_encoder(coupled):
    focal = make_focal(allow_backward_z=coupled, z_loss_weight=0.0)
    before = [parameter.detach().clone() for parameter in focal.encoder.parameters()]
    focal.update(random_batch())
    moved = any(not torch.equal(old, new) for old, new in zip(before, focal.encoder.parameters(),
                                                               strict=True))
    assert moved == coupled


def test_kl_dual_estimate_follows_the_formula():
    on_policy, on_data = torch.tensor([[0.3], [-2.0]]), torch.tensor([[1.5], [0.0]])

    def softplus(value: float) -> float:
        return math.log1p(math.exp(value))

    expected = [-softplus(b) + math.log(softplus(p) + 1e-8) + 1.0
                for p, b in ((0.3, 1.5), (-2.0, 0.0))]
    np.testing.assert_allclose(kl_dual_estimate(on_policy, on_data)[:, 0].numpy(), expected,
                               rtol=1e-6)


def test_dual_critic_penalties():
    observations, latents = torch.zeros(4, 6, OBSERVATION_DIM), torch.zeros(4, 6, LATENT)
    policy_actions, data_actions = torch.rand(4, 6, ACTION_DIM), torch.rand(4, 6, ACTION_DIM)

    def steep(states, actions, codes):  # slope 3 in the action everywhere
        return 3.0 * actions[..., :1]

    def constant(states, actions, codes):
        return torch.full_like(actions[..., :1], 2.5)

    assert float(dual_critic_penalty("gradient", steep, observations, policy_actions,
                                     data_actions, latents)) == pytest.approx(4.0, rel=1e-5)
    assert float(dual_critic_penalty("magnitude", constant, observations, policy_actions,
                                     data_actions, latents)) == pytest.approx(2.25)
    assert float(dual_critic_penalty("none", steep, observations, policy_actions, data_actions,
                                     latents)) == 0.0


def test_alpha_moves_toward_the_target_divergence_with_real_clipping():
    focal = make_focal(alpha_lr=0.5, target_divergence=0.05)
    before = float(focal.alpha.value)
    metrics = {key: float(value) for key, value in focal.update(random_batch()).items()}
    expected = min(max(before + 0.5 * (metrics["divergence"] - 0.05), 0.0), 50.0)
    assert metrics["alpha"] == pytest.approx(expected, rel=1e-6, abs=1e-6)

    falling = make_focal(alpha_lr=1e4, target_divergence=1e3)
    falling.update(random_batch())
    assert float(falling.alpha.value) == 0.0  # the stored value, not only its read-out
    rising = make_focal(alpha_lr=1e4, target_divergence=-1e3)
    rising.update(random_batch())
    assert float(rising.alpha.value) == 50.0
    fixed = make_focal(train_alpha=False)
    fixed.update(random_batch())
    assert float(fixed.alpha.value) == 5.0


@pytest.mark.parametrize("overrides", [{}, {"dual_critic_penalty": "magnitude",
                                            "value_penalty_state": "current",
                                            "allow_backward_z": True}])
def test_one_update_changes_every_trainable_parameter(overrides):
    focal = make_focal(**overrides)
    before = parameters_of(focal)
    metrics = focal.update(random_batch())
    after = parameters_of(focal)
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert not unchanged
    assert all(math.isfinite(value) for value in metrics.values())
    target = dict(focal.target_value.named_parameters())
    value = dict(focal.value.named_parameters())
    assert all(not torch.equal(target[name], value[name]) for name in value)


def test_every_network_sees_the_whole_meta_batch_in_one_forward_pass():
    focal = make_focal()
    calls = {name: 0 for name in ("encoder", "q_networks", "value")}
    for name in calls:
        getattr(focal, name).register_forward_hook(
            lambda module, inputs, output, name=name: calls.__setitem__(name, calls[name] + 1))
    focal.update(random_batch(extra=0))
    assert calls == {"encoder": 1, "q_networks": 2, "value": 1}


def test_baseline_without_task_embedding_keeps_z_at_zero():
    focal = make_focal(use_task_embedding=False)
    before = [parameter.detach().clone() for parameter in focal.encoder.parameters()]
    metrics = focal.update(random_batch())
    assert float(metrics["z_loss"]) == 0.0
    assert all(torch.equal(old, new) for old, new in zip(before, focal.encoder.parameters(),
                                                          strict=True))
    assert torch.count_nonzero(focal.task_latents(torch.rand(3, 5, TRANSITION_DIM))) == 0


def test_state_dict_round_trip_continues_identically():
    first = make_focal(seed=1)
    first.update(random_batch(seed=1))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as a checkpoint: weights_only-loadable
    buffer.seek(0)
    second = make_focal(seed=2)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    assert second.num_updates == 1
    for focal in (first, second):
        torch.manual_seed(7)
        focal.update(random_batch(seed=3))
    for name, value in parameters_of(first).items():
        assert torch.equal(value, parameters_of(second)[name]), name
    assert torch.equal(first.alpha.value, second.alpha.value)
    for key in first.optimizers:
        assert first.optimizers[key].state_dict()["state"].keys() == \
            second.optimizers[key].state_dict()["state"].keys()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_update_runs_on_cuda_and_checkpoints_load_on_cpu():
    focal = make_focal(device="cuda")
    metrics = focal.update(random_batch(device="cuda"))
    assert all(value.is_cuda and math.isfinite(value) for value in metrics.values())
    assert all(value.is_cuda for value in parameters_of(focal).values())
    assert focal.alpha.value.is_cuda
    buffer = io.BytesIO()
    torch.save(focal.state_dict(), buffer)
    buffer.seek(0)
    on_cpu = make_focal(device="cpu")
    on_cpu.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
    assert math.isfinite(on_cpu.update(random_batch())["q_loss"])


def test_context_encoder_is_bounded_and_masks_padding():
    encoder = ContextEncoder(TRANSITION_DIM, [8], LATENT)
    context = torch.randn(2, 5, TRANSITION_DIM) * 100
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    latents = encoder(context, mask)
    assert latents.abs().max() <= 1.0
    torch.testing.assert_close(latents[0], encoder(context[:1, :2])[0])
    assert torch.count_nonzero(latents[1]) == 0


# ----------------------------------------------------------------------------------- data
def padded_dataset(task: float, lengths: list[int], steps: list[int], horizon: int = 6
                   ) -> TaskDataset:
    """Trajectories whose valid steps hold small numbers and whose padding holds 999."""
    count = len(lengths)
    valid = np.arange(horizon)[None, :] < np.array(lengths)[:, None]

    def field(dim: int, value: float) -> np.ndarray:
        array = np.where(valid[..., None], value, 999.0) * np.ones((count, horizon, dim))
        return array.astype(np.float32)

    truncations = np.zeros((count, horizon, 1), dtype=np.float32)
    truncations[np.arange(count), np.array(lengths) - 1] = 1.0
    terminations = np.where(valid[..., None], 0.0, 1.0).astype(np.float32)
    return TaskDataset(
        observations=field(OBSERVATION_DIM, task), actions=field(ACTION_DIM, 0.5),
        rewards=field(1, -task), next_observations=field(OBSERVATION_DIM, task + 0.1),
        terminations=terminations, truncations=truncations,
        lengths=np.array(lengths, dtype=np.int64), training_steps=np.array(steps, dtype=np.int64),
        task=np.array([task]), meta={"format_version": FORMAT_VERSION, "env_type": "x"},
        sparse_rewards=field(1, task / 10))


def test_sampler_never_reads_padding_and_marks_missing_next_actions():
    datasets = [padded_dataset(0.0, [2, 6, 1], [0, 1, 2]), padded_dataset(1.0, [3], [0])]
    data = OfflineTaskData(datasets, ["a", "b"], sparse_rewards=True, ignore_terminations=False,
                           use_next_obs_in_context=True)
    assert data.counts.tolist() == [9, 3] and data.transition_dim == 2 * OBSERVATION_DIM + 3
    generator = torch.Generator().manual_seed(0)
    batch = data.sample_training_batch(2, 64, 32, 16, 3, True, generator)
    for name, values in batch.items():
        assert values.float().abs().max() < 100, name
    assert batch["terminations"].sum() == 0
    assert batch["extra_observations"].shape == (2, 64, 32, OBSERVATION_DIM)
    task_of_row = batch["task_ids"].float()[:, None, None]
    torch.testing.assert_close(batch["observations"], task_of_row.expand(64, 32, OBSERVATION_DIM))
    torch.testing.assert_close(batch["context"][..., OBSERVATION_DIM + ACTION_DIM],
                               task_of_row[..., 0].expand(64, 16) / 10)  # sparse context rewards
    # Next actions exist inside a trajectory, not on its last step: 1 + 5 + 0 of task 0's 9.
    assert float(data.steps["next_action_valid"][0, :9].sum()) == 6.0
    assert float(data.steps["next_action_valid"][1, :3].sum()) == 2.0


def test_quality_slices_by_thirds_of_the_largest_training_step():
    steps = np.array([0, 10, 20, 30, 40, 50, 60, 90])
    assert steps[quality_slice_mask(steps, "expert")].tolist() == [60, 90]
    assert steps[quality_slice_mask(steps, "medium")].tolist() == [30, 40, 50]
    assert steps[quality_slice_mask(steps, "random")].tolist() == [0, 10, 20]
    assert quality_slice_mask(steps, "all").all()
    dataset = padded_dataset(0.0, [2] * 8, steps.tolist())
    assert select_trajectories(dataset, "medium", 2, "x").training_steps.tolist() == [40, 50]
    with pytest.raises(UserError, match="no trajectory in the 'medium' slice"):
        select_trajectories(padded_dataset(0.0, [2, 2], [0, 0]), "medium", None, "x")


def test_sparse_contexts_need_sparse_rewards_in_the_data():
    dataset = dataclasses.replace(padded_dataset(0.0, [2], [0]), sparse_rewards=None)
    with pytest.raises(UserError, match="sparse_rewards"):
        OfflineTaskData([dataset], ["f.npz"], True, False, False)


def test_embedding_statistics_on_hand_computed_examples():
    assert embedding_rms(np.array([[0.0], [1.0]])) == pytest.approx(1.0)
    assert embedding_esr(np.array([[0.0], [1.0]])) == 1.0
    means = np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    assert embedding_esr(means) == pytest.approx(1 / 3)
    pairwise = np.mean([(a - b) ** 2 for a, b in itertools.permutations(means[:, 0], 2)])
    assert embedding_rms(means) == pytest.approx(math.sqrt(pairwise))
