"""The per-task dataset format: exact round trip, atomic writes, and every kind of bad file
rejected with a message naming the file and the problem."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from utils.datasets import (
    FORMAT_VERSION,
    DatasetError,
    TaskDataset,
    load_dataset_directory,
    load_task_dataset,
    save_task_dataset,
    task_file,
    task_files,
)
from utils.errors import UserError
from utils.rollouts import collect_meta_episodes


def make_dataset(seed: int = 3, num_trajectories: int = 4, env_type: str = "point_robot_sparse"
                 ) -> TaskDataset:
    """Real rollouts of ``env_type`` in the task of ``seed``, in the dataset layout."""
    env = make_batched_env(env_type, num_trajectories)
    task = env.task_from_seed(seed)
    env.set_tasks(np.tile(task, (num_trajectories, 1)))
    env.seed(range(num_trajectories))
    bamdp = BatchedBAMDP(env, episodes_per_task=2)
    rng = np.random.default_rng(seed)
    batch = collect_meta_episodes(bamdp, lambda obs: rng.uniform(-1, 1, (len(obs), 2)))
    return TaskDataset(
        observations=batch.observations,
        actions=batch.actions,
        rewards=batch.rewards,
        next_observations=batch.next_observations,
        terminations=batch.terminations,
        truncations=batch.truncations,
        lengths=batch.lengths,
        training_steps=np.arange(num_trajectories, dtype=np.int64) * 100,
        task=task,
        meta={"format_version": FORMAT_VERSION, "env_type": env_type, "seed": seed},
        sparse_rewards=batch.sparse_rewards,
    )


def write_arrays(path: Path, **arrays) -> None:
    with path.open("wb") as stream:
        np.savez(stream, **arrays)


def test_round_trip_is_exact(tmp_path):
    dataset = make_dataset()
    path = task_file(tmp_path, 3)
    save_task_dataset(path, dataset)
    loaded = load_task_dataset(path, expected_env_type="point_robot_sparse")
    for name in ("observations", "actions", "rewards", "next_observations", "terminations",
                 "truncations", "lengths", "training_steps", "task"):
        original, restored = getattr(dataset, name), getattr(loaded, name)
        assert restored.dtype == original.dtype, name
        np.testing.assert_array_equal(restored, original, err_msg=name)
    assert loaded.meta == dataset.meta
    assert loaded.sparse_rewards is None
    assert loaded.observations.shape == (4, 120, 3)
    assert loaded.num_transitions == 480
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left


def test_optional_sparse_rewards_round_trip(tmp_path):
    dataset = make_dataset(env_type="sparse-point-robot")
    assert dataset.sparse_rewards is not None
    save_task_dataset(tmp_path / "task_0.npz", dataset)
    loaded = load_task_dataset(tmp_path / "task_0.npz")
    np.testing.assert_array_equal(loaded.sparse_rewards, dataset.sparse_rewards)


def test_select_and_concatenate_keep_the_layout():
    dataset = make_dataset()
    first, rest = dataset.select(slice(0, 1)), dataset.select(slice(1, None))
    joined = first.concatenate(rest)
    np.testing.assert_array_equal(joined.observations, dataset.observations)
    np.testing.assert_array_equal(joined.training_steps, dataset.training_steps)
    with pytest.raises(ValueError, match="different tasks"):
        first.concatenate(replace(rest, task=rest.task + 1))


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"task_9.npz does not exist"):
        load_task_dataset(tmp_path / "task_9.npz")


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / "task_3.npz"
    save_task_dataset(path, make_dataset())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"task_3.npz: truncated or corrupt"):
        load_task_dataset(path)


def test_garbage_file_is_rejected(tmp_path):
    path = tmp_path / "task_3.npz"
    path.write_bytes(b"not a zip archive at all")
    with pytest.raises(DatasetError, match="task_3.npz"):
        load_task_dataset(path)


def test_wrong_format_version_is_rejected(tmp_path):
    dataset = make_dataset()
    dataset.meta["format_version"] = 99
    path = tmp_path / "task_3.npz"
    write_arrays(path, **dataset.arrays())
    with pytest.raises(DatasetError, match=r"task_3.npz: format version 99 is not the supported"):
        load_task_dataset(path)


def test_missing_key_is_rejected(tmp_path):
    arrays = make_dataset().arrays()
    del arrays["rewards"]
    path = tmp_path / "task_3.npz"
    write_arrays(path, **arrays)
    with pytest.raises(DatasetError, match=r"task_3.npz: missing key\(s\) rewards"):
        load_task_dataset(path)


def test_shape_mismatch_is_rejected(tmp_path):
    arrays = make_dataset().arrays()
    arrays["rewards"] = arrays["rewards"][:, :-1]
    path = tmp_path / "task_3.npz"
    write_arrays(path, **arrays)
    with pytest.raises(DatasetError, match=r"task_3.npz: 'rewards' has shape \(4, 119, 1\)"):
        load_task_dataset(path)


def test_nan_rewards_are_rejected(tmp_path):
    arrays = make_dataset().arrays()
    arrays["rewards"][1, 5, 0] = np.nan
    path = tmp_path / "task_3.npz"
    write_arrays(path, **arrays)
    with pytest.raises(DatasetError, match=r"task_3.npz: 'rewards' holds NaN"):
        load_task_dataset(path)


def test_pickled_object_arrays_are_rejected_without_unpickling(tmp_path):
    arrays = make_dataset().arrays()
    arrays["observations"] = np.array([{"payload": 1}], dtype=object)
    path = tmp_path / "task_3.npz"
    with path.open("wb") as stream:
        np.savez(stream, **arrays, allow_pickle=True)
    with pytest.raises(DatasetError, match=r"task_3.npz: holds a pickled object array"):
        load_task_dataset(path)


def test_other_inconsistencies_are_rejected(tmp_path):
    dataset = make_dataset()
    cases = {
        "float32": replace(dataset, rewards=dataset.rewards.astype(np.float64)),
        "lengths": replace(dataset, lengths=dataset.lengths + 1),
        "only 0 and 1": replace(dataset, terminations=dataset.terminations + 0.5),
        "last valid step": replace(dataset, truncations=np.zeros_like(dataset.truncations)),
        "'task'": replace(dataset, task=np.array([np.inf, 0.0])),
    }
    for index, (message, broken) in enumerate(cases.items()):
        path = tmp_path / f"task_{index}.npz"
        write_arrays(path, **broken.arrays())
        with pytest.raises(DatasetError, match=message):
            load_task_dataset(path)
        with pytest.raises(DatasetError, match=message):
            save_task_dataset(tmp_path / f"saved_{index}.npz", broken)
    assert not list(tmp_path.glob("saved_*"))


def test_unknown_key_and_bad_meta_are_rejected(tmp_path):
    arrays = make_dataset().arrays()
    path = tmp_path / "task_3.npz"
    write_arrays(path, **arrays, extra=np.zeros(3))
    with pytest.raises(DatasetError, match=r"unknown key\(s\) extra"):
        load_task_dataset(path)
    arrays["meta"] = np.array("{not json")
    write_arrays(path, **arrays)
    with pytest.raises(DatasetError, match="'meta' is not valid JSON"):
        load_task_dataset(path)


def test_env_type_mismatch_is_rejected(tmp_path):
    save_task_dataset(tmp_path / "task_3.npz", make_dataset())
    with pytest.raises(DatasetError, match="collected on env-type 'point_robot_sparse', expected "
                       "'gridworld'"):
        load_task_dataset(tmp_path / "task_3.npz", expected_env_type="gridworld")


def test_interrupted_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "task_3.npz"
    original = make_dataset(num_trajectories=2)
    save_task_dataset(path, original)
    before = path.read_bytes()

    def crash(stream, **arrays):
        stream.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_task_dataset(path, make_dataset(num_trajectories=4))
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_full_disk_is_a_user_error_and_leaves_nothing_partial(tmp_path, monkeypatch):
    path = tmp_path / "task_3.npz"

    def full_disk(stream, **arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(UserError, match="could not write .*task_3.npz: No space left on device"):
        save_task_dataset(path, make_dataset())
    assert list(tmp_path.iterdir()) == []


def test_directory_is_sorted_by_seed_and_checked_for_one_layout(tmp_path):
    for seed in (10, 2, 33):
        save_task_dataset(task_file(tmp_path, seed), make_dataset(seed=seed, num_trajectories=2))
    assert [seed for seed, _ in task_files(tmp_path)] == [2, 10, 33]
    datasets = load_dataset_directory(tmp_path, expected_env_type="point_robot_sparse")
    assert [dataset.meta["seed"] for dataset in datasets] == [2, 10, 33]
    wind = make_dataset(seed=7, env_type="point_robot_wind", num_trajectories=1)
    wind.meta["env_type"] = "point_robot_sparse"
    wind_path = task_file(tmp_path, 7)
    save_task_dataset(wind_path, wind)
    with pytest.raises(DatasetError, match=r"task_7.npz: shape \(T=50"):
        load_dataset_directory(tmp_path)


def test_empty_or_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        task_files(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="holds no task_<seed>.npz files"):
        task_files(tmp_path)


def test_files_are_plain_npz_archives(tmp_path):
    path = tmp_path / "task_3.npz"
    save_task_dataset(path, make_dataset())
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert "meta.npy" in names and "observations.npy" in names
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(str(archive["meta"]))["env_type"] == "point_robot_sparse"
