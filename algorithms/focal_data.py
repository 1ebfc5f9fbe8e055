"""FOCAL's offline data: the task split, quality slices, and batches sampled on the device.

FOCAL reads the stage-1 datasets (``data/<env-type>/<dataset-name>/task_<seed>.npz``). Tasks are
sorted by seed: the first ``num_train_tasks`` train, the next ``num_eval_tasks`` are held out. Each
task's trajectories may be restricted to a quality slice of the collection history by the training
step s at which they were collected, with M the task's largest step:

    expert: s >= 2M/3        medium: M/3 <= s < 2M/3        random: s < M/3    (all: everything)

and then to the last ``num_trajs_per_task`` of the slice in collection order. The valid transitions
of every task (padding is never read) are flattened into tensors (num_tasks, M_max, dim) on the
training device, so an RL batch (T, B, .) and a context (T, N, D) for T tasks are gathered in one
indexing operation each, uniformly with replacement within each task (spec focal.md 3.3 and 3.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from utils.datasets import TaskDataset, load_task_dataset, task_files
from utils.errors import UserError

QualitySlice = Literal["all", "expert", "medium", "random"]
STEP_FIELDS = ("observations", "actions", "rewards", "context_rewards", "next_observations",
               "terminations", "next_actions", "next_action_valid")
RL_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminations",
             "next_actions", "next_action_valid")


def quality_slice_mask(training_steps: np.ndarray, quality: QualitySlice) -> np.ndarray:
    """Which trajectories (N,) belong to ``quality``, by thirds of the largest training step."""
    steps = np.asarray(training_steps, dtype=np.int64)
    largest = int(steps.max()) if steps.size else 0
    if quality == "all":
        return np.ones(steps.shape, dtype=bool)
    if quality == "expert":
        return 3 * steps >= 2 * largest
    if quality == "medium":
        return (3 * steps >= largest) & (3 * steps < 2 * largest)
    if quality == "random":
        return 3 * steps < largest
    raise ValueError(f"unknown data slice {quality!r}")


def select_trajectories(dataset: TaskDataset, quality: QualitySlice,
                        num_trajectories: int | None, source: str) -> TaskDataset:
    """The last ``num_trajectories`` trajectories of ``dataset``'s ``quality`` slice."""
    indices = np.flatnonzero(quality_slice_mask(dataset.training_steps, quality))
    if indices.size == 0:
        raise UserError(f"dataset {source}: no trajectory in the {quality!r} slice (training "
                        f"steps {int(dataset.training_steps.min())}.."
                        f"{int(dataset.training_steps.max())})")
    if num_trajectories is not None:
        indices = indices[-num_trajectories:]
    return dataset.select(indices)


@dataclass
class TaskSplit:
    """Seeds and files of the training and held-out tasks, in seed order."""

    train_seeds: list[int]
    eval_seeds: list[int]
    files: list[Path]

    def as_dict(self) -> dict[str, list]:
        return {"train_seeds": self.train_seeds, "eval_seeds": self.eval_seeds,
                "files": [str(path) for path in self.files]}


def split_tasks(directory: Path, num_train_tasks: int, num_eval_tasks: int) -> TaskSplit:
    """Train = the first ``num_train_tasks`` task files by seed, eval = the next ones."""
    found = task_files(directory)
    needed = num_train_tasks + num_eval_tasks
    if num_train_tasks < 1 or num_eval_tasks < 1:
        raise UserError(f"--num-train-tasks and --num-eval-tasks must be >= 1, got "
                        f"{num_train_tasks} and {num_eval_tasks}")
    if len(found) < needed:
        raise UserError(f"dataset directory {directory} holds {len(found)} tasks, but "
                        f"--num-train-tasks {num_train_tasks} + --num-eval-tasks {num_eval_tasks} "
                        f"= {needed} are needed")
    seeds = [seed for seed, _ in found[:needed]]
    return TaskSplit(seeds[:num_train_tasks], seeds[num_train_tasks:],
                     [path for _, path in found[:needed]])


