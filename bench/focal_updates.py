"""FOCAL training throughput: gradient updates per second at an env's configured settings
(meta-batch T, RL batch B, context N, widths, BRAC and its c_iter), sampling included, on the
chosen device, with and without BRAC; and, side by side, the vectorised distance-metric loss
against a per-pair Python loop.

Run: python -m bench.focal_updates [--env-type sparse-point-robot] [--device auto]
     [--updates 20] [--torch-threads 1] [--quick]
The data are synthetic trajectories with the env's observation and action sizes (no dataset needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import torch

from algorithms.focal import FOCAL, FocalHyperparameters, metric_loss
from algorithms.focal_data import OfflineTaskData
from bench.common import Section, device_description, table
from bench.stage_windows import synthetic_datasets
from environments.registry import make_batched_env
from utils.config import load_config
from utils.seeding import keep_freed_memory, resolve_device, set_torch_threads, wait_for_device
from utils.stage_configs import FocalConfig


def updates_per_second(config: FocalConfig, data: OfflineTaskData, updates: int,
                       device: torch.device) -> float:
    focal = FOCAL(data.observation_dim, data.action_dim, data.transition_dim,
                  FocalHyperparameters.from_config(config), device)
    generator = torch.Generator(device=device)
    generator.manual_seed(0)

    def one_update() -> None:
        focal.update(data.sample_training_batch(
            config.num_train_tasks, config.meta_batch, config.batch_size,
            config.embedding_batch_size, config.c_iter if config.use_brac else 1,
            config.mb_replace, generator))

    for _ in range(3):
        one_update()
    wait_for_device(device)
    started = time.perf_counter()
    for _ in range(updates):
        one_update()
    wait_for_device(device)
    return updates / (time.perf_counter() - started)


def metric_loss_loop(latents: torch.Tensor, task_ids: list[int]) -> torch.Tensor:
    """The default metric loss pair by pair, as the original code's double loop."""
    positive, negative = latents.new_zeros(()), latents.new_zeros(())
    positive_count = negative_count = 0
    for first, second in itertools.combinations(range(len(task_ids)), 2):
        squared = (latents[first] - latents[second]).pow(2).mean()
        if task_ids[first] == task_ids[second]:
            positive = positive + (squared + 1e-3).sqrt()
            positive_count += 1
        else:
            negative = negative + 1.0 / (squared + 0.1)
            negative_count += 1
    return positive / (positive_count + 1e-3) + negative / (negative_count + 1e-3)


def metric_loss_seconds(meta_batch: int, latent_size: int, repeats: int, device: torch.device
                        ) -> tuple[float, float]:
    """Seconds per forward + backward of the vectorised and the looped metric loss."""
    latents = torch.rand(meta_batch, latent_size, device=device, requires_grad=True)
    task_ids = torch.randint(0, max(1, meta_batch // 2), (meta_batch,), device=device)
    listed = task_ids.tolist()
    timings = []
    for loss_of in (lambda: metric_loss(latents, task_ids), lambda: metric_loss_loop(latents,
                                                                                     listed)):
        loss_of().backward()
        wait_for_device(device)
        started = time.perf_counter()
        for _ in range(repeats):
            loss_of().backward()
        wait_for_device(device)
        timings.append((time.perf_counter() - started) / repeats)
    return timings[0], timings[1]


QUICK_SETTINGS = {"num_train_tasks": 4, "meta_batch": 2, "batch_size": 8,
                  "embedding_batch_size": 4, "net_size": 16, "context_hidden_sizes": [16]}


def run(quick: bool, device: torch.device, env_types: tuple[str, ...] = ("sparse-point-robot",
                                                                       "cheetah-vel"),
        updates: int = 20) -> Section:
    """Updates per second at each env's FOCAL settings, with and without BRAC, and the metric
    loss against its pair loop; quick: one env at tiny sizes, 2 updates."""
    if quick:
        env_types, updates = env_types[:1], 2
    rows, headlines, metric_rows = [], {}, []
    for env_type in env_types:
        config = load_config(FocalConfig, ["--env-type", env_type], config_dir="configs")
        if quick:
            config = dataclasses.replace(config, **QUICK_SETTINGS)
        env = make_batched_env(config.env_type, 1)
        observation_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
        env.close()
        data = OfflineTaskData(
            synthetic_datasets(config.num_train_tasks, observation_dim, action_dim, 10,
                               config.max_path_length),
            ["synthetic"] * config.num_train_tasks, config.sparse_rewards, False,
            config.use_next_obs_in_context, device)
        for brac in (True, False):
            setting = dataclasses.replace(config, use_brac=brac)
            rate = updates_per_second(setting, data, updates, device)
            label = f"with BRAC (c_iter {config.c_iter})" if brac else "without BRAC"
            rows.append([env_type, label, f"{rate:,.2f}",
                         f"{rate * config.meta_batch * config.batch_size:,.0f}"])
            headlines[f"FOCAL {env_type} updates/s, {label}"] = f"{rate:,.2f}"
        vectorised, looped = metric_loss_seconds(config.meta_batch, config.latent_size,
                                                 2 if quick else 20, device)
        metric_rows.append([env_type, str(config.meta_batch), f"{vectorised * 1e3:.2f}",
                            f"{looped * 1e3:.2f}", f"{looped / vectorised:.1f}x"])
    settings = "; ".join(
        f"{env_type}: its `configs/{env_type}.json`" for env_type in env_types)
    lines = [
        f"`python -m bench.focal_updates`: one FOCAL update = encoder and metric loss, c_iter "
        f"dual-critic steps (with BRAC), twin Q, V and policy, sampling included, on synthetic "
        f"data with each env's sizes ({settings}); {updates} timed updates after 3 warm-up "
        "updates.", "",
        *table(["env", "setting", "updates per second", "RL transitions per second"], rows),
        "", "Metric loss forward + backward, vectorised against the pair loop:", "",
        *table(["env", "meta-batch", "vectorised ms", "pair loop ms", "ratio"], metric_rows),
    ]
    return Section("FOCAL: updates per second", lines, headlines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-type", default="sparse-point-robot")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="CPU threads of PyTorch (0: its default), as --torch-threads")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    arguments = parser.parse_args()
    keep_freed_memory()
    set_torch_threads(arguments.torch_threads)
    device = resolve_device(arguments.device)
    print(device_description(device))
    print(run(arguments.quick, device, (arguments.env_type,), arguments.updates).markdown())


if __name__ == "__main__":
    main()
