"""Toy env stepping: K batched copies in one call against K single gymnasium envs in a loop.

Run: python -m bench.toy_env_step [--num-envs 16] [--steps 3000]
Prints steps per second (summed over copies) for each env-type and the batched/sequential ratio.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000)
    arguments = parser.parse_args()
    print(f"device: CPU ({platform.processor() or platform.machine()}), "
          f"K = {arguments.num_envs} copies")
    print(f"{'env-type':22s} {'batched steps/s':>16s} {'sequential steps/s':>19s} {'ratio':>7s}")
    for env_type in ENV_TYPES:
        batched = batched_rate(env_type, arguments.num_envs, arguments.steps)
        sequential = sequential_rate(env_type, arguments.num_envs, arguments.steps // 4)
        print(f"{env_type:22s} {batched:16,.0f} {sequential:19,.0f} {batched / sequential:6.1f}x")


if __name__ == "__main__":
    main()
