"""Toy env stepping: K batched copies in one call against K single gymnasium envs in a loop.

Run: python -m bench.toy_env_step [--num-envs 16] [--steps 3000] [--quick]
Prints steps per second (summed over copies) for each env-type and the batched/sequential ratio;
the sequential loop runs a quarter of the steps (it is the slow side).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.common import Section, cpu_model, table
from environments.registry import make_batched_env, make_env

ENV_TYPES = ("gridworld", "point_robot_sparse", "point_robot_wind", "escape_room")


def batched_rate(env_type: str, num_envs: int, steps: int) -> float:
    env = make_batched_env(env_type, num_envs)
    env.set_tasks(np.stack([env.task_from_seed(seed) for seed in range(num_envs)]))
    env.reset()
    rng = np.random.default_rng(0)
    discrete = hasattr(env.action_space, "n")
    actions = (rng.integers(0, 5, (steps, num_envs)) if discrete
               else rng.uniform(-0.1, 0.1, (steps, num_envs, 2)))
    start = time.perf_counter()
    for step in range(steps):
        env.step(actions[step])
    return steps * num_envs / (time.perf_counter() - start)


def sequential_rate(env_type: str, num_envs: int, steps: int) -> float:
    envs = [make_env(env_type, make_batched_env(env_type).task_from_seed(seed))
            for seed in range(num_envs)]
    for env in envs:
        env.reset(seed=0)
    rng = np.random.default_rng(0)
    discrete = hasattr(envs[0].action_space, "n")
    actions = (rng.integers(0, 5, (steps, num_envs)) if discrete
               else rng.uniform(-0.1, 0.1, (steps, num_envs, 2)))
    start = time.perf_counter()
    for step in range(steps):
        for index, env in enumerate(envs):
            env.step(actions[step, index])
    return steps * num_envs / (time.perf_counter() - start)


def run(quick: bool, device: torch.device, num_envs: int = 16, steps: int = 3000) -> Section:
    """Batched against sequential stepping of every toy env (CPU only; ``device`` unused)."""
    if quick:
        num_envs, steps = 2, 40
    rows, ratios = [], []
    for env_type in ENV_TYPES:
        batched = batched_rate(env_type, num_envs, steps)
        sequential = sequential_rate(env_type, num_envs, max(steps // 4, 1))
        ratios.append(batched / sequential)
        rows.append([env_type, f"{batched:,.0f}", f"{sequential:,.0f}",
                     f"{batched / sequential:.1f}x"])
    lines = [f"`python -m bench.toy_env_step`: {num_envs} copies stepped in one call against "
             f"{num_envs} gymnasium envs in a loop, steps per second summed over copies, on the "
             f"CPU ({cpu_model()}).", "",
             *table(["env-type", "batched", "sequential", "ratio"], rows)]
    return Section("Environments: batched toy envs against a loop of gymnasium envs", lines,
                   {f"toy envs batched vs loop (K = {num_envs})":
                    f"{min(ratios):.0f}-{max(ratios):.0f}x"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    arguments = parser.parse_args()
    print(run(arguments.quick, torch.device("cpu"), arguments.num_envs,
              arguments.steps).markdown())


if __name__ == "__main__":
    main()