def context_transitions(observations: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                        next_observations: torch.Tensor, use_next_observations: bool
                        ) -> torch.Tensor:
    """Context features [s, a, r] or [s, a, r, s'] of transitions (..., .) -> (..., D)."""
    parts = [observations, actions, rewards]
    if use_next_observations:
        parts.append(next_observations)
    return torch.cat(parts, dim=-1)


def flatten_valid_steps(dataset: TaskDataset, sparse_rewards: bool, ignore_terminations: bool,
                        source: str) -> dict[str, np.ndarray]:
    """The valid transitions of one task as (M, dim) arrays, with the next dataset action.

    ``next_actions[t]`` is the action stored at t + 1 of the same inner episode;
    ``next_action_valid`` is 0 where there is none (the last step of an episode or trajectory).
    """
    mask = dataset.valid_mask()
    following = np.zeros_like(mask)
    following[:, :-1] = mask[:, 1:]
    has_next = following & (dataset.truncations[..., 0] == 0)
    next_actions = np.zeros_like(dataset.actions)
    next_actions[:, :-1] = dataset.actions[:, 1:]
    next_actions[~has_next] = 0.0
    if sparse_rewards:
        if dataset.sparse_rewards is None:
            raise UserError(f"dataset {source}: --sparse-rewards true needs 'sparse_rewards', "
                            "which this dataset does not hold")
        context_rewards = dataset.sparse_rewards
    else:
        context_rewards = dataset.rewards
    terminations = (np.zeros_like(dataset.terminations) if ignore_terminations
                    else dataset.terminations)
    arrays = {
        "observations": dataset.observations, "actions": dataset.actions,
        "rewards": dataset.rewards, "context_rewards": context_rewards,
        "next_observations": dataset.next_observations, "terminations": terminations,
        "next_actions": next_actions,
        "next_action_valid": has_next[..., None].astype(np.float32),
    }
    return {name: np.asarray(values[mask], dtype=np.float32) for name, values in arrays.items()}


