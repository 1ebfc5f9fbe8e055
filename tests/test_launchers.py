"""The launcher interface without Ray: seed groups, output checks, the in-process launcher for
stage 1 and FOCAL seeds, the worker-process launcher, failure reports, the worker context, and
the exit-2 error when ``--launcher ray`` is asked without ray installed. Ray itself:
tests/test_ray_launcher.py."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import launch_focal
import train_single_agent
from tests.test_launch_focal import tiny_config as tiny_focal_config
from tests.test_launch_focal import write_random_datasets
from tests.test_train_single_agent import tiny_config
from utils.datasets import load_task_dataset
from utils.errors import UserError
from utils.launchers import (
    DriverContext,
    GroupOutputs,
    LaunchError,
    check_reachable,
    claim_outputs,
    launch,
    raise_failures,
    run_in_worker,
    split_seeds,
    worker_count,
)
from utils.seeding import usable_cores

ROOT = Path(__file__).resolve().parent.parent
ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminations",
          "truncations", "lengths", "training_steps", "task")


def test_split_seeds_into_consecutive_groups():
    assert split_seeds([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
    assert split_seeds([5, 9, 1], None) == [[5, 9, 1]]
    assert split_seeds([7], 3) == [[7]]
    with pytest.raises(UserError, match="--seeds-per-task must be at least 1"):
        split_seeds([0, 1], 0)


def test_local_launcher_runs_each_group_in_order_with_its_config(tmp_path):
    config = tiny_config(tmp_path, "gridworld")
    calls = []
    results = launch(lambda config, group: calls.append(group) or sum(group), config,
                     [[3, 4], [1], [9]])
    assert calls == [[3, 4], [1], [9]] and results == [7, 1, 9]


def test_stage1_groups_write_one_run_per_group_and_every_task_file(tmp_path):
    config = tiny_config(tmp_path, "gridworld", seeds="0-4", seeds_per_task=2, num_iters=1)
    run_dirs = train_single_agent.collect(config)
    assert [path.name for path in run_dirs] == ["default_s0-1", "default_s2-3", "default_s4"]
    random_seeds = []
    for run_dir, group in zip(run_dirs, ([0, 1], [2, 3], [4]), strict=True):
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["seeds"] == train_single_agent.seed_label(group)
        random_seeds.append(saved["seed"])
        for seed in group:
            dataset = load_task_dataset(tmp_path / f"data/gridworld/default/task_{seed}.npz")
            assert dataset.meta["seed"] == seed and dataset.num_trajectories == 3 + 2
            assert dataset.meta["collection_run"] == str(run_dir)
    assert len(set(random_seeds)) == 3  # groups do not repeat each other's random draws
    again = train_single_agent.group_config(config, [2, 3])
    assert again.seed == random_seeds[1]  # the derivation is deterministic


def test_a_group_runs_exactly_as_the_same_seeds_run_alone(tmp_path):
    config = tiny_config(tmp_path / "groups", "gridworld", seeds="5-6", seeds_per_task=1,
                         num_iters=1)
    train_single_agent.collect(config)
    alone = train_single_agent.group_config(config, [6])
    train_single_agent.main(dataclasses.replace(
        alone, runs_dir=str(tmp_path / "alone/runs"), data_dir=str(tmp_path / "alone/data")))
    grouped = load_task_dataset(tmp_path / "groups/data/gridworld/default/task_6.npz")
    single = load_task_dataset(tmp_path / "alone/data/gridworld/default/task_6.npz")
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(grouped, name), getattr(single, name), name)


def test_existing_outputs_stop_the_launch_before_any_group_runs(tmp_path):
    config = tiny_config(tmp_path, "gridworld", seeds="0-3", seeds_per_task=2, num_iters=1)
    existing = tmp_path / "data/gridworld/default/task_3.npz"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"")
    with pytest.raises(UserError, match="task_3.npz already exists; pass --resume true"):
        train_single_agent.collect(config)
    assert not (tmp_path / "runs").exists()  # the first group did not start


def test_outputs_written_by_two_groups_are_refused(tmp_path):
    config = tiny_config(tmp_path, "gridworld")
    shared = tmp_path / "data/task_1.npz"
    outputs = [GroupOutputs(tmp_path / "runs/a", (shared,)),
               GroupOutputs(tmp_path / "runs/b", (tmp_path / "data/task_2.npz", shared))]
    with pytest.raises(UserError, match="task_1.npz would be written by two seed groups"):
        claim_outputs(config, outputs)
    claim_outputs(config, outputs[:1])


def test_launcher_options_are_checked(tmp_path):
    config = tiny_config(tmp_path, "gridworld")
    for overrides, message in [
        ({"launcher": "ray", "device": "cuda"}, "--device cuda with --launcher ray needs"),
        ({"max_retries": -1}, "--max-retries must be 0 or positive"),
        ({"ray_num_cpus": -1.0}, "--ray-num-cpus and --ray-num-gpus must be 0 or positive"),
        ({"resume": True, "overwrite": True}, "contradict"),
        ({"launcher": "processes", "workers": -1}, "--workers must be 0 .* or positive, got -1"),
    ]:
        with pytest.raises(UserError, match=message):
            launch(lambda config, group: None, dataclasses.replace(config, **overrides), [[1]])


def test_an_unreachable_or_malformed_ray_address_is_a_user_error():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        free_port = listener.getsockname()[1]
    with pytest.raises(UserError, match=f"cannot reach the Ray head node at --ray-address "
                       f"127.0.0.1:{free_port}"):
        check_reachable(f"127.0.0.1:{free_port}", timeout_seconds=2.0)
    with pytest.raises(UserError, match="must be auto or host:port, got 'head-node'"):
        check_reachable("head-node")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        check_reachable(f"127.0.0.1:{listener.getsockname()[1]}")
    check_reachable("auto")


def test_focal_seeds_run_one_run_directory_each(tmp_path):
    write_random_datasets(tmp_path / "data", "point-robot", range(6))
    config = tiny_focal_config(tmp_path, "point-robot", seeds="3,5", num_iterations=1)
    run_dirs = launch_focal.train(config)
    assert [path.name for path in run_dirs] == ["default_s3", "default_s5"]
    for run_dir, seed in zip(run_dirs, (3, 5), strict=True):
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["seed"] == seed and saved["seeds"] is None
        assert (run_dir / "progress.csv").is_file()
    with pytest.raises(UserError, match="default_s3 already exists"):
        launch_focal.train(config)


def meet_and_report(config, group: list[int]) -> tuple[int, int, str | None, bool]:
    """A group function for the worker-process launcher (importable by name, as spawn needs):
    leave a marker for this group, wait up to 60 s for every other group's marker, and report
    the process id, the group's sum, the progress setting and whether all the groups met."""
    directory = Path(config.runs_dir)
    (directory / f"group_{group[0]}").touch()
    deadline = time.monotonic() + 60
    met = False
    while not met and time.monotonic() < deadline:
        met = len(list(directory.glob("group_*"))) == config.workers
        time.sleep(0.05)
    return os.getpid(), sum(group), os.environ.get("OMRL_PROGRESS"), met


