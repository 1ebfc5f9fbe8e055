"""Step cost of our MuJoCo families against raw gymnasium, measured side by side in one run.

For HalfCheetah (our ``cheetah_vel`` vs gymnasium ``HalfCheetah-v5``) and Ant (our ``ant_dir`` vs
gymnasium ``Ant-v5``, the same gear-150 RK4 ant) it prints the cost of one copy advanced by one
control step, in microseconds, for:

- raw gymnasium: the unwrapped ``MujocoEnv.step`` (no TimeLimit or checker wrappers);
- ours with K = 1 and with K copies stepped together (cost per copy);
- bare physics: a loop of ``mj_step(model, data, nstep=5)`` on our model, the floor for any wrapper;

and the ratios ours / raw gymnasium (target: at most 1.3). Every run resets after 200 steps and
uses the same pre-drawn random actions; each figure is the best of ``--repeats`` runs, the runners
taking turns within a round.

Example: ``python -m bench.env_step --steps 3000 --copies 16`` (or ``--quick``)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium
import mujoco
import numpy as np
import torch

from bench.common import Section, cpu_model, table
from environments.registry import make_batched_env

EPISODE_STEPS = 200


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


def run(quick: bool, device: torch.device, steps: int = 3000, copies: int = 16,
        repeats: int = 5) -> Section:
    """Our MuJoCo step against gymnasium's (CPU only; ``device`` is not used)."""
    if quick:
        steps, copies, repeats = 40, 2, 1
    rng = np.random.default_rng(0)
    rows, headlines = [], {}
    for ours, raw, action_dim in [("cheetah_vel", "HalfCheetah-v5", 6), ("ant_dir", "Ant-v5", 8)]:
        actions = rng.uniform(-1.0, 1.0, size=(steps, action_dim)).astype(np.float32)
        seconds = best_seconds_per_step({
            "raw": gymnasium_runner(raw, actions),
            "single": ours_runner(ours, actions, 1),
            "batched": ours_runner(ours, actions, copies),
            "physics": physics_runner(ours, actions),
        }, repeats)
        raw_seconds = seconds["raw"]
        rows.append([f"{ours} / {raw}", f"{raw_seconds * 1e6:.1f}",
                     f"{seconds['single'] * 1e6:.1f} ({seconds['single'] / raw_seconds:.2f})",
                     f"{seconds['batched'] * 1e6:.1f} ({seconds['batched'] / raw_seconds:.2f})",
                     f"{seconds['physics'] * 1e6:.1f} ({seconds['physics'] / raw_seconds:.2f})"])
        headlines[f"{ours} step / gymnasium {raw}"] = f"{seconds['single'] / raw_seconds:.2f}"
    lines = [
        f"`python -m bench.env_step`: microseconds per copy and control step (ratio to raw "
        f"gymnasium in brackets; target at most 1.3), best of {repeats} rounds of {steps} steps, "
        f"on the CPU ({cpu_model()}), mujoco {mujoco.__version__}, gymnasium "
        f"{gymnasium.__version__}.", "",
        *table(["ours / gymnasium", "raw gymnasium", "ours, K = 1", f"ours, K = {copies}",
                "bare mj_step"], rows),
    ]
    return Section("Environments: our MuJoCo step against raw gymnasium", lines, headlines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="control steps per run")
    parser.add_argument("--copies", type=int, default=16, help="K for the vectorised run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (best kept)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args()
    section = run(args.quick, torch.device("cpu"), args.steps, args.copies, args.repeats)
    print(section.markdown())


if __name__ == "__main__":
    main()
