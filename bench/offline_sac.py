"""Offline SAC gradient steps per second: ours against d3rlpy's SAC with the same networks, batch
size, device and fixed temperature, at the semi-circle's stage-3 settings (hyper-states of 3 + 2 x 5
dimensions, 2 actions, networks [128, 128], a meta-batch of 16 tasks x 256 transitions = 4096).

Two comparisons, each measured in alternating turns and summarised by medians:

- a gradient step as each library trains: ours draws the meta-batch from the replay tensors on the
  device (``EnsembleReplayBuffer.sample_tasks``, as ``train_agent_offline.py`` does); d3rlpy draws
  its mini-batch from its replay buffer and converts it (``sample_transition_batch`` then
  ``update``, as its ``fit`` loop does);
- the update alone, both on the same batch already on the device.

d3rlpy is installed only for benchmarks: ``pip install -r bench/requirements.txt``. Without it this
benchmark reports ours alone.

Run: python -m bench.offline_sac [--device cpu] [--rounds 7] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np
import torch

from algorithms.sac import SAC
from bench.common import Section, device_description, format_ratio, interleaved, ratio, table
from utils.replay import EnsembleReplayBuffer
from utils.seeding import keep_freed_memory, resolve_device

OBSERVATION_DIM, ACTION_DIM, HIDDEN, NUM_TASKS, META_BATCH, BATCH_SIZE = 13, 2, 128, 80, 16, 256
TRAJECTORY_LEN, TRAJECTORIES_PER_TASK = 120, 20
GAMMA, TAU, ALPHA, LEARNING_RATE = 0.9, 0.005, 0.01, 3e-4


def synthetic_data(num_tasks: int, trajectories: int, rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
    """Random transitions (num_tasks, trajectories * TRAJECTORY_LEN, dim) of the stage-3 sizes."""
    count = trajectories * TRAJECTORY_LEN

    def normal(dim: int) -> np.ndarray:
        return rng.standard_normal((num_tasks, count, dim)).astype(np.float32)

    return {"observations": normal(OBSERVATION_DIM),
            "actions": np.tanh(normal(ACTION_DIM)), "rewards": normal(1),
            "next_observations": normal(OBSERVATION_DIM),
            "terminations": np.zeros((num_tasks, count, 1), dtype=np.float32)}


def our_step(data: dict[str, np.ndarray], hidden: int, meta_batch: int, batch_size: int,
             device: torch.device):
    """Our agent and buffer; returns (step, update on a fixed batch, fixed batch)."""
    num_tasks, count = data["observations"].shape[:2]
    agent = SAC(1, OBSERVATION_DIM, ACTION_DIM, [hidden, hidden], [hidden, hidden],
                actor_lr=LEARNING_RATE, critic_lr=LEARNING_RATE, gamma=GAMMA, tau=TAU,
                entropy_alpha=ALPHA, device=device)
    dims = {name: values.shape[-1] for name, values in data.items()}
    buffer = EnsembleReplayBuffer(num_tasks, count, dims, device)
    lengths = np.full(num_tasks, count)
    buffer.add_trajectories(data, lengths, np.arange(num_tasks))
    sampler = torch.Generator(device=device)
    sampler.manual_seed(0)

    def sample() -> dict[str, torch.Tensor]:
        tasks = torch.randint(num_tasks, (meta_batch,), generator=sampler, device=device)
        return buffer.sample_tasks(tasks, batch_size, sampler)

    fixed = sample()
    return (lambda: agent.update(sample())), (lambda: agent.update(fixed)), fixed


def d3rlpy_step(data: dict[str, np.ndarray], hidden: int, batch_size: int,
                device: torch.device, fixed: dict[str, torch.Tensor]):
    """d3rlpy's SAC with the same sizes; returns (step as its fit loop does, update alone)."""
    import d3rlpy
    from d3rlpy.torch_utility import TorchMiniBatch

    num_tasks, count = data["observations"].shape[:2]
    timeouts = np.zeros(num_tasks * count, dtype=np.float32)
    timeouts[TRAJECTORY_LEN - 1::TRAJECTORY_LEN] = 1.0
    dataset = d3rlpy.dataset.MDPDataset(
        data["observations"].reshape(-1, OBSERVATION_DIM),
        data["actions"].reshape(-1, ACTION_DIM), data["rewards"].reshape(-1, 1),
        data["terminations"].reshape(-1), timeouts=timeouts)
    encoder = d3rlpy.models.encoders.VectorEncoderFactory([hidden, hidden])
    device_name = f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu:0"
    algorithm = d3rlpy.algos.SACConfig(
        batch_size=batch_size, gamma=GAMMA, tau=TAU, actor_learning_rate=LEARNING_RATE,
        critic_learning_rate=LEARNING_RATE, temp_learning_rate=0.0,
        initial_temperature=ALPHA, actor_encoder_factory=encoder,
        critic_encoder_factory=encoder).create(device=device_name)
    algorithm.build_with_dataset(dataset)
    size = fixed["rewards"].shape[1]
    mini_batch = TorchMiniBatch(
        observations=fixed["observations"][0], actions=fixed["actions"][0],
        rewards=fixed["rewards"][0], next_observations=fixed["next_observations"][0],
        next_actions=fixed["actions"][0], returns_to_go=torch.zeros(size, 1, device=device),
        terminals=fixed["terminations"][0], intervals=torch.ones(size, 1, device=device),
        device=device_name)
    counter = {"step": 0}

    def step() -> None:
        algorithm.update(dataset.sample_transition_batch(batch_size))

    def update() -> None:
        algorithm.impl.update(mini_batch, counter["step"])
        counter["step"] += 1

    return step, update


