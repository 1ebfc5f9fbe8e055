"""Wall time of each stage of the gridworld BOReL pipeline at a small budget, on the chosen device.

The stages are the scripts' ``main`` functions, run one after another in a temporary folder:
stage 1 (21 DQN agents batched, 40 iterations), stage 2 (the VAE with Reward Relabelling, 30
epochs) and stage 3 (State Relabelling and offline DQN, 20 iterations of 250 updates), the budget
of the slow gridworld learning test. ``--quick`` shrinks every stage to a smoke run.

:func:`time_stages` times any list of named stage callables, so the same table can come from
another driver of the pipeline (for example ``reproduce.py``'s stages) by passing its stages.

Run: python -m bench.pipeline [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

import train_agent_offline
import train_single_agent
import train_vae_offline
from bench.common import Section, device_description, synchronise, table
from utils.config import load_config
from utils.seeding import keep_freed_memory, resolve_device
from utils.stage_configs import DataCollectionConfig, OfflineConfig, VAEConfig

Stage = tuple[str, Callable[[], object]]


def time_stages(stages: Sequence[Stage], device: torch.device) -> list[tuple[str, float]]:
    """Run the stages in order; returns (name, wall seconds) of each."""
    timings = []
    for name, function in stages:
        synchronise(device)
        started = time.perf_counter()
        function()
        synchronise(device)
        timings.append((name, time.perf_counter() - started))
    return timings


def gridworld_stages(directory: Path, device: torch.device, quick: bool) -> list[Stage]:
    """Stages 1-3 of the gridworld pipeline writing into ``directory``."""
    common = {"runs_dir": str(directory / "runs"), "data_dir": str(directory / "data"),
              "use_tensorboard": False, "device": str(device)}
    collection = dataclasses.replace(
        load_config(DataCollectionConfig, ["--env-type", "gridworld"],
                    config_dir="data_collection_config"),
        seeds="0-20", num_iters=40, log_interval=20, save_interval=40, **common)
    vae = dataclasses.replace(load_config(VAEConfig, ["--env-type", "gridworld"],
                                          config_dir="vae_config"),
                              num_iters=30, eval_interval=30, save_interval=30, **common)
    offline = dataclasses.replace(load_config(OfflineConfig, ["--env-type", "gridworld"],
                                              config_dir="offline_config"),
                                  num_iters=20, rl_updates_per_iter=250, log_interval=10,
                                  save_interval=20, **common)
    if quick:
        collection = dataclasses.replace(
            collection, seeds="0-1", num_iters=1, num_init_rollouts_pool=2,
            num_rollouts_per_iter=2, rl_updates_per_iter=2, batch_size=16, log_interval=1,
            save_interval=1)
        vae = dataclasses.replace(vae, num_iters=1, gru_hidden_size=16, eval_interval=1,
                                  save_interval=1)
        offline = dataclasses.replace(offline, num_train_tasks=None, num_eval_tasks=2, num_iters=1,
                                      rl_updates_per_iter=2, meta_batch=2, batch_size=16,
                                      log_interval=1, save_interval=1)
    return [
        (f"stage 1: {collection.seeds} DQN agents batched, {collection.num_iters} iterations",
         lambda: train_single_agent.main(collection)),
        (f"stage 2: VAE with Reward Relabelling, {vae.num_iters} epochs",
         lambda: train_vae_offline.main(vae)),
        (f"stage 3: offline DQN, {offline.num_iters} x {offline.rl_updates_per_iter} updates",
         lambda: train_agent_offline.main(offline)),
    ]


def run(quick: bool, device: torch.device) -> Section:
    """Per-stage wall time of the gridworld pipeline in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as directory:
        timings = time_stages(gridworld_stages(Path(directory), device, quick), device)
    total = sum(seconds for _, seconds in timings)
    rows = [[name, f"{seconds:,.1f}"] for name, seconds in timings]
    rows.append(["total", f"{total:,.1f}"])
    lines = [
        "`python -m bench.pipeline`: the gridworld chain at the slow learning test's budget "
        "(each script's `main`, logs and checkpoints included), run once.", "",
        *table(["stage", "wall seconds"], rows),
    ]
    return Section("Gridworld pipeline: wall time per stage", lines,
                   {"gridworld pipeline, stages 1-3": f"{total:,.0f} s"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    arguments = parser.parse_args()
    keep_freed_memory()
    device = resolve_device(arguments.device)
    print(device_description(device))
    print(run(arguments.quick, device).markdown())


if __name__ == "__main__":
    main()
