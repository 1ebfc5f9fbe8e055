"""FOCAL training throughput: gradient updates per second at an env's configured settings
(meta-batch T, RL batch B, context N, widths, BRAC and its c_iter), sampling included, on the
chosen device, with and without BRAC; and, side by side, the vectorised distance-metric loss
against a per-pair Python loop.

Run: python -m bench.focal_updates [--env-type sparse-point-robot] [--device auto]
     [--updates 20] [--torch-threads 1]
The data are synthetic trajectories with the env's observation and action sizes (no dataset needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import numpy as np
import torch

from algorithms.focal import FOCAL, FocalHyperparameters, metric_loss
from algorithms.focal_data import OfflineTaskData
from environments.registry import make_batched_env
from utils.config import load_config
from utils.datasets import FORMAT_VERSION, TaskDataset
from utils.seeding import resolve_device, set_torch_threads
from utils.stage_configs import FocalConfig


def synthetic_datasets(num_tasks: int, observation_dim: int, action_dim: int,
                       num_trajectories: int, horizon: int) -> list[TaskDataset]:
    """Random trajectories with the layout of stage-1 datasets."""
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
    started = time.perf_counter()
    for _ in range(updates):
        one_update()
    if device.type == "cuda":
        torch.cuda.synchronize()
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
        started = time.perf_counter()
        for _ in range(repeats):
            loss_of().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append((time.perf_counter() - started) / repeats)
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-type", default="sparse-point-robot")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="CPU threads of PyTorch (0: its default), as --torch-threads")
    arguments = parser.parse_args()
    device = resolve_device(arguments.device)
    config = load_config(FocalConfig, ["--env-type", arguments.env_type,
                                       "--torch-threads", str(arguments.torch_threads)],
                         config_dir="configs")
    set_torch_threads(config.torch_threads)
    env = make_batched_env(config.env_type, 1)
    observation_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    data = OfflineTaskData(
        synthetic_datasets(config.num_train_tasks, observation_dim, action_dim, 10,
                           config.max_path_length),
        ["synthetic"] * config.num_train_tasks, config.sparse_rewards, False,
        config.use_next_obs_in_context, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {name}; {config.env_type} settings: T = {config.meta_batch}, "
          f"B = {config.batch_size}, N = {config.embedding_batch_size}, width "
          f"{config.net_size}, L = {config.latent_size}, BRAC {config.use_brac}")
    for brac in (config.use_brac, not config.use_brac):
        setting = dataclasses.replace(config, use_brac=brac)
        rate = updates_per_second(setting, data, arguments.updates, device)
        label = f"with BRAC (c_iter {config.c_iter})" if brac else "without BRAC"
        transitions = rate * config.meta_batch * config.batch_size
        print(f"FOCAL updates, {label:19s}: {rate:8.1f} per second "
              f"({transitions:,.0f} RL transitions/s)")
    vectorised, looped = metric_loss_seconds(config.meta_batch, config.latent_size, 20, device)
    print(f"metric loss T = {config.meta_batch}: vectorised {vectorised * 1e3:.2f} ms, pair loop "
          f"{looped * 1e3:.2f} ms (forward + backward); ratio {looped / vectorised:.1f}x")


if __name__ == "__main__":
    main()
