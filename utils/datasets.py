"""Per-task offline datasets: one ``.npz`` file per task, shared by BOReL and FOCAL.

Layout: ``<data-dir>/<env-type>/<dataset-name>/task_<seed>.npz``. Arrays are episode-major,
``(num_trajectories, trajectory_len, dim)``; every key, dtype and shape is documented in
``docs/dataset_format.md``. Files are written atomically and loaded with ``allow_pickle=False``;
:func:`load_task_dataset` validates everything and raises :class:`DatasetError` (a UserError) with
the file name and the problem.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import UserError
from utils.io import atomic_write_with

FORMAT_VERSION = 1
STEP_ARRAYS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminations",
    "truncations",
)
OPTIONAL_STEP_ARRAYS = ("sparse_rewards",)
SCALAR_PER_STEP = ("rewards", "terminations", "truncations", "sparse_rewards")
TASK_FILE_PATTERN = re.compile(r"^task_(-?\d+)\.npz$")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive (possibly empty)


class DatasetError(UserError):
    """A dataset file that is missing, unreadable or inconsistent."""


@dataclass
class TaskDataset:
    """All trajectories collected in one task.

    Attributes:
        observations: (N, T, obs_dim) float32, observation before each step (with the 0/1
            end-of-episode flag when k > 1).
        actions: (N, T, action_dim) float32, actions as the policy emitted them (Box actions
            in [-1, 1]; discrete actions one-hot).
        rewards: (N, T, 1) float32.
        next_observations: (N, T, obs_dim) float32, the true next state of each step.
        terminations: (N, T, 1) float32 0/1, the TD terminal (goal reached or a fall).
        truncations: (N, T, 1) float32 0/1, 1 on the last step of each inner episode.
        lengths: (N,) int64, valid steps of each trajectory; steps from ``lengths[i]`` on are
            zero padding that no consumer reads.
        training_steps: (N,) int64, the collecting agent's number of gradient updates when the
            trajectory was collected (0 for the random initial pool).
        task: (task_dim,) float64, the task vector.
        meta: JSON-serialisable facts: format version, env-type and options, seed, k, H, ...
        sparse_rewards: optional (N, T, 1) float32 sparse companion rewards.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    lengths: np.ndarray
    training_steps: np.ndarray
    task: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    sparse_rewards: np.ndarray | None = None

    @property
    def num_trajectories(self) -> int:
        return int(self.observations.shape[0])

    @property
    def trajectory_len(self) -> int:
        return int(self.observations.shape[1])

    @property
    def num_transitions(self) -> int:
        return int(self.lengths.sum())

    def valid_mask(self) -> np.ndarray:
        """(N, T) bool: True on real steps, False on padding."""
        return np.arange(self.trajectory_len)[None, :] < self.lengths[:, None]

    def select(self, indices: np.ndarray | slice) -> TaskDataset:
        """The trajectories at ``indices`` (same task and meta)."""
        updates = {
            name: getattr(self, name)[indices]
            for name in (*STEP_ARRAYS, "lengths", "training_steps")
        }
        if self.sparse_rewards is not None:
            updates["sparse_rewards"] = self.sparse_rewards[indices]
        return replace(self, **updates)

    def concatenate(self, other: TaskDataset) -> TaskDataset:
        """This dataset's trajectories followed by ``other``'s (same task and layout)."""
        if not np.array_equal(self.task, other.task):
            raise ValueError("cannot concatenate datasets of different tasks")
        updates = {
            name: np.concatenate([getattr(self, name), getattr(other, name)])
            for name in (*STEP_ARRAYS, "lengths", "training_steps")
        }
        if (self.sparse_rewards is None) != (other.sparse_rewards is None):
            raise ValueError("cannot concatenate datasets with and without sparse_rewards")
        if self.sparse_rewards is not None:
            updates["sparse_rewards"] = np.concatenate([self.sparse_rewards, other.sparse_rewards])
        return replace(self, **updates)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the file format, including ``meta`` as a JSON string array."""
        arrays = {name: getattr(self, name) for name in (*STEP_ARRAYS, "lengths",
                                                         "training_steps", "task")}
        if self.sparse_rewards is not None:
            arrays["sparse_rewards"] = self.sparse_rewards
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True))
        return arrays


def validate_task_dataset(dataset: TaskDataset, source: str) -> None:
    """Raise DatasetError if any array has the wrong dtype or shape, holds NaN, or the padding
    and flags are inconsistent. ``source`` names the file in the message."""
    def fail(problem: str) -> None:
        raise DatasetError(f"dataset {source}: {problem}")

    if dataset.meta.get("format_version") != FORMAT_VERSION:
        fail(f"format version {dataset.meta.get('format_version')!r} is not the supported "
             f"version {FORMAT_VERSION}")
    reference = dataset.observations
    if reference.ndim != 3:
        fail(f"'observations' must have 3 dimensions (N, T, dim), got shape {reference.shape}")
    num_trajectories, trajectory_len = reference.shape[:2]
    names = list(STEP_ARRAYS) + (["sparse_rewards"] if dataset.sparse_rewards is not None else [])
    for name in names:
        array = getattr(dataset, name)
        if array.dtype != np.float32:
            fail(f"'{name}' must be float32, got {array.dtype}")
        if array.ndim != 3 or array.shape[:2] != (num_trajectories, trajectory_len):
            fail(f"'{name}' has shape {array.shape}, expected ({num_trajectories}, "
                 f"{trajectory_len}, dim) like 'observations'")
        if name in SCALAR_PER_STEP and array.shape[2] != 1:
            fail(f"'{name}' must have last dimension 1, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            fail(f"'{name}' holds NaN or infinite values")
    if dataset.next_observations.shape != reference.shape:
        fail(f"'next_observations' has shape {dataset.next_observations.shape}, "
             f"'observations' {reference.shape}")
    for name in ("terminations", "truncations"):
        values = getattr(dataset, name)
        if not np.all((values == 0) | (values == 1)):
            fail(f"'{name}' must hold only 0 and 1")
    for name in ("lengths", "training_steps"):
        array = getattr(dataset, name)
        if array.dtype != np.int64 or array.shape != (num_trajectories,):
            fail(f"'{name}' must be int64 of shape ({num_trajectories},), got {array.dtype} "
                 f"{array.shape}")
    if np.any(dataset.lengths < 1) or np.any(dataset.lengths > trajectory_len):
        fail(f"'lengths' must lie in 1..{trajectory_len}")
    if np.any(dataset.training_steps < 0):
        fail("'training_steps' must be non-negative")
    if dataset.task.dtype != np.float64 or dataset.task.ndim != 1:
        fail(f"'task' must be a float64 vector, got {dataset.task.dtype} {dataset.task.shape}")
    if not np.all(np.isfinite(dataset.task)):
        fail("'task' holds NaN or infinite values")
    if num_trajectories:
        last_steps = dataset.truncations[np.arange(num_trajectories), dataset.lengths - 1, 0]
        if not np.all(last_steps == 1):
            fail("the last valid step of every trajectory must be marked in 'truncations'")


def save_task_dataset(path: Path, dataset: TaskDataset) -> None:
    """Validate and write ``dataset`` to ``path`` atomically (the old file survives a crash)."""
    validate_task_dataset(dataset, str(path))
    arrays = dataset.arrays()
    atomic_write_with(Path(path), lambda stream: np.savez(stream, **arrays))


def load_task_dataset(path: Path, expected_env_type: str | None = None) -> TaskDataset:
    """Load and validate one task's file; never unpickles. Problems raise DatasetError."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset {path} does not exist")
    try:
        with path.open("rb") as stream:
            magic = stream.read(4)
    except OSError as error:
        raise DatasetError(f"dataset {path}: cannot be read ({error.strerror or error})"
                           ) from None
    if magic not in ZIP_MAGIC:
        raise DatasetError(f"dataset {path}: not an .npz archive (a corrupt file, or another "
                           "format such as a pickle, which is never loaded)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            required = (*STEP_ARRAYS, "lengths", "training_steps", "task", "meta")
            missing = [name for name in required if name not in names]
            if missing:
                raise DatasetError(f"dataset {path}: missing key(s) {', '.join(missing)}")
            arrays = {name: archive[name] for name in names}
    except DatasetError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DatasetError(
                f"dataset {path}: holds a pickled object array; datasets must hold plain "
                "numeric arrays"
            ) from None
        raise DatasetError(f"dataset {path}: unreadable ({error})".splitlines()[0]) from None
    except Exception as error:  # anything the zip and .npy parsers raise on damaged bytes
        raise DatasetError(
            f"dataset {path}: truncated or corrupt file ({type(error).__name__}: "
            f"{error})".splitlines()[0]
        ) from None
    not_arrays = sorted(name for name, value in arrays.items() if not isinstance(value,
                                                                              np.ndarray))
    if not_arrays:
        raise DatasetError(f"dataset {path}: member(s) {', '.join(not_arrays)} are not .npy "
                           "arrays")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (ValueError, TypeError, RecursionError) as error:
        raise DatasetError(f"dataset {path}: 'meta' is not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"dataset {path}: 'meta' must be a JSON object")
    known = {item.name for item in fields(TaskDataset)} - {"meta"}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise DatasetError(f"dataset {path}: unknown key(s) {', '.join(unknown)}")
    dataset = TaskDataset(meta=meta, **arrays)
    validate_task_dataset(dataset, str(path))
    if expected_env_type is not None and meta.get("env_type") != expected_env_type:
        raise DatasetError(
            f"dataset {path}: collected on env-type {meta.get('env_type')!r}, "
            f"expected {expected_env_type!r}"
        )
    return dataset


def dataset_directory(data_dir: str | Path, env_type: str, dataset_name: str) -> Path:
    return Path(data_dir) / env_type / dataset_name


def task_file(directory: Path, seed: int) -> Path:
    return Path(directory) / f"task_{seed}.npz"


def task_files(directory: Path) -> list[tuple[int, Path]]:
    """``(seed, path)`` of every task file in ``directory``, sorted by seed."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"dataset directory {directory} does not exist")
    found = []
    for path in directory.iterdir():
        match = TASK_FILE_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        raise DatasetError(f"dataset directory {directory} holds no task_<seed>.npz files")
    return sorted(found)


def load_dataset_directory(
    directory: Path, expected_env_type: str | None = None
) -> list[TaskDataset]:
    """Every task's dataset in ``directory`` sorted by seed, checked to share one layout."""
    datasets = [load_task_dataset(path, expected_env_type) for _, path in task_files(directory)]
    first = datasets[0]
    for (_, path), dataset in zip(task_files(directory), datasets, strict=True):
        if (dataset.trajectory_len, dataset.observations.shape[2], dataset.actions.shape[2]) != (
            first.trajectory_len, first.observations.shape[2], first.actions.shape[2]
        ):
            raise DatasetError(
                f"dataset {path}: shape (T={dataset.trajectory_len}, "
                f"obs={dataset.observations.shape[2]}, act={dataset.actions.shape[2]}) differs "
                f"from the other tasks' (T={first.trajectory_len}, "
                f"obs={first.observations.shape[2]}, act={first.actions.shape[2]})"
            )
    return datasets
