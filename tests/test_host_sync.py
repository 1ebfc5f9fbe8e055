"""The gradient-step hot paths never make the host wait for the device.

On CUDA, reading a device value on the host (``.item()``, ``float(t)``, ``bool(t)``,
``.tolist()``, ``.cpu()``, ``.numpy()``) and every operation whose output shape depends on the data
(``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``, ``repeat_interleave`` with a
tensor of repeats) blocks the host until the GPU has caught up. :class:`HostSyncRecorder` records
these calls while code runs on the CPU, where they cost nothing but are dispatched the same way,
so that the tests below can show, without a GPU, that one update of each algorithm (its replay
sampling included) contains none of them.

One read is exempt: PyTorch's plain (not fused, not capturable) Adam keeps each parameter's step
counter on the host even when the parameters are on a GPU, and reads it there with ``.item()``;
that waits for nothing. The recorder is told these counters (:func:`host_step_counters`).
"""

from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from algorithms.agents import make_agent
from algorithms.common import mean_metrics
from algorithms.focal import FOCAL, FocalHyperparameters
from algorithms.focal_data import OfflineTaskData
from algorithms.focal_discrete import DiscreteFOCAL
from algorithms.online import OnlineBuffers
from algorithms.vae import VAETrainer, build_vae
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from models.vae import VAE
from utils.datasets import FORMAT_VERSION, TaskDataset
from utils.errors import UserError
from utils.replay import EnsembleReplayBuffer, sample_task_indices
from utils.stage_configs import DataCollectionConfig, OfflineConfig, OnlineConfig

ROOT = Path(__file__).resolve().parent.parent
aten = torch.ops.aten

SYNCHRONISING_OPERATIONS = {
    aten._local_scalar_dense.default,  # .item(), float(t), int(t), bool(t), if t: ...
    aten.equal.default,  # torch.equal returns a Python bool
    aten.nonzero.default,
    aten.nonzero_numpy.default,
    aten.masked_select.default,
    aten._unique.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
}
REPEAT_INTERLEAVE_WITH_TENSOR_REPEATS = {aten.repeat_interleave.Tensor,
                                         aten.repeat_interleave.self_Tensor}
INDEXING_OPERATIONS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
                       aten._index_put_impl_.default}
HOST_COPY_METHODS = ("item", "tolist", "cpu", "numpy")


def calling_location() -> str:
    """The innermost frame of the project's code (outside this file) that led to the call."""
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(ROOT) and path != Path(__file__).resolve():
            return f"{path.relative_to(ROOT)}:{frame.lineno} ({frame.line})"
    return "outside the project"


def is_mask(index: object) -> bool:
    """Whether an index is a boolean (or byte) mask, whose use depends on the data."""
    return isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8)


def host_step_counters(*owners: object) -> list[torch.Tensor]:
    """The step counters that plain Adam keeps on the host whatever the parameters' device
    (PyTorch's "special device hosting for step"), of every optimiser held by ``owners`` (as an
    attribute or in a dict attribute); they exist after the first step."""
    counters = []
    for owner in owners:
        for value in vars(owner).values():
            for optimizer in value.values() if isinstance(value, dict) else [value]:
                if not isinstance(optimizer, torch.optim.Optimizer):
                    continue
                for group in optimizer.param_groups:
                    if group.get("fused") or group.get("capturable"):
                        continue
                    counters += [optimizer.state[parameter]["step"]
                                 for parameter in group["params"]
                                 if "step" in optimizer.state[parameter]]
    return counters


