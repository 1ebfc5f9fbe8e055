"""Whole-trajectory batches for the belief model, gathered from per-task datasets.

The data stays in host memory (a cheetah or ant collection is tens of GB at paper scale); each
batch is gathered with one fancy index per task and sent to the training device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from utils.datasets import TaskDataset

CellIndex = Callable[[np.ndarray], np.ndarray]


class TrajectoryBatches:
    """Gathers (task, trajectory) pairs into a batch of tensors (B, T, dim).

    ``cell_index`` maps next observations (..., obs_dim) to grid-cell ids (multi-head reward
    decoder); it is only needed for the gridworld.
    """

    def __init__(self, datasets: list[TaskDataset], device: torch.device,
                 cell_index: CellIndex | None = None) -> None:
        self.datasets = datasets
        self.device = device
        self.cell_index = cell_index

    @property
    def num_tasks(self) -> int:
        return len(self.datasets)

    def num_trajectories(self, task: int) -> int:
        return self.datasets[task].num_trajectories

    def gather(self, tasks: np.ndarray, trajectories: np.ndarray) -> dict[str, torch.Tensor]:
        """The trajectories ``trajectories[i]`` of tasks ``tasks[i]`` as one batch."""
        parts: dict[str, list[np.ndarray]] = {name: [] for name in (
            "observations", "actions", "rewards", "next_observations", "terminations",
            "lengths", "tasks")}
        for task in np.unique(tasks):
            rows = trajectories[tasks == task]
            dataset = self.datasets[int(task)]
            for name in ("observations", "actions", "rewards", "next_observations",
                         "terminations", "lengths"):
                parts[name].append(getattr(dataset, name)[rows])
            parts["tasks"].append(np.repeat(dataset.task[None], len(rows), axis=0))
        arrays = {name: np.concatenate(values) for name, values in parts.items()}
        batch = {
            name: torch.as_tensor(value, dtype=torch.float32 if name != "lengths"
                                  else torch.long).to(self.device)
            for name, value in arrays.items()
        }
        if self.cell_index is not None:
            cells = self.cell_index(arrays["next_observations"])
            batch["cells"] = torch.as_tensor(cells, dtype=torch.long).to(self.device)
        return batch


def epoch_schedule(num_trajectories: list[int], tasks_per_batch: int, trajectories_per_task: int,
                   rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of (tasks, trajectories) batches, as BOReL's VAE training walks the data.

    Each task's trajectories are shuffled and walked in chunks of ``trajectories_per_task``; for
    every chunk the tasks are shuffled and grouped by ``tasks_per_batch``, one gradient step per
    group. Tasks with fewer trajectories wrap around. Steps per epoch:
    ceil(max_n / trajectories_per_task) * ceil(num_tasks / tasks_per_batch).
    """
    orders = [rng.permutation(count) for count in num_trajectories]
    num_chunks = math.ceil(max(num_trajectories) / trajectories_per_task)
    for chunk in range(num_chunks):
        positions = chunk * trajectories_per_task + np.arange(trajectories_per_task)
        task_order = rng.permutation(len(num_trajectories))
        for start in range(0, len(task_order), tasks_per_batch):
            group = task_order[start : start + tasks_per_batch]
            tasks = np.repeat(group, trajectories_per_task)
            trajectories = np.concatenate([
                orders[task][positions % num_trajectories[task]] for task in group])
            yield tasks, trajectories
