"""Stage-1 collection throughput: K agents batched as one stacked ensemble (or as one ensemble per
worker process, one process per core) against K single-task agents trained one after another,
with the semi-circle's settings (networks [32, 32], 2
meta-episodes of 120 steps and 500 gradient steps of batch 256 per iteration).

Each round runs one training iteration (collection, then the gradient steps) of every contender,
in turns: each batched iteration is cut into K parts that alternate with the K single agents'
iterations, so every contender sees the same machine. The contenders, all in one alternation:
the ensemble and the single agents with one PyTorch thread and with one per core, and the tasks
split over one worker process per core. The figures are medians over the rounds (after one
untimed round). Throughput counts environment steps plus gradient updates per second, summed over
tasks. A second table splits an update's time into its fixed part (the ensemble's update on tiny
batches) and a part per member, which bounds the ratio.

Run: python -m bench.stage1_collection [--num-tasks 16] [--rounds 3] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from algorithms.agents import act, make_agent
from bench.common import (
    Section,
    Timing,
    device_description,
    format_ratio,
    interleaved,
    table,
)
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from utils.config import load_config
from utils.launchers import split_seeds
from utils.replay import FIELDS, EnsembleReplayBuffer
from utils.rollouts import collect_meta_episodes
from utils.seeding import keep_freed_memory, resolve_device, usable_cores, wait_for_device
from utils.stage_configs import DataCollectionConfig

ENV_TYPE = "point_robot_sparse"
SMALL_BATCH = 8  # the batch on which an update's time is its fixed part


class CollectionLoop:
    """The stage-1 training loop of ``train_single_agent.py`` for the tasks of ``seeds``, without
    saving: a stacked agent, R copies of the env per task and a replay buffer per task."""

    def __init__(self, seeds: list[int], config: DataCollectionConfig, updates: int,
                 device: torch.device) -> None:
        self.num_tasks, replicas = len(seeds), config.num_rollouts_per_iter
        self.config, self.updates = config, updates
        self.bamdp = BatchedBAMDP(make_batched_env(config.env_type, self.num_tasks * replicas,
                                                   config.env_options), 2)
        tasks = np.stack([self.bamdp.env.task_from_seed(seed) for seed in seeds])
        self.bamdp.set_tasks(np.repeat(tasks, replicas, axis=0))
        self.bamdp.seed([seed * replicas + replica for seed in seeds
                         for replica in range(replicas)])
        action_dim = self.bamdp.action_space.shape[0]
        self.agent = make_agent(config, self.num_tasks, self.bamdp.observation_dim,
                                self.bamdp.action_space, device)
        dims = {"observations": self.bamdp.observation_dim, "actions": action_dim, "rewards": 1,
                "next_observations": self.bamdp.observation_dim, "terminations": 1}
        self.buffer = EnsembleReplayBuffer(self.num_tasks, 20 * self.bamdp.trajectory_len
                                           * replicas, dims, device)
        self.members = np.repeat(np.arange(self.num_tasks), replicas)
        self.sampler = torch.Generator(device=device)
        self.sampler.manual_seed(seeds[0])
        rng = np.random.default_rng(seeds[0])
        self.collect(lambda observations: rng.uniform(-1, 1, (len(observations), action_dim)))

    def collect(self, policy) -> int:
        batch = collect_meta_episodes(self.bamdp, policy)
        self.buffer.add_trajectories({name: getattr(batch, name) for name in FIELDS},
                                     batch.lengths, self.members)
        return int(batch.lengths.sum())

    def iteration_part(self, part: int, parts: int) -> int:
        """Part ``part`` of ``parts`` of one training iteration (the collection, then an equal
        share of the gradient steps); returns the env steps plus member updates it made."""
        steps = 0
        if part == 0:
            steps = self.collect(lambda observations: act(self.agent, observations,
                                                          self.num_tasks, False))
        updates = self.updates * (part + 1) // parts - self.updates * part // parts
        for _ in range(updates):
            self.agent.update(self.buffer.sample(self.config.batch_size, self.sampler))
        return steps + updates * self.num_tasks

    def iteration(self) -> int:
        """One training iteration; returns the env steps plus member updates it made."""
        return self.iteration_part(0, 1)


class WorkerEnsembles:
    """The tasks of ``seeds`` split over ``workers`` processes (spawned, one PyTorch thread each),
    each training a stacked ensemble of its share: what ``train_single_agent.py --launcher
    processes`` does. ``iteration_part`` runs the same part in every worker at once and returns
    when all have finished, so the driver's wall clock times the slowest worker."""

    def __init__(self, seeds: list[int], config: DataCollectionConfig, updates: int,
                 workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.connections, self.processes = [], []
        for share in split_seeds(seeds, math.ceil(len(seeds) / workers)):
            connection, worker_end = context.Pipe()
            process = context.Process(target=serve_loop, args=(worker_end, share, config,
                                                               updates), daemon=True)
            process.start()
            self.connections.append(connection)
            self.processes.append(process)
        for connection in self.connections:
            connection.recv()  # the worker has built its loop and collected its random pool

    def iteration_part(self, part: int, parts: int) -> int:
        """Part ``part`` of ``parts`` of one iteration in every worker; the work of them all."""
        for connection in self.connections:
            connection.send((part, parts))
        return sum(connection.recv() for connection in self.connections)

    def close(self) -> None:
        """Tell every worker to stop and wait for it to exit."""
        for connection in self.connections:
            connection.send(None)
        for process in self.processes:
            process.join()


def serve_loop(connection, seeds: list[int], config: DataCollectionConfig, updates: int) -> None:
    """A worker of :class:`WorkerEnsembles`: build the ensemble of ``seeds``, then run the
    iteration parts it is sent until it is sent None."""
    torch.set_num_threads(1)
    keep_freed_memory()
    torch.manual_seed(seeds[0])
    loop = CollectionLoop(seeds, config, updates, torch.device("cpu"))
    connection.send("ready")
    while (message := connection.recv()) is not None:
        connection.send(loop.iteration_part(*message))


@dataclass
class Contender:
    """One side of the comparison at one setting: ``part(part, parts)`` runs that part of its
    training iteration and returns the env steps plus member updates it made."""

    side: str  # "batched" or "sequential"
    setting: str
    threads: int
    part: Callable[[int, int], int]
    cpu_time_measured: bool = True  # False for worker processes: the driver only waits


def alternate(contenders: list[Contender], parts: int, rounds: int, device: torch.device
              ) -> tuple[list[Timing], list[int]]:
    """Per round, every contender's training iteration cut into ``parts`` parts, run in turns
    part by part with its own PyTorch thread count (a fine-grained alternation: a drift of the
    machine's speed hits every contender alike), after a first untimed round; returns the
    timings per round and the work of one round, one of each per contender."""
    timings = [Timing() for _ in contenders]
    work = [0] * len(contenders)
    for round_index in range(rounds + 1):
        spent = [[0.0, 0.0] for _ in contenders]
        for part in range(parts):
            for index, contender in enumerate(contenders):
                torch.set_num_threads(contender.threads)
                wait_for_device(device)
                wall, cpu = time.perf_counter(), time.process_time()
                done = contender.part(part, parts)
                wait_for_device(device)
                spent[index][0] += time.perf_counter() - wall
                spent[index][1] += time.process_time() - cpu
                if round_index == 0:
                    work[index] += done
        if round_index > 0:
            for timing, (wall, cpu) in zip(timings, spent, strict=True):
                timing.wall.append(wall)
                timing.cpu.append(cpu)
    return timings, work


def update_costs(batched: CollectionLoop, single: CollectionLoop, batch_size: int, updates: int,
                 rounds: int, device: torch.device) -> dict[str, float]:
    """Milliseconds per gradient update (sampling included) of one single agent, of the ensemble,
    and of the ensemble on batches of ``SMALL_BATCH`` (its fixed cost: Python and operator
    dispatch, the same for any K), as medians of alternating repeats of ``updates`` updates."""

    def updates_of(loop: CollectionLoop, size: int):
        def run() -> None:
            for _ in range(updates):
                loop.agent.update(loop.buffer.sample(size, loop.sampler))
        return run

    timings = interleaved({"single": updates_of(single, batch_size),
                           "ensemble": updates_of(batched, batch_size),
                           "ensemble_small": updates_of(batched, SMALL_BATCH)}, rounds, device)
    return {name: 1e3 * timing.wall_median / updates for name, timing in timings.items()}


def thread_counts() -> list[int]:
    """PyTorch thread counts to measure: the scripts' default (1) and every core of the machine."""
    return sorted({1, usable_cores()})


def run(quick: bool, device: torch.device, num_tasks: int = 16, rounds: int = 3) -> Section:
    """Batched against sequential throughput, every setting in one alternation: one PyTorch
    thread and one per core on both sides, and one worker process per core on the batched side;
    quick: 2 tasks, 2 updates, one round."""
    config = load_config(DataCollectionConfig, ["--env-type", ENV_TYPE],
                         config_dir="data_collection_config")
    if quick:
        num_tasks, rounds, updates = 2, 1, 2
    else:
        updates = config.rl_updates_per_iter
    seeds = list(range(num_tasks))
    threads_before = torch.get_num_threads()
    torch.manual_seed(0)
    batched = CollectionLoop(seeds, config, updates, device)
    singles = [CollectionLoop([seed], config, updates, device) for seed in seeds]

    def sequential_part(part: int, parts: int) -> int:
        return singles[part].iteration()

    contenders = []
    for threads in thread_counts() if device.type == "cpu" else [threads_before]:
        contenders += [Contender("sequential", f"{threads} thread(s)", threads, sequential_part),
                       Contender("batched", f"{threads} thread(s)", threads,
                                 batched.iteration_part)]
    workers = usable_cores() if device.type == "cpu" else 1
    ensembles = None
    if workers > 1:
        ensembles = WorkerEnsembles(seeds, config, updates, workers)
        contenders.append(Contender("batched", f"{workers} worker processes, 1 thread each", 1,
                                    ensembles.iteration_part, cpu_time_measured=False))
    try:
        timings, work = alternate(contenders, num_tasks, rounds, device)
    finally:
        if ensembles is not None:
            ensembles.close()
    rates = [done / timing.wall_median for done, timing in zip(work, timings, strict=True)]
    cpu_rates = [done / timing.cpu_median if contender.cpu_time_measured else None
                 for done, timing, contender in zip(work, timings, contenders, strict=True)]
    sequential = {contender.threads: index for index, contender in enumerate(contenders)
                  if contender.side == "sequential"}

    rows, ratio_lines, headlines = [], [], {}
    for index, contender in enumerate(contenders):
        cpu_rate = cpu_rates[index]
        if contender.side == "sequential":
            label = f"{num_tasks} sequential agents"
        elif cpu_rate is None:
            label = (f"{workers} worker processes, each an ensemble of "
                     f"{math.ceil(num_tasks / workers)}")
        else:
            label = f"batched ensemble, K = {num_tasks}"
        rows.append([label, "1 each" if cpu_rate is None else str(contender.threads),
                     f"{rates[index]:,.0f}", "–" if cpu_rate is None else f"{cpu_rate:,.0f}"])
        if contender.side == "sequential":
            continue
        reference = sequential[contender.threads]
        wall = rates[index] / rates[reference]
        if cpu_rate is None:
            ratio_lines.append(f"- **Batched in {contender.setting} vs sequential, 1 thread: "
                               f"{wall:.2f}x** (wall clock)")
            headlines[f"stage-1 batched vs sequential (K = {num_tasks}, batched in "
                      f"{contender.setting})"] = f"{wall:.1f}x"
        else:
            cpu = cpu_rate / cpu_rates[reference]
            ratio_lines.append(f"- **Batched vs sequential, {contender.setting}: "
                               f"{format_ratio((wall, cpu), device)}**")
            headlines[f"stage-1 batched vs sequential (K = {num_tasks}, {contender.threads} "
                      "PyTorch thread(s))"] = f"{wall:.1f}x"
    fastest = {side: max((index for index, contender in enumerate(contenders)
                          if contender.side == side), key=rates.__getitem__)
               for side in ("batched", "sequential")}
    best_ratio = rates[fastest["batched"]] / rates[fastest["sequential"]]
    ratio_lines.append(
        f"- Each side at its fastest setting (batched: {contenders[fastest['batched']].setting}; "
        f"sequential: {contenders[fastest['sequential']].setting}): **{best_ratio:.2f}x** "
        "(wall clock)")
    headlines[f"stage-1 batched vs sequential (K = {num_tasks}, each side at its fastest "
              "setting)"] = f"{best_ratio:.1f}x"

    cost_rows = []
    for threads in sorted(sequential):
        torch.set_num_threads(threads)
        costs = update_costs(batched, singles[0], config.batch_size, max(updates // 10, 1),
                             rounds + 2, device)
        member = (costs["ensemble"] - costs["ensemble_small"]) / num_tasks
        cost_rows.append([str(threads), f"{costs['single']:.2f}", f"{costs['ensemble']:.2f}",
                          f"{costs['ensemble_small']:.2f}", f"{member:.3f}",
                          f"{num_tasks * costs['single'] / costs['ensemble']:.2f}x",
                          f"{costs['single'] / member:.1f}x" if member > 0 else "n/a"])
    torch.set_num_threads(threads_before)
    lines = [
        f"`python -m bench.stage1_collection`: {num_tasks} {ENV_TYPE} agents (SAC, networks "
        f"{config.critic_hidden_sizes}, batch {config.batch_size}, {updates} gradient steps and "
        f"{config.num_rollouts_per_iter} meta-episodes per iteration), one stacked ensemble "
        f"against {num_tasks} single-task agents one after another; median of {rounds} "
        "round(s). Every setting below is measured in one alternation: each round cuts every "
        f"batched iteration into {num_tasks} parts and runs them in turns with the single "
        "agents' iterations, so every ratio, the fastest settings' included, is measured side "
        "by side. Work = env steps + gradient updates, summed over tasks. Settings: one "
        "PyTorch thread (the scripts' default `--torch-threads 1`) and one thread per core "
        "(`--torch-threads 0` or the core count), the same on both sides; and the tasks split "
        "over one worker process per core, each a stacked ensemble of its share with one "
        "thread (`--launcher processes`), against the sequential agents with one thread. The "
        "workers' CPU time is not measured (–).",
        "",
        *table(["", "PyTorch threads", "work per second (wall)", "work per second (CPU time)"],
               rows),
        "",
        *ratio_lines,
        "", "Target: 8x on 2 CPU cores.", "",
        "Where an update's time goes (milliseconds per gradient update, sampling included; "
        "medians of alternating repeats). The ensemble's update costs a fixed part, Python and "
        "operator dispatch, the same for any K (measured as its update on batches of "
        f"{SMALL_BATCH}), plus a part per member; each sequential agent pays the fixed part "
        "again. So the update phase's ratio, K x single / ensemble, cannot exceed "
        "single / per-member part, however the fixed part is shared.", "",
        *table(["PyTorch threads", "single agent", f"ensemble, K = {num_tasks}",
                f"ensemble, batch {SMALL_BATCH} (fixed part)", "per member",
                "update ratio", "bound: single / per member"], cost_rows),
    ]
    return Section("Stage 1: batched vs sequential collection", lines, headlines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-tasks", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    arguments = parser.parse_args()
    keep_freed_memory()
    device = resolve_device(arguments.device)
    section = run(arguments.quick, device, arguments.num_tasks, arguments.rounds)
    print(device_description(device))
    print(section.markdown())


if __name__ == "__main__":
    main()
