"""Step cost of our MuJoCo families against raw gymnasium, measured side by side in one run.

For HalfCheetah (our ``cheetah_vel`` vs gymnasium ``HalfCheetah-v5``) and Ant (our ``ant_dir`` vs
gymnasium ``Ant-v5``, the same gear-150 RK4 ant) it prints the cost of one copy advanced by one
control step, in microseconds, for:

- raw gymnasium: the unwrapped ``MujocoEnv.step`` (no TimeLimit or checker wrappers);
- ours with K = 1 and with K copies stepped together (cost per copy);
- bare physics: a loop of ``mj_step(model, data, nstep=5)`` on our model, the floor for any wrapper;

and the ratios ours / raw gymnasium (target: at most 1.3). Every run resets after 200 steps and
uses the same pre-drawn random actions; each figure is the best of ``--repeats`` runs.

Example: ``python bench/env_step.py --steps 3000 --copies 16``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium
import mujoco

from environments.registry import make_batched_env

EPISODE_STEPS = 200


def device_name() -> str:
    """The CPU model (this benchmark runs on the CPU only)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gymnasium_runner(env_id: str, actions: np.ndarray) -> tuple[Callable[[], None], int]:
    """A run of the unwrapped gymnasium environment and the number of copy-steps it makes."""
    env = gymnasium.make(env_id).unwrapped
    env.reset(seed=0)

    def run() -> None:
        for step, action in enumerate(actions):
            if step % EPISODE_STEPS == 0:
                env.reset()
            env.step(action)

    return run, len(actions)


def ours_runner(env_type: str, actions: np.ndarray, copies: int) -> tuple[Callable[[], None], int]:
    """A run of our family with ``copies`` copies stepped together."""
    env = make_batched_env(env_type, num_envs=copies)
    env.set_tasks(np.stack([env.task_from_seed(seed) for seed in range(copies)]))
    env.seed(list(range(copies)))
    steps = len(actions) // copies
    batched_actions = np.repeat(actions[:steps, None, :], copies, axis=1).astype(np.float64)

    def run() -> None:
        for step in range(steps):
            if step % EPISODE_STEPS == 0:
                env.reset()
            env.step(batched_actions[step])

    return run, steps * copies


def physics_runner(env_type: str, actions: np.ndarray) -> tuple[Callable[[], None], int]:
    """A loop of ``mj_step`` alone on our family's model (the cost no wrapper can avoid)."""
    env = make_batched_env(env_type, num_envs=1)
    model = env.model
    data = mujoco.MjData(model)

    def run() -> None:
        for step, action in enumerate(actions):
            if step % EPISODE_STEPS == 0:
                mujoco.mj_resetData(model, data)
            data.ctrl[:] = action
            mujoco.mj_step(model, data, nstep=env.frame_skip)

    return run, len(actions)


def best_seconds_per_step(
    runners: dict[str, tuple[Callable[[], None], int]], repeats: int
) -> dict[str, float]:
    """Seconds per copy-step of each runner, the best of ``repeats`` rounds; the runners take
    turns within a round, so a slow spell of the machine hits all of them alike."""
    best = {name: float("inf") for name in runners}
    for _ in range(repeats):
        for name, (run, steps) in runners.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="control steps per run")
    parser.add_argument("--copies", type=int, default=16, help="K for the vectorised run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (best kept)")
    args = parser.parse_args()

    print(
        f"device: {device_name()} (CPU), mujoco {mujoco.__version__}, "
        f"gymnasium {gymnasium.__version__}"
    )
    rng = np.random.default_rng(0)
    for ours, raw, action_dim in [("cheetah_vel", "HalfCheetah-v5", 6), ("ant_dir", "Ant-v5", 8)]:
        actions = rng.uniform(-1.0, 1.0, size=(args.steps, action_dim)).astype(np.float32)
        seconds = best_seconds_per_step(
            {
                "raw": gymnasium_runner(raw, actions),
                "single": ours_runner(ours, actions, 1),
                "batched": ours_runner(ours, actions, args.copies),
                "physics": physics_runner(ours, actions),
            },
            args.repeats,
        )
        raw_seconds = seconds["raw"]
        print(f"\n{ours} vs gymnasium {raw} (microseconds per copy-step)")
        print(f"  raw gymnasium {raw:16s} {raw_seconds * 1e6:8.1f}")
        rows = [
            ("ours, K = 1", seconds["single"]),
            (f"ours, K = {args.copies}", seconds["batched"]),
            ("bare mj_step on our model", seconds["physics"]),
        ]
        for label, value in rows:
            print(f"  {label:30s} {value * 1e6:8.1f}   ratio {value / raw_seconds:.2f}")


if __name__ == "__main__":
    main()