def fail_or_finish(config, group: list[int]) -> int:
    """Group 13 stops with bad input at once, group 66 dies without a word (as a killed worker
    does) once group 13 has failed, group 7 fails after 1 s, and any other group finishes after
    2 s and leaves a marker."""
    directory = Path(config.runs_dir)
    if group == [13]:
        (directory / "failed_13").touch()
        raise UserError("dataset task_13.npz is corrupt")
    if group == [66]:
        while not (directory / "failed_13").exists():
            time.sleep(0.05)
        os._exit(9)
    time.sleep(1 if group == [7] else 2)
    if group == [7]:
        raise RuntimeError("out of memory")
    (directory / f"finished_{group[0]}").touch()
    return group[0]


def test_processes_launcher_runs_the_groups_side_by_side_in_fresh_processes(tmp_path):
    config = dataclasses.replace(tiny_config(tmp_path, "gridworld"), launcher="processes",
                                 workers=3, runs_dir=str(tmp_path))
    results = launch(meet_and_report, config, [[0, 1], [2], [3, 4, 5]])
    assert [total for _, total, _, _ in results] == [1, 2, 12]
    assert all(met for *_, met in results)  # every group waited for the others: side by side
    pids = {pid for pid, *_ in results}
    assert len(pids) == 3 and os.getpid() not in pids
    assert {progress for _, _, progress, _ in results} == {"0"}  # the driver shows the bar


def test_processes_launcher_reports_every_failure_once_all_groups_ended(tmp_path):
    config = dataclasses.replace(tiny_config(tmp_path, "gridworld"), launcher="processes",
                                 workers=3, runs_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"^seeds 13: dataset task_13.npz is corrupt "
                       r"\(2 other group\(s\) failed too\)$"):
        launch(fail_or_finish, config, [[13], [66], [5], [7]])
    # the worker that died failed its own group only: group 5 started after it and finished
    assert (tmp_path / "finished_5").exists()


def test_worker_count_defaults_to_one_per_core(tmp_path):
    config = tiny_config(tmp_path, "gridworld")
    assert worker_count(dataclasses.replace(config, workers=0)) == usable_cores()
    assert worker_count(dataclasses.replace(config, workers=5)) == 5
    with pytest.raises(UserError, match="--workers must be 0"):
        train_single_agent.collect(dataclasses.replace(config, seeds="0-3", workers=-1,
                                                       launcher="processes"))