def run(quick: bool, device: torch.device, rounds: int = 7) -> Section:
    """Gradient steps per second of both; quick: tiny networks and batches, one round."""
    hidden, meta_batch, batch_size = HIDDEN, META_BATCH, BATCH_SIZE
    num_tasks, trajectories = NUM_TASKS, TRAJECTORIES_PER_TASK
    if quick:
        hidden, meta_batch, batch_size, num_tasks, trajectories, rounds = 8, 2, 8, 4, 1, 1
    torch.manual_seed(0)
    data = synthetic_data(num_tasks, trajectories, np.random.default_rng(0))
    ours_step, ours_update, fixed = our_step(data, hidden, meta_batch, batch_size, device)
    total = meta_batch * batch_size
    settings = (f"networks [{hidden}, {hidden}], batch {meta_batch} x {batch_size} = {total}, "
                f"observations {OBSERVATION_DIM}, actions {ACTION_DIM}, fixed temperature")
    have_d3rlpy = importlib.util.find_spec("d3rlpy") is not None
    if not have_d3rlpy:
        timings = interleaved({"ours step": ours_step, "ours update": ours_update}, rounds,
                              device)
        rows = [[name, f"{1 / timing.wall_median:,.1f}"] for name, timing in timings.items()]
        return Section("Offline SAC: ours against d3rlpy", [
            f"`python -m bench.offline_sac`: {settings}.", "",
            "d3rlpy is not installed (`pip install -r bench/requirements.txt`); ours alone:", "",
            *table(["", "gradient steps per second"], rows)])
    import d3rlpy

    theirs_step, theirs_update = d3rlpy_step(data, hidden, total, device, fixed)
    timings = interleaved({"ours step": ours_step, "d3rlpy step": theirs_step,
                           "ours update": ours_update, "d3rlpy update": theirs_update},
                          rounds, device)
    step_ratio = ratio(timings["d3rlpy step"], timings["ours step"])
    update_ratio = ratio(timings["d3rlpy update"], timings["ours update"])
    rows = [[name, f"{1 / timing.wall_median:,.1f}", f"{1 / timing.cpu_median:,.1f}"]
            for name, timing in timings.items()]
    lines = [
        f"`python -m bench.offline_sac`: d3rlpy {d3rlpy.__version__}, {settings}; median of "
        f"{rounds} alternating rounds. A *step* includes drawing the batch from each library's "
        "replay storage; an *update* is the gradient step alone on the same batch.", "",
        *table(["", "per second (wall)", "per second (CPU time)"], rows), "",
        f"**Gradient steps as trained: ours {format_ratio(step_ratio, device)} d3rlpy's**; "
        f"the update alone: {format_ratio(update_ratio, device)} (target 1.5x).",
    ]
    return Section("Offline SAC: ours against d3rlpy", lines, {
        "offline SAC steps vs d3rlpy (sampling included)": f"{step_ratio[0]:.2f}x",
        "offline SAC update alone vs d3rlpy": f"{update_ratio[0]:.2f}x"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    arguments = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    device = resolve_device(arguments.device)
    print(device_description(device))
    print(run(arguments.quick, device, arguments.rounds).markdown())


if __name__ == "__main__":
    main()
