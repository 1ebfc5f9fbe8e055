"""Short windows of each stage's training loop at the papers' settings, to profile and to compare
revisions of the code.

Each window runs a few steps of one stage's inner loop on synthetic data of the paper's sizes
(setup is not timed):

- ``stage1``: 16 point_robot_sparse SAC agents stacked (batch 256, networks [32, 32]): one
  collection of 2 meta-episodes per task, then 50 gradient steps with replay sampling;
- ``stage2``: the semi-circle VAE (GRU 128, T = 120, 8 tasks x 8 trajectories): 2 gradient steps;
- ``stage3``: the semi-circle offline SAC (hyper-states 13, networks [128, 128], a meta-batch of
  16 of 80 tasks x 256 transitions): 10 gradient steps with sampling;
- ``focal``: FOCAL at cheetah-vel's settings (BRAC with c_iter 3, widths 256, meta-batch 16 x 256,
  context 100): 2 updates with sampling.

This file imports nothing from ``bench`` so that it can run against another checkout of the
project: ``python bench/stage_windows.py --root OTHER_CHECKOUT --window stage1`` imports
``algorithms``, ``models``, ``utils`` and ``environments`` from there and prints JSON timings; the
allocator setting (``utils.seeding.keep_freed_memory``) is applied when that checkout has it.
``--profile`` prints the operators with the most self CPU time instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

WINDOWS = ("stage1", "stage2", "stage3", "focal")


def synthetic_datasets(num_tasks: int, observation_dim: int, action_dim: int,
                       num_trajectories: int, horizon: int) -> list:
    """Random trajectories with the layout of stage-1 datasets (``TaskDataset``)."""
    import numpy as np

    from utils.datasets import FORMAT_VERSION, TaskDataset

    rng = np.random.default_rng(0)
    datasets = []
    for task in range(num_tasks):
        def steps(dim: int) -> np.ndarray:
            return rng.standard_normal((num_trajectories, horizon, dim)).astype(np.float32)

        truncations = np.zeros((num_trajectories, horizon, 1), dtype=np.float32)
        truncations[:, -1] = 1.0
        datasets.append(TaskDataset(
            observations=steps(observation_dim), actions=np.tanh(steps(action_dim)),
            rewards=steps(1), next_observations=steps(observation_dim),
            terminations=np.zeros_like(truncations), truncations=truncations,
            lengths=np.full(num_trajectories, horizon, dtype=np.int64),
            training_steps=np.zeros(num_trajectories, dtype=np.int64), task=np.array([task]),
            meta={"format_version": FORMAT_VERSION}, sparse_rewards=steps(1)))
    return datasets


def stage1_window(quick: bool) -> Callable[[], None]:
    import numpy as np
    import torch

    from algorithms.agents import act, make_agent
    from environments.bamdp import BatchedBAMDP
    from environments.registry import make_batched_env
    from utils.config import load_config
    from utils.replay import FIELDS, EnsembleReplayBuffer
    from utils.rollouts import collect_meta_episodes
    from utils.stage_configs import DataCollectionConfig

    config = load_config(DataCollectionConfig, ["--env-type", "point_robot_sparse"],
                         config_dir="data_collection_config")
    num_tasks, updates = (2, 2) if quick else (16, 50)
    replicas = config.num_rollouts_per_iter
    bamdp = BatchedBAMDP(make_batched_env(config.env_type, num_tasks * replicas,
                                          config.env_options), 2)
    tasks = np.stack([bamdp.env.task_from_seed(seed) for seed in range(num_tasks)])
    bamdp.set_tasks(np.repeat(tasks, replicas, axis=0))
    agent = make_agent(config, num_tasks, bamdp.observation_dim, bamdp.action_space,
                       torch.device("cpu"))
    dims = {"observations": bamdp.observation_dim, "actions": 2, "rewards": 1,
            "next_observations": bamdp.observation_dim, "terminations": 1}
    buffer = EnsembleReplayBuffer(num_tasks, 20 * bamdp.trajectory_len * replicas, dims)
    members = np.repeat(np.arange(num_tasks), replicas)
    rng = np.random.default_rng(0)

    def collect(policy) -> None:
        batch = collect_meta_episodes(bamdp, policy)
        buffer.add_trajectories({name: getattr(batch, name) for name in FIELDS}, batch.lengths,
                                members)

    collect(lambda observations: rng.uniform(-1, 1, (len(observations), 2)))

    def window() -> None:
        collect(lambda observations: act(agent, observations, num_tasks, False))
        for _ in range(updates):
            agent.update(buffer.sample(config.batch_size))

    return window


def stage2_window(quick: bool) -> Callable[[], None]:
    import torch

    from algorithms.vae import VAETrainer
    from models.vae import VAE

    size, horizon, hidden = (4, 10, 16) if quick else (64, 120, 128)
    vae = VAE(3, 2, 5, hidden, 16, 32, 16, "deterministic", ["next_state"], [32, 32])
    trainer = VAETrainer(vae)
    batch = {"observations": torch.randn(size, horizon, 3),
             "actions": torch.rand(size, horizon, 2) * 2 - 1,
             "rewards": (torch.rand(size, horizon, 1) < 0.2).float(),
             "next_observations": torch.randn(size, horizon, 3),
             "lengths": torch.full((size,), horizon)}

    def window() -> None:
        for _ in range(2):
            trainer.update(batch)

    return window


def stage3_window(quick: bool) -> Callable[[], None]:
    import numpy as np
    import torch

    from algorithms.sac import SAC
    from utils.replay import EnsembleReplayBuffer

    num_tasks, per_task, hidden, meta_batch, batch_size, updates = (
        (4, 50, 8, 2, 8, 2) if quick else (80, 2400, 128, 16, 256, 10))
    agent = SAC(1, 13, 2, [hidden, hidden], [hidden, hidden], gamma=0.9, entropy_alpha=0.01)
    dims = {"observations": 13, "actions": 2, "rewards": 1, "next_observations": 13,
            "terminations": 1}
    rng = np.random.default_rng(0)
    buffer = EnsembleReplayBuffer(num_tasks, per_task, dims)
    arrays = {name: rng.standard_normal((num_tasks, per_task, dim)).astype(np.float32)
              for name, dim in dims.items()}
    arrays["terminations"][:] = 0.0
    buffer.add_trajectories(arrays, np.full(num_tasks, per_task), np.arange(num_tasks))

    def window() -> None:
        for _ in range(updates):
            tasks = torch.randint(num_tasks, (meta_batch,))
            agent.update(buffer.sample_tasks(tasks, batch_size))

    return window


def focal_window(quick: bool) -> Callable[[], None]:
    import dataclasses

    import torch

    from algorithms.focal import FOCAL, FocalHyperparameters
    from algorithms.focal_data import OfflineTaskData
    from utils.config import load_config
    from utils.stage_configs import FocalConfig

    config = load_config(FocalConfig, ["--env-type", "cheetah-vel"], config_dir="configs")
    if quick:
        config = dataclasses.replace(config, num_train_tasks=4, meta_batch=2, batch_size=8,
                                     embedding_batch_size=4, net_size=16,
                                     context_hidden_sizes=[16])
    observation_dim, action_dim = 20, 6
    data = OfflineTaskData(
        synthetic_datasets(config.num_train_tasks, observation_dim, action_dim, 4,
                           config.max_path_length),
        ["synthetic"] * config.num_train_tasks, config.sparse_rewards, False,
        config.use_next_obs_in_context, torch.device("cpu"))
    focal = FOCAL(data.observation_dim, data.action_dim, data.transition_dim,
                  FocalHyperparameters.from_config(config), "cpu")
    generator = torch.Generator().manual_seed(0)

    def window() -> None:
        for _ in range(2):
            focal.update(data.sample_training_batch(
                config.num_train_tasks, config.meta_batch, config.batch_size,
                config.embedding_batch_size, config.c_iter if config.use_brac else 1,
                config.mb_replace, generator))

    return window


BUILDERS = {"stage1": stage1_window, "stage2": stage2_window, "stage3": stage3_window,
            "focal": focal_window}


def window_seconds(name: str, quick: bool, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` runs of a window, after one untimed run."""
    window = BUILDERS[name](quick)
    window()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        window()
        seconds.append(time.perf_counter() - started)
    return seconds