class HostSyncRecorder(TorchDispatchMode):
    """Records host-synchronising calls made while active: ``records`` lists
    (what, where) pairs, where names the project line that made the call.

    Inside, every dispatched operation is checked against the synchronising kinds (including
    ``repeat_interleave`` without ``output_size`` and indexing with a boolean mask), and
    ``Tensor.item``, ``tolist``, ``cpu`` and ``numpy`` are replaced by counting wrappers (restored
    on exit). Reads of ``host_tensors`` (tensors that stay on the host when training on a GPU)
    are not recorded.
    """

    def __init__(self, host_tensors: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.records: list[tuple[str, str]] = []
        self.host_tensors = list(host_tensors or [])
        self._originals: dict[str, object] = {}

    def record(self, what: str, tensor: object = None) -> None:
        if not any(tensor is host for host in self.host_tensors):
            self.records.append((what, calling_location()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNCHRONISING_OPERATIONS:
            self.record(str(func), args[0])
        elif func in REPEAT_INTERLEAVE_WITH_TENSOR_REPEATS and kwargs.get("output_size") is None:
            self.record(f"{func} without output_size")
        elif func in INDEXING_OPERATIONS and any(is_mask(index) for index in args[1]):
            self.record(f"{func} with a boolean mask")
        return func(*args, **kwargs)

    def __enter__(self) -> HostSyncRecorder:
        for name in HOST_COPY_METHODS:
            self._originals[name] = torch.Tensor.__dict__.get(name)
            original = getattr(torch.Tensor, name)

            def counting(tensor, *args, _original=original, _name=name, **kwargs):
                self.record(f"Tensor.{_name}", tensor)
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counting)
        return super().__enter__()

    def __exit__(self, *exc_info) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            for name, original in self._originals.items():
                if original is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, original)
            self._originals.clear()


def assert_no_host_sync(recorder: HostSyncRecorder) -> None:
    assert not recorder.records, "host-synchronising calls:\n" + "\n".join(
        f"  {what} at {where}" for what, where in recorder.records)


# ------------------------------------------------------------------------------ the detector
class NonzeroInBackward(torch.autograd.Function):
    """Doubles its input; its backward calls ``nonzero`` (to show that backward passes are seen)."""

    @staticmethod
    def forward(context, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * 2

    @staticmethod
    def backward(context, gradient: torch.Tensor) -> torch.Tensor:
        gradient.nonzero()
        return gradient * 2


@pytest.mark.parametrize("kind", ["float", "int", "bool", "item", "tolist", "cpu", "numpy",
                                  "mask_index", "mask_assign", "nonzero", "masked_select",
                                  "unique", "repeat_interleave", "equal", "in_backward"])
def test_recorder_catches_each_kind_of_host_sync(kind):
    tensor = torch.tensor([1.0, -2.0, 3.0])
    leaf = tensor.clone().requires_grad_(True)
    calls = {
        "float": lambda: float(tensor.sum()),
        "int": lambda: int(tensor.argmax()),
        "bool": lambda: bool(tensor.sum() > 0),
        "item": lambda: tensor.sum().item(),
        "tolist": lambda: tensor.tolist(),
        "cpu": lambda: tensor.cpu(),
        "numpy": lambda: tensor.numpy(),
        "mask_index": lambda: tensor[tensor > 0],
        "mask_assign": lambda: tensor.clone().__setitem__(tensor > 0, torch.zeros(2)),
        "nonzero": lambda: tensor.nonzero(),
        "masked_select": lambda: torch.masked_select(tensor, tensor > 0),
        "unique": lambda: torch.unique(tensor),
        "repeat_interleave": lambda: torch.repeat_interleave(tensor, torch.tensor([1, 2, 0])),
        "equal": lambda: torch.equal(tensor, tensor),
        "in_backward": lambda: NonzeroInBackward.apply(leaf).sum().backward(),
    }
    with HostSyncRecorder() as recorder:
        calls[kind]()
    assert recorder.records, f"{kind} was not recorded"


def test_recorder_ignores_device_side_work_and_restores_the_tensor_methods():
    originals = {name: getattr(torch.Tensor, name) for name in HOST_COPY_METHODS}
    tensor = torch.randn(4, 3, requires_grad=True)
    with HostSyncRecorder() as recorder:
        loss = (tensor.relu() * torch.rand(4, 3)).sum()
        loss.backward()
        torch.where(tensor > 0, tensor, 0.0).index_select(0, torch.tensor([0, 2])).mean()
        torch.repeat_interleave(tensor, 2, dim=0)
    assert_no_host_sync(recorder)
    assert {name: getattr(torch.Tensor, name) for name in HOST_COPY_METHODS} == originals
    assert tensor.detach().sum().item() == pytest.approx(float(tensor.detach().sum()))


class OptimizerOwner:
    """Holds its optimiser in a dict, as FOCAL does."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizers = {"only": optimizer}


def test_only_plain_adams_host_step_counters_are_exempt():
    parameter = torch.nn.Parameter(torch.randn(3))
    optimizer = torch.optim.Adam([parameter])
    parameter.grad = torch.ones(3)
    optimizer.step()
    with HostSyncRecorder() as recorder:
        optimizer.step()
    assert {what for what, _ in recorder.records} == {"Tensor.item",
                                                      "aten._local_scalar_dense.default"}
    counters = host_step_counters(OptimizerOwner(optimizer))
    assert len(counters) == 1 and counters[0] is optimizer.state[parameter]["step"]
    with HostSyncRecorder(counters) as recorder:
        optimizer.step()
        float(parameter.detach().sum())  # any other read is still recorded
    assert [what for what, _ in recorder.records] == ["aten._local_scalar_dense.default"]
    fused = torch.optim.Adam([parameter], fused=True)
    fused.step()
    assert host_step_counters(OptimizerOwner(fused)) == []


# ------------------------------------------------------------------------------ fixtures
def bamdp(env_type: str) -> BatchedBAMDP:
    """One copy of ``env_type`` as a BAMDP of two inner episodes: the spaces the scripts use."""
    return BatchedBAMDP(make_batched_env(env_type, 1), episodes_per_task=2)


def filled_buffer(num_members: int, observation_dim: int, action_dim: int,
                  num_trajectories: int = 3, horizon: int = 20) -> EnsembleReplayBuffer:
    """A buffer of random trajectories (some shorter than ``horizon``) for every member."""
    rng = np.random.default_rng(0)
    count = num_members * num_trajectories
    dims = {"observations": observation_dim, "actions": action_dim, "rewards": 1,
            "next_observations": observation_dim, "terminations": 1}
    arrays = {name: rng.standard_normal((count, horizon, dim)).astype(np.float32)
              for name, dim in dims.items()}
    arrays["terminations"] = (arrays["terminations"] > 1.5).astype(np.float32)
    lengths = rng.integers(horizon // 2, horizon + 1, count)
    buffer = EnsembleReplayBuffer(num_members, count * horizon, dims, initial_capacity=8)
    buffer.add_trajectories(arrays, lengths, np.repeat(np.arange(num_members), num_trajectories))
    return buffer


def one_hot_actions(buffer: EnsembleReplayBuffer) -> None:
    """Make the stored actions one-hot, as datasets store discrete actions."""
    actions = buffer.storage["actions"]
    buffer.storage["actions"] = torch.nn.functional.one_hot(
        actions.argmax(dim=-1), actions.shape[-1]).float()


def stage1_config(**overrides) -> DataCollectionConfig:
    """Stage 1's default config with small networks (and ``overrides``)."""
    return dataclasses.replace(DataCollectionConfig(), critic_hidden_sizes=[16, 16],
                               policy_hidden_sizes=[16, 16], **overrides)


# ------------------------------------------------------------------------------ replay buffer
def test_host_sizes_follow_the_device_sizes_and_sampling_is_unchanged():
    dims = {"observations": 2, "actions": 1, "rewards": 1, "next_observations": 2,
            "terminations": 1}
    rng = np.random.default_rng(0)
    buffer = EnsembleReplayBuffer(3, capacity=12, dims=dims, initial_capacity=2)
    steps = {name: rng.standard_normal((3, 5, dim)).astype(np.float32)
             for name, dim in dims.items()}
    buffer.add_trajectories(steps, np.array([5, 4, 3]), np.arange(3))
    assert buffer.allocated > 2  # grown
    assert buffer.host_sizes.tolist() == buffer.sizes.tolist() == [5, 4, 3]
    more = {name: rng.standard_normal((4, 5, dim)).astype(np.float32)
            for name, dim in dims.items()}
    buffer.add_trajectories(more, np.full(4, 5), np.array([0, 0, 2, 0]))
    assert buffer.host_sizes.tolist() == buffer.sizes.tolist() == [12, 4, 8]  # 0 wrapped
    restored = EnsembleReplayBuffer(3, capacity=12, dims=dims, initial_capacity=1)
    restored.load_state_dict(buffer.state_dict())
    assert restored.host_sizes.tolist() == restored.sizes.tolist() == [12, 4, 8]

    members = torch.tensor([2, 0, 2])
    sample = restored.sample_tasks(members, 50, torch.Generator().manual_seed(3))
    uniform = torch.rand(3, 50, generator=torch.Generator().manual_seed(3))
    indices = (uniform * restored.sizes[members][:, None]).long()  # the draw before the mirror
    expected = restored.storage["observations"][members[:, None], indices].reshape(1, 150, -1)
    assert torch.equal(sample["observations"], expected)

    restored.clear()
    assert restored.host_sizes.tolist() == restored.sizes.tolist() == [0, 0, 0]
    with pytest.raises(UserError, match="empty replay buffer"):
        restored.sample(4)
    partly = {name: values[:1] for name, values in more.items()}
    restored.add_trajectories(partly, np.array([5]), np.array([1]))
    with pytest.raises(UserError, match="task without transitions"):
        restored.sample_tasks(torch.tensor([1]), 4)  # every member must hold transitions


# ------------------------------------------------------------------------------ stage 1
@pytest.mark.parametrize("tuning", [False, True])
def test_stage1_sac_updates_with_sampling_never_sync(tuning):
    torch.manual_seed(0)
    env = bamdp("point_robot_sparse")
    config = stage1_config(automatic_entropy_tuning=tuning)
    agent = make_agent(config, 3, env.observation_dim, env.action_space, torch.device("cpu"))
    buffer = filled_buffer(3, env.observation_dim, env.action_space.shape[0])
    sampler = torch.Generator().manual_seed(0)
    agent.update(buffer.sample(32, sampler))  # the optimisers' state is created outside
    with HostSyncRecorder(host_step_counters(agent)) as recorder:
        metrics = [agent.update(buffer.sample(32, sampler)) for _ in range(3)]
    assert_no_host_sync(recorder)
    assert all(value.shape == () for value in metrics[0].values())


def test_stage1_dqn_updates_with_sampling_never_sync():
    torch.manual_seed(0)
    env = bamdp("gridworld")
    agent = make_agent(stage1_config(), 3, env.observation_dim, env.action_space,
                       torch.device("cpu"))
    buffer = filled_buffer(3, env.observation_dim, int(env.action_space.n))
    one_hot_actions(buffer)
    sampler = torch.Generator().manual_seed(0)
    agent.update(buffer.sample(32, sampler))
    with HostSyncRecorder(host_step_counters(agent)) as recorder:
        for _ in range(3):
            agent.update(buffer.sample(32, sampler))
    assert_no_host_sync(recorder)


# ------------------------------------------------------------------------------ stage 3
@pytest.mark.parametrize(("env_type", "use_cql"), [("point_robot_sparse", False),
                                                   ("point_robot_sparse", True),
                                                   ("gridworld", True)])
def test_offline_updates_on_meta_batches_of_tasks_never_sync(env_type, use_cql):
    torch.manual_seed(0)
    env = bamdp(env_type)
    config = dataclasses.replace(OfflineConfig(env_type=env_type), use_cql=use_cql,
                                 critic_hidden_sizes=[16, 16], policy_hidden_sizes=[16, 16],
                                 cql_num_actions=3)
    discrete = hasattr(env.action_space, "n")
    action_dim = int(env.action_space.n) if discrete else env.action_space.shape[0]
    hyper_dim = env.observation_dim + 2 * 5
    agent = make_agent(config, 1, hyper_dim, env.action_space, torch.device("cpu"),
                       cql_alpha=config.cql_alpha if config.use_cql else 0.0,
                       cql_num_actions=config.cql_num_actions)
    buffer = filled_buffer(4, hyper_dim, action_dim)
    if discrete:
        one_hot_actions(buffer)
    sampler = torch.Generator().manual_seed(0)

    def update() -> dict[str, torch.Tensor]:  # as train_agent_offline.py's loop
        tasks = torch.randint(4, (3,), generator=sampler)
        return agent.update(buffer.sample_tasks(tasks, 16, sampler))

    update()
    with HostSyncRecorder(host_step_counters(agent)) as recorder:
        for _ in range(3):
            update()
    assert_no_host_sync(recorder)


# ------------------------------------------------------------------------------ stage 2
def vae_batch(batch_size: int = 4, horizon: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"observations": torch.randn(batch_size, horizon, 3, generator=generator),
            "actions": torch.rand(batch_size, horizon, 2, generator=generator) * 2 - 1,
            "rewards": torch.randn(batch_size, horizon, 1, generator=generator),
            "next_observations": torch.randn(batch_size, horizon, 3, generator=generator),
            "terminations": torch.zeros(batch_size, horizon, 1),
            "lengths": torch.tensor([horizon, horizon - 2, 3, horizon][:batch_size]),
            "tasks": torch.randn(batch_size, 2, generator=generator)}


@pytest.mark.parametrize("max_grad_norm", [None, 1.0])
def test_vae_trainer_updates_never_sync(max_grad_norm):
    torch.manual_seed(0)
    vae = VAE(3, 2, 4, 8, 4, 6, 2, "deterministic", ["next_state", "action", "state"], [8, 8],
              decode_state=True, state_decoder_hidden_sizes=[8], task_dim=2)
    trainer = VAETrainer(vae, max_grad_norm=max_grad_norm)
    noise = torch.Generator().manual_seed(0)
    trainer.update(vae_batch(), noise)
    batches = [vae_batch(seed=seed) for seed in range(1, 4)]
    with HostSyncRecorder(host_step_counters(trainer)) as recorder:
        for batch in batches:
            trainer.update(batch, noise)
    assert_no_host_sync(recorder)


# ------------------------------------------------------------------------------ FOCAL
def focal_datasets(num_tasks: int, observation_dim: int, action_dim: int, discrete: bool
                   ) -> list[TaskDataset]:
    """Random stage-1-like datasets, some trajectories ending early."""
    rng = np.random.default_rng(0)
    num_trajectories, horizon = 3, 10
    datasets = []
    for task in range(num_tasks):
        def steps(dim: int) -> np.ndarray:
            return rng.standard_normal((num_trajectories, horizon, dim)).astype(np.float32)

        actions = steps(action_dim)
        if discrete:
            actions = np.eye(action_dim, dtype=np.float32)[actions.argmax(axis=-1)]
        truncations = np.zeros((num_trajectories, horizon, 1), dtype=np.float32)
        truncations[:, horizon // 2 - 1] = truncations[:, -1] = 1.0
        datasets.append(TaskDataset(
            observations=steps(observation_dim), actions=np.tanh(actions), rewards=steps(1),
            next_observations=steps(observation_dim), terminations=np.zeros_like(truncations),
            truncations=truncations,
            lengths=np.array([horizon, horizon - 3, horizon], dtype=np.int64),
            training_steps=np.zeros(num_trajectories, dtype=np.int64), task=np.array([task]),
            meta={"format_version": FORMAT_VERSION}, sparse_rewards=steps(1)))
    return datasets


@pytest.mark.parametrize("overrides", [{}, {"use_value_penalty": True},
                                       {"dual_critic_penalty": "magnitude",
                                        "allow_backward_z": True},
                                       {"use_brac": False, "use_task_embedding": False}])
@pytest.mark.parametrize("discrete", [False, True])
def test_focal_updates_with_sampling_never_sync(discrete, overrides):
    torch.manual_seed(0)
    observation_dim, action_dim, num_tasks = 3, 4 if discrete else 2, 4
    data = OfflineTaskData(focal_datasets(num_tasks, observation_dim, action_dim, discrete),
                           ["synthetic"] * num_tasks, sparse_rewards=False,
                           ignore_terminations=False, use_next_obs_in_context=True)
    settings = dataclasses.replace(
        FocalHyperparameters(latent_size=3, net_size=16, context_hidden_sizes=[16]),
        alpha_init=5.0, alpha_max=50.0, **overrides)
    agent_class = DiscreteFOCAL if discrete else FOCAL
    focal = agent_class(data.observation_dim, data.action_dim, data.transition_dim, settings)
    sampler = torch.Generator().manual_seed(0)

    def update() -> dict[str, torch.Tensor]:  # as launch_focal.py's loop
        return focal.update(data.sample_training_batch(
            num_tasks, 3, 8, 5, 3 if settings.use_brac else 1, True, sampler))

    update()
    with HostSyncRecorder(host_step_counters(focal)) as recorder:
        metrics = [update() for _ in range(3)]
    assert_no_host_sync(recorder)
    # alpha is updated in place: each update reports its own copy
    assert metrics[0]["alpha"].data_ptr() != focal.alpha.value.data_ptr()
    assert torch.equal(metrics[-1]["alpha"], focal.alpha.value)


# ------------------------------------------------------------------------------ online VariBAD
@pytest.mark.parametrize("env_type", ["point_robot_sparse", "gridworld"])
def test_online_rl_and_vae_updates_never_sync(env_type):
    torch.manual_seed(0)
    env = bamdp(env_type)
    config = dataclasses.replace(
        OnlineConfig(env_type=env_type), critic_hidden_sizes=[16], policy_hidden_sizes=[16],
        gru_hidden_size=8, latent_dim=3, meta_batch=2, batch_size=16)
    discrete = hasattr(env.action_space, "n")
    action_dim = int(env.action_space.n) if discrete else env.action_space.shape[0]
    num_tasks, horizon, device = 3, 12, torch.device("cpu")
    buffers = OnlineBuffers(num_tasks, horizon, env.observation_dim, action_dim,
                            config.latent_dim, 200, 200, device, oracle=False,
                            keep_policy_trajectories=False)
    rng = np.random.default_rng(0)
    hyper_dim = env.observation_dim + 2 * config.latent_dim
    count = 2 * num_tasks
    transitions = {name: rng.standard_normal((count, horizon, dim)).astype(np.float32)
                   for name, dim in {"observations": hyper_dim, "actions": action_dim,
                                     "rewards": 1, "next_observations": hyper_dim,
                                     "terminations": 1}.items()}
    buffers.policy.add_trajectories(transitions, np.full(count, horizon),
                                    np.repeat(np.arange(num_tasks), 2))
    if discrete:
        one_hot_actions(buffers.policy)
    agent = make_agent(config, 1, hyper_dim, env.action_space, device)
    vae = build_vae(config, env.observation_dim, action_dim, 2, None)
    trainer = VAETrainer(vae, config.vae_lr, config.kl_weight)
    sampler, noise = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    vae_batches = [{**vae_batch(seed=seed), "actions": torch.rand(4, 6, action_dim) * 2 - 1,
                    "observations": torch.randn(4, 6, env.observation_dim),
                    "next_observations": torch.randn(4, 6, env.observation_dim)}
                   for seed in range(4)]

    def update(vae_batch_of_step: dict[str, torch.Tensor]) -> None:
        """An RL and a VAE update as online_training.py's loop makes them; the VAE batch, whose
        meta-episodes are kept in host memory, is gathered beforehand."""
        tasks = sample_task_indices(num_tasks, config.meta_batch, sampler)
        agent.update(buffers.policy.sample_tasks(tasks, config.batch_size, sampler))
        trainer.update(vae_batch_of_step, noise)

    update(vae_batches[0])
    with HostSyncRecorder(host_step_counters(agent, trainer)) as recorder:
        for batch in vae_batches[1:]:
            update(batch)
    assert_no_host_sync(recorder)


# ------------------------------------------------------------------------------ logging
def test_mean_metrics_equals_a_per_key_loop_with_one_host_copy():
    generator = torch.Generator().manual_seed(0)
    updates = [{"loss": torch.randn((), generator=generator),
                "alpha": torch.rand((), generator=generator),
                "count": torch.tensor(index, dtype=torch.int64)} for index in range(7)]
    reference = {key: float(np.mean([float(metrics[key]) for metrics in updates]))
                 for key in updates[0]}
    with HostSyncRecorder() as recorder:
        averaged = mean_metrics(updates)
    assert [what for what, _ in recorder.records] == ["Tensor.tolist"]
    assert list(averaged) == list(reference)
    for key, value in reference.items():
        assert isinstance(averaged[key], float)
        assert averaged[key] == pytest.approx(value, rel=1e-6, abs=1e-7)
    assert mean_metrics([]) == {}
