"""Stage-1 collection throughput: K agents batched as one stacked ensemble against K single-task
agents trained one after another, with the semi-circle's settings (networks [32, 32], 2
meta-episodes of 120 steps and 500 gradient steps of batch 256 per iteration).

Run: python -m bench.stage1_collection [--num-tasks 16] [--iterations 2] [--device cpu]
Throughput counts environment steps plus gradient updates per second, summed over tasks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from algorithms.agents import act, make_agent
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from utils.config import load_config
from utils.replay import FIELDS, EnsembleReplayBuffer
from utils.rollouts import collect_meta_episodes
from utils.seeding import resolve_device, set_torch_threads
from utils.stage_configs import DataCollectionConfig


def iteration_throughput(seeds: list[int], config: DataCollectionConfig, iterations: int,
                         device: torch.device) -> float:
    """Env steps + updates per second, summed over the tasks of ``seeds`` trained together."""
    num_tasks, replicas = len(seeds), config.num_rollouts_per_iter
    bamdp = BatchedBAMDP(make_batched_env(config.env_type, num_tasks * replicas,
                                          config.env_options), 2)
    tasks = np.stack([bamdp.env.task_from_seed(seed) for seed in seeds])
    bamdp.set_tasks(np.repeat(tasks, replicas, axis=0))
    agent = make_agent(config, num_tasks, bamdp.observation_dim, bamdp.action_space, device)
    dims = {"observations": bamdp.observation_dim, "actions": 2, "rewards": 1,
            "next_observations": bamdp.observation_dim, "terminations": 1}
    buffer = EnsembleReplayBuffer(num_tasks, 20 * bamdp.trajectory_len * replicas, dims, device)
    members = np.repeat(np.arange(num_tasks), replicas)
    rng = np.random.default_rng(0)
    batch = collect_meta_episodes(bamdp, lambda obs: rng.uniform(-1, 1, (len(obs), 2)))
    buffer.add_trajectories({name: getattr(batch, name) for name in FIELDS}, batch.lengths,
                            members)
    started, work = time.perf_counter(), 0
    for _ in range(iterations):
        batch = collect_meta_episodes(bamdp, lambda obs: act(agent, obs, num_tasks, False))
        buffer.add_trajectories({name: getattr(batch, name) for name in FIELDS}, batch.lengths,
                                members)
        for _ in range(config.rl_updates_per_iter):
            agent.update(buffer.sample(config.batch_size))
        work += int(batch.lengths.sum()) + config.rl_updates_per_iter * num_tasks
    if device.type == "cuda":
        torch.cuda.synchronize()
    return work / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-tasks", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args()
    device = resolve_device(arguments.device)
    config = load_config(DataCollectionConfig, ["--env-type", "point_robot_sparse"],
                         config_dir="data_collection_config")
    set_torch_threads(config.torch_threads)
    seeds = list(range(arguments.num_tasks))
    torch.manual_seed(0)
    batched = iteration_throughput(seeds, config, arguments.iterations, device)
    sequential_time = 0.0
    for seed in seeds:
        rate = iteration_throughput([seed], config, arguments.iterations, device)
        sequential_time += 1.0 / rate
    sequential = len(seeds) / sequential_time
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {name}; point_robot_sparse settings, K = {len(seeds)} tasks")
    print(f"batched ensemble : {batched:10,.0f} env steps + updates per second (all tasks)")
    print(f"sequential agents: {sequential:10,.0f} env steps + updates per second (all tasks)")
    print(f"ratio            : {batched / sequential:10.1f}x")


if __name__ == "__main__":
    main()