def profile_rows(name: str, quick: bool, count: int) -> list[dict]:
    """The ``count`` operators with the most self CPU time in one run of a window (after one
    untimed run): name, input shapes, milliseconds, share of the window."""
    from torch.profiler import ProfilerActivity, profile

    window = BUILDERS[name](quick)
    window()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        window()
    events = profiler.key_averages(group_by_input_shape=True)
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    ranked = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:count]
    return [{"operator": event.key, "shapes": str(event.input_shapes),
             "calls": event.count, "ms": event.self_cpu_time_total / 1e3,
             "share": event.self_cpu_time_total / total} for event in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]),
                        help="the checkout of the project to import")
    parser.add_argument("--window", choices=WINDOWS, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", type=int, default=0,
                        help="print this many operators by self CPU time instead of timings")
    arguments = parser.parse_args()
    root = Path(arguments.root).resolve()
    sys.path.insert(0, str(root))
    import os

    import torch

    os.chdir(root)  # config folders are found relative to the checkout
    torch.set_num_threads(1)
    import utils.seeding

    if hasattr(utils.seeding, "keep_freed_memory"):
        utils.seeding.keep_freed_memory()
    torch.manual_seed(0)
    if arguments.profile:
        print(json.dumps(profile_rows(arguments.window, arguments.quick, arguments.profile)))
    else:
        seconds = window_seconds(arguments.window, arguments.quick, arguments.repeats)
        print(json.dumps({"median": statistics.median(seconds), "all": seconds}))


if __name__ == "__main__":
    main()
