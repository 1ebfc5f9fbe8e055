"""The Ray launcher on a local Ray instance with 2 CPUs (one per module): stage-1 datasets equal
the in-process launcher's, a task whose worker dies is retried and resumes from what it saved,
finished groups survive a task that fails for good, and a script joins a running cluster with
``--ray-address`` and reports a task's bad input in one line. Skipped when ray is not installed
(pip install -r requirements-ray.txt)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import train_single_agent  # noqa: E402
from tests.test_train_single_agent import tiny_config  # noqa: E402
from utils.datasets import load_task_dataset  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.launchers import LaunchError, launch  # noqa: E402
from utils.runs import RunDirectory  # noqa: E402
from utils.seeding import seed_label  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminations",
          "truncations", "lengths", "training_steps", "task")
SEEDS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module; launch() joins it instead of starting its own."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMRL_PROGRESS": "0"}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The four tasks collected by the in-process launcher, one group per seed."""
    directory = tmp_path_factory.mktemp("local")
    train_single_agent.collect(collection_config(directory, "local"))
    return {seed: load_task_dataset(task_path(directory, seed)) for seed in SEEDS}


def collection_config(directory: Path, launcher: str, **overrides):
    return tiny_config(directory, "gridworld", seeds="0-3", seeds_per_task=1, num_iters=2,
                       save_interval=1, log_interval=2, launcher=launcher,
                       ray_num_cpus=1.0, **overrides)


def task_path(directory: Path, seed: int) -> Path:
    return directory / "data" / "gridworld" / "default" / f"task_{seed}.npz"


def run_meta(directory: Path, seed: int) -> dict:
    return json.loads((directory / "runs/data_collection/gridworld" / f"default_s{seed}"
                       / "meta.json").read_text())


def assert_equal_to_reference(directory: Path, reference: dict, seeds: list[int]) -> None:
    for seed in seeds:
        dataset = load_task_dataset(task_path(directory, seed))
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(dataset, name), getattr(reference[seed], name),
                                          err_msg=f"task {seed}: {name}")


def collect_but_die_once(config, group: list[int]):
    """Seed 1's first attempt kills its worker process right after saving iteration 1 (datasets
    and checkpoint), as a node failure would; every other call collects normally."""
    marker = Path(config.data_dir) / f"died_{seed_label(group)}"
    if group == [1] and not marker.exists():
        save_checkpoint = RunDirectory.save_checkpoint

        def save_then_die(self, state, step, keep):
            path = save_checkpoint(self, state, step, keep)
            if step == 1:
                marker.touch()
                os._exit(1)
            return path

        RunDirectory.save_checkpoint = save_then_die  # only in this worker, which then dies
    return train_single_agent.collect_group(config, group)


def test_ray_tasks_collect_the_same_datasets_as_the_local_launcher(cluster, tmp_path, reference):
    run_dirs = train_single_agent.collect(collection_config(tmp_path, "ray"))
    assert [path.name for path in run_dirs] == [f"default_s{seed}" for seed in SEEDS]
    assert_equal_to_reference(tmp_path, reference, SEEDS)
    for seed in SEEDS:
        assert run_meta(tmp_path, seed)["resumed"] is False


def test_overwrite_then_a_task_whose_worker_dies_is_retried_and_resumes(
        cluster, tmp_path, reference):
    stale_run = tmp_path / "runs/data_collection/gridworld/default_s1"
    (stale_run / "checkpoints").mkdir(parents=True)
    (stale_run / "config.yaml").write_text("stale: true\n")
    (stale_run / "checkpoints/latest.pt").write_bytes(b"not a checkpoint")
    task_path(tmp_path, 0).parent.mkdir(parents=True)
    task_path(tmp_path, 0).write_bytes(b"not a dataset")
    config = collection_config(tmp_path, "ray", max_retries=2, overwrite=True)
    launch(collect_but_die_once, config, [[0], [1]], train_single_agent.group_outputs)
    assert (tmp_path / "data" / "died_1").exists()
    assert_equal_to_reference(tmp_path, reference, [0, 1])
    assert [run_meta(tmp_path, seed)["resumed"] for seed in (0, 1)] == [False, True]


def test_finished_groups_are_kept_when_a_task_fails_for_good(cluster, tmp_path, reference):
    config = collection_config(tmp_path, "ray", max_retries=0)
    groups = [[0], [1]]
    with pytest.raises(LaunchError, match=r"1 of 2 Ray task\(s\) failed .*\(seeds 1\)"):
        launch(collect_but_die_once, config, groups, train_single_agent.group_outputs)
    partial = load_task_dataset(task_path(tmp_path, 1))
    assert partial.num_trajectories == 3 + 2  # iteration 1 was saved before the worker died
    assert run_meta(tmp_path, 0)["resumed"] is False
    launch(collect_but_die_once, dataclasses.replace(config, resume=True), groups,
           train_single_agent.group_outputs)
    assert_equal_to_reference(tmp_path, reference, [0, 1])
    assert [run_meta(tmp_path, seed)["resumed"] for seed in (0, 1)] == [True, True]


def test_a_script_joins_a_running_cluster_and_reports_user_errors_in_one_line(cluster,
                                                                              tmp_path):
    failed = subprocess.run(
        [sys.executable, "launch_focal.py", "--env-type", "point-robot", "--seeds", "0-1",
         "--device", "cpu", "--launcher", "ray", "--ray-address", cluster, "--runs-dir",
         str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == (
        f"error: seeds 0: dataset directory {tmp_path / 'data/point-robot/default'} does not "
        "exist (1 other group(s) failed too)"), failed.stderr


def test_tasks_that_ask_for_more_than_the_cluster_has_are_refused(cluster, tmp_path):
    config = collection_config(tmp_path, "ray", ray_num_gpus=1.0)
    with pytest.raises(UserError, match=r"each task asks for 1 GPU\(s\) but the Ray cluster "
                       "has 0; lower --ray-num-gpus"):
        train_single_agent.collect(config)
    assert not (tmp_path / "runs").exists()