def test_stage1_in_worker_processes_matches_the_same_groups_run_locally(tmp_path):
    config = tiny_config(tmp_path / "processes", "gridworld", seeds="0-2", num_iters=1,
                         launcher="processes", workers=2)
    with pytest.raises(UserError, match="give their size with --seeds-per-task, for example 2 "
                       "for 3 seeds on 2 worker"):
        train_single_agent.collect(config)
    config = dataclasses.replace(config, seeds_per_task=2)
    run_dirs = train_single_agent.collect(config)
    assert [path.name for path in run_dirs] == ["default_s0-1", "default_s2"]
    local = dataclasses.replace(config, launcher="local",
                                runs_dir=str(tmp_path / "local/runs"),
                                data_dir=str(tmp_path / "local/data"))
    train_single_agent.collect(local)
    for seed in range(3):
        name = f"data/gridworld/default/task_{seed}.npz"
        in_worker = load_task_dataset(tmp_path / "processes" / name)
        in_process = load_task_dataset(tmp_path / "local" / name)
        for array in ARRAYS:
            np.testing.assert_array_equal(getattr(in_worker, array), getattr(in_process, array),
                                          array)


def test_the_stage1_script_runs_its_groups_in_worker_processes(tmp_path):
    finished = subprocess.run(
        [sys.executable, "train_single_agent.py", "--env-type", "gridworld", "--seeds", "0-1",
         "--seeds-per-task", "1", "--launcher", "processes", "--workers", "2", "--num-iters",
         "1", "--num-init-rollouts-pool", "1", "--num-rollouts-per-iter", "1",
         "--rl-updates-per-iter", "2", "--batch-size", "8", "--use-tensorboard", "false",
         "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMRL_PROGRESS": "0"})
    assert finished.returncode == 0, finished.stderr
    for seed in (0, 1):
        assert load_task_dataset(tmp_path / f"data/gridworld/default/task_{seed}.npz"
                                 ).meta["seed"] == seed
        meta = json.loads((tmp_path / f"runs/data_collection/gridworld/default_s{seed}/"
                           "meta.json").read_text())
        assert "--launcher" in meta["argv"]  # the worker recorded the driver's command line


class FakeTaskError(Exception):
    """Stands for Ray's error of a failed task, which carries the task's exception as cause."""

    def __init__(self, cause: Exception | None) -> None:
        super().__init__(str(cause))
        self.cause = cause


def test_failures_are_reported_with_their_labels():
    labels = ["seeds 0-1", "seeds 2-3", "seeds 4"]
    with pytest.raises(UserError, match=r"^seeds 4: bad dataset \(1 other group\(s\) failed"):
        raise_failures([(2, FakeTaskError(UserError("bad dataset"))),
                        (0, FakeTaskError(RuntimeError("worker died")))], labels, "Ray task(s)")
    with pytest.raises(LaunchError, match=r"2 of 3 Ray task\(s\) failed after their retries "
                       r"\(seeds 0-1, seeds 2-3\)"):
        raise_failures([(1, FakeTaskError(None)), (0, FakeTaskError(None))], labels,
                       "Ray task(s)", " after their retries")
    # a worker process raises the group's own exception, without a Ray wrapper
    with pytest.raises(UserError, match=r"^seeds 2-3: bad dataset$"):
        raise_failures([(1, UserError("bad dataset"))], labels, "worker process(es)")
    with pytest.raises(LaunchError, match=r"^1 of 3 worker process\(es\) failed \(seeds 4\)"):
        raise_failures([(2, RuntimeError("out of memory"))], labels, "worker process(es)")


def test_worker_runs_in_the_driver_directory_with_its_command_line(tmp_path):
    before = os.getcwd(), list(sys.argv), os.environ.get("OMRL_PROGRESS")
    seen = run_in_worker(
        lambda config, group: (os.getcwd(), list(sys.argv), os.environ["OMRL_PROGRESS"], group),
        None, [4], DriverContext(str(tmp_path), ("train_single_agent.py", "--seed", "4")))
    assert seen == (str(tmp_path), ["train_single_agent.py", "--seed", "4"], "0", [4])
    assert (os.getcwd(), sys.argv, os.environ.get("OMRL_PROGRESS")) == before
    with pytest.raises(UserError, match="does not exist on this node"):
        run_in_worker(lambda config, group: None, None, [4],
                      DriverContext(str(tmp_path / "absent"), ()))


def test_launcher_ray_without_ray_installed_exits_with_code_2(tmp_path):
    program = ("import runpy, sys\n"
               "sys.modules['ray'] = None  # as if ray were not installed\n"
               "sys.argv = ['train_single_agent.py', *sys.argv[1:]]\n"
               "runpy.run_path('train_single_agent.py', run_name='__main__')\n")
    completed = subprocess.run(
        [sys.executable, "-c", program, "--env-type", "gridworld", "--launcher", "ray",
         "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip().splitlines() == [
        "error: --launcher ray needs the ray package, which is not installed: "
        "pip install -r requirements-ray.txt"]
    assert not (tmp_path / "runs").exists()


def test_focal_launcher_ray_without_ray_installed_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    config = tiny_focal_config(tmp_path, "point-robot", seeds="0-1", launcher="ray")
    with pytest.raises(UserError, match="--launcher ray needs the ray package"):
        launch_focal.train(config)
    assert not (tmp_path / "runs").exists()