class OfflineTaskData:
    """Every task's valid transitions on the device: step tensors (num_tasks, M_max, dim).

    Task index i refers to ``tasks[i]``; the split's training tasks come first.
    """

    def __init__(self, datasets: list[TaskDataset], sources: list[str], sparse_rewards: bool,
                 ignore_terminations: bool, use_next_obs_in_context: bool,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.use_next_obs_in_context = use_next_obs_in_context
        self.sparse_rewards = sparse_rewards
        self.tasks = np.stack([dataset.task for dataset in datasets])
        self.sources, self.metas = list(sources), [dataset.meta for dataset in datasets]
        self.num_trajectories = [dataset.num_trajectories for dataset in datasets]
        flat = [flatten_valid_steps(dataset, sparse_rewards, ignore_terminations, source)
                for dataset, source in zip(datasets, sources, strict=True)]
        counts = [len(steps["observations"]) for steps in flat]
        largest = max(counts)
        self.steps: dict[str, torch.Tensor] = {}
        for name in STEP_FIELDS:
            width = flat[0][name].shape[1]
            padded = np.zeros((len(flat), largest, width), dtype=np.float32)
            for index, steps in enumerate(flat):
                padded[index, : counts[index]] = steps[name]
            self.steps[name] = torch.from_numpy(padded).to(self.device)
        self.counts = torch.tensor(counts, dtype=torch.long, device=self.device)
        self.observation_dim = int(self.steps["observations"].shape[-1])
        self.action_dim = int(self.steps["actions"].shape[-1])

    @classmethod
    def load(cls, split: TaskSplit, env_type: str, quality: QualitySlice,
             num_trajectories: int | None, sparse_rewards: bool, ignore_terminations: bool,
             use_next_obs_in_context: bool, device: torch.device | str) -> OfflineTaskData:
        """Load the split's task files (checked to be ``env_type``'s), sliced by quality."""
        datasets, sources = [], []
        for path in split.files:
            dataset = load_task_dataset(path, expected_env_type=env_type)
            datasets.append(select_trajectories(dataset, quality, num_trajectories, str(path)))
            sources.append(str(path))
        first = datasets[0]
        for dataset, source in zip(datasets, sources, strict=True):
            if dataset.observations.shape[2:] != first.observations.shape[2:] or (
                    dataset.actions.shape[2:] != first.actions.shape[2:]):
                raise UserError(f"dataset {source}: observation/action sizes differ from "
                                f"{sources[0]}'s")
        return cls(datasets, sources, sparse_rewards, ignore_terminations,
                   use_next_obs_in_context, device)

    @classmethod
    def from_config(cls, config: Any, split: TaskSplit, device: torch.device | str
                    ) -> OfflineTaskData:
        """The data of ``split``'s tasks as a FOCAL run with config ``config`` (a
        ``FocalConfig``) reads it: its quality slice, trajectory count, reward and context
        choices."""
        return cls.load(split, config.env_type, config.data_slice, config.num_trajs_per_task,
                        config.sparse_rewards, config.ignore_terminations,
                        config.use_next_obs_in_context, device)

    @property
    def num_tasks(self) -> int:
        return int(self.counts.shape[0])

    @property
    def transition_dim(self) -> int:
        """Width D of one context transition."""
        return (2 * self.observation_dim if self.use_next_obs_in_context
                else self.observation_dim) + self.action_dim + 1

    def _indices(self, task_ids: torch.Tensor, count: int, generator: torch.Generator | None
                 ) -> torch.Tensor:
        uniform = torch.rand(*task_ids.shape, count, generator=generator, device=self.device)
        return (uniform * self.counts[task_ids].unsqueeze(-1)).long()

    def sample_transitions(self, task_ids: torch.Tensor, count: int,
                           generator: torch.Generator | None = None,
                           names: tuple[str, ...] = STEP_FIELDS) -> dict[str, torch.Tensor]:
        """``count`` transitions of each listed task, uniformly with replacement: (T, count, .)
        for each field in ``names``."""
        indices = self._indices(task_ids, count, generator)
        rows = task_ids.unsqueeze(-1)
        return {name: self.steps[name][rows, indices] for name in names}

    def sample_context(self, task_ids: torch.Tensor, count: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Contexts of ``count`` transitions per listed task: (T, count, D); rewards are the
        context rewards (sparse where asked)."""
        indices = self._indices(task_ids, count, generator)
        rows = task_ids.unsqueeze(-1)
        return context_transitions(
            self.steps["observations"][rows, indices], self.steps["actions"][rows, indices],
            self.steps["context_rewards"][rows, indices],
            self.steps["next_observations"][rows, indices], self.use_next_obs_in_context)

    def sample_training_batch(self, num_train_tasks: int, meta_batch: int, batch_size: int,
                              context_size: int, dual_critic_steps: int, replace: bool,
                              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A FOCAL meta-batch (see ``FOCAL.update``): T task ids among the first
        ``num_train_tasks`` (with replacement unless ``replace`` is off), their contexts, RL
        batches, and ``dual_critic_steps - 1`` extra (s, a_b) batches for the dual critic."""
        if replace:
            task_ids = torch.randint(num_train_tasks, (meta_batch,), generator=generator,
                                     device=self.device)
        else:
            if meta_batch > num_train_tasks:
                raise UserError(f"--meta-batch {meta_batch} tasks cannot be drawn without "
                                f"replacement from {num_train_tasks} training tasks")
            task_ids = torch.randperm(num_train_tasks, generator=generator,
                                      device=self.device)[:meta_batch]
        batch = self.sample_transitions(task_ids, batch_size, generator, RL_FIELDS)
        batch["task_ids"] = task_ids
        batch["context"] = self.sample_context(task_ids, context_size, generator)
        if dual_critic_steps > 1:
            extra_ids = task_ids.unsqueeze(0).expand(dual_critic_steps - 1, meta_batch)
            indices = self._indices(extra_ids, batch_size, generator)
            rows = extra_ids.unsqueeze(-1)
            batch["extra_observations"] = self.steps["observations"][rows, indices]
            batch["extra_actions"] = self.steps["actions"][rows, indices]
        return batch
