"""Fault injection for the stage scripts, reusable by every stage's tests.

A stage script runs in a child process (:func:`run_stage`) exactly as ``python <script> <args>``
would run it: its ``if __name__ == "__main__"`` block executes with ``sys.argv`` set. A
:class:`Fault` makes the child fail at a chosen file write, deterministically (no sleeps, no
races):

- ``kill``: the child sends itself SIGKILL (no cleanup, no ``finally`` blocks run) ``before`` the
  n-th matching write starts, ``during`` it (the temporary file holds half of the content and has
  not been renamed) or ``after`` it (the file has been replaced).
- ``disk_full``: the n-th matching write raises ``OSError(ENOSPC)`` ``during`` the write (after
  the content went to the temporary file, as a failing flush would), or, with moment ``open``,
  every open-for-writing of a matching path from the n-th on fails with ENOSPC (an audit hook),
  which also hits writes that do not go through :mod:`utils.io` (appends, figures).

The atomic writes are found through :func:`utils.io.atomic_open`, through which every dataset,
checkpoint, config and JSON file is written; the hook is installed only in the child, so the
project code holds no test switches. Patterns are ``fnmatch`` patterns on the path relative to the
child's working directory, e.g. ``runs/*/checkpoints/latest.pt`` or ``data/*/task_*.npz``.

Children are forked from the test process by default (the heavy imports are already done, which
keeps kill/resume tests at a few seconds); ``fresh_interpreter=True`` runs ``python
tests/faults.py FAULT SCRIPT ARGS...`` instead, a new interpreter with nothing inherited.

:func:`assert_same_outputs` compares two working directories file by file: datasets array by
array, checkpoints tensor by tensor (loaded with ``weights_only=True``), ``scalars.csv`` and
``progress.csv`` row by row (timings excluded), configs and JSON files.

``STAGES`` lists every stage script at a tiny budget with the inputs it needs
(:func:`make_stage_inputs`, the session fixture ``stage_inputs``). Covering a new stage takes a
``StageCase`` here (and an input tree if it reads one), then its kill points in
``tests/test_faults.py`` and its bad inputs in ``tests/test_bad_input.py``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fnmatch
import importlib
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
KILLED = -signal.SIGKILL
TIMING_TAG_PREFIX = "time/"
UNCOMPARED = ("meta.json", "manifest.json")  # argv, resume flags, file stamps differ by design


@dataclasses.dataclass(frozen=True)
class Fault:
    """Where and how a child run fails (see the module docstring)."""

    pattern: str
    occurrence: int = 1
    moment: Literal["before", "during", "after", "open"] = "after"
    kind: Literal["kill", "disk_full"] = "kill"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Fault | None:
        return None if text == "none" else cls(**json.loads(text))


@dataclasses.dataclass
class StageResult:
    """Exit status (negative: killed by that signal) and the child's output."""

    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float | None = None  # user + system time of a forked child

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def disk_full_error(path: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def install_fault(fault: Fault) -> None:
    """Arm ``fault`` in this process (call only in a child: it cannot be undone)."""
    import utils.io

    def matches(path: str | Path) -> bool:
        relative = os.path.relpath(os.path.abspath(path))
        return fnmatch.fnmatch(Path(relative).as_posix(), fault.pattern)

    if fault.moment == "open":
        if fault.kind != "disk_full":
            raise ValueError("moment 'open' fails writes with ENOSPC; it has no kill")
        count = 0

        def audit(event: str, arguments: tuple) -> None:
            nonlocal count
            if event != "open" or not isinstance(arguments[0], (str, bytes, os.PathLike)):
                return
            mode, flags = arguments[1], arguments[2]
            writing = (any(letter in mode for letter in "wax+") if isinstance(mode, str)
                       else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND)))
            path = os.fsdecode(arguments[0])
            temporary = Path(path).name.startswith(".") and path.endswith(".tmp")
            target = str(Path(path).parent / Path(path).name[1:].rsplit(".", 2)[0]) \
                if temporary else path
            if writing and matches(target):
                count += 1
                if count >= fault.occurrence:
                    raise disk_full_error(path)

        sys.addaudithook(audit)
        return

    original = utils.io.atomic_open
    seen = 0

    @contextlib.contextmanager
    def faulty_atomic_open(path: Path) -> Iterator[Any]:
        nonlocal seen
        armed = False
        if matches(path):
            seen += 1
            armed = seen == fault.occurrence
        if armed and fault.kind == "kill" and fault.moment == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        with original(path) as stream:
            yield stream
            if armed and fault.moment == "during":
                if fault.kind == "disk_full":
                    raise disk_full_error(str(path))
                stream.flush()
                stream.truncate(max(stream.tell() // 2, 1))
                stream.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        if armed and fault.kind == "kill" and fault.moment == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    utils.io.atomic_open = faulty_atomic_open


def execute_script(script: str, argv: list[str], fault: Fault | None) -> None:
    """Run ``script`` as ``__main__`` with ``argv`` (a fault armed first, if any)."""
    if fault is not None:
        install_fault(fault)
    path = Path(script) if Path(script).is_absolute() else ROOT / script
    sys.argv = [str(path), *argv]
    runpy.run_path(str(path), run_name="__main__")


def child_environment() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg", "MUJOCO_GL": "egl", "OMRL_PROGRESS": "0",
            "PYTHONPATH": str(ROOT)}


def run_stage(script: str, argv: list[str], cwd: Path, fault: Fault | None = None,
              fresh_interpreter: bool = False, timeout: float = 300.0) -> StageResult:
    """Run ``python <script> <argv>`` in ``cwd`` in a child process, with ``fault`` armed."""
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    if fresh_interpreter:
        completed = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()),
             fault.to_json() if fault else "none", script, *argv],
            cwd=cwd, env=child_environment(), capture_output=True, text=True, timeout=timeout)
        return StageResult(completed.returncode, completed.stdout, completed.stderr)
    return _run_forked(script, argv, cwd, fault, timeout)


def _run_forked(script: str, argv: list[str], cwd: Path, fault: Fault | None,
                timeout: float) -> StageResult:
    if Path(script).parent == Path(".") and (ROOT / script).is_file():
        importlib.import_module(Path(script).stem)  # its imports, once, in the parent
    stdout_path, stderr_path = cwd / ".child_stdout", cwd / ".child_stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test process
        code = 1
        try:
            os.chdir(cwd)
            for descriptor, path in ((1, stdout_path), (2, stderr_path)):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(handle, descriptor)
                os.close(handle)
            sys.stdout = open(1, "w", closefd=False, buffering=1)
            sys.stderr = open(2, "w", closefd=False, buffering=1)
            os.environ.update(child_environment())
            signal.alarm(int(timeout))
            try:
                execute_script(script, argv, fault)
                code = 0
            except SystemExit as exit_request:
                code = exit_request.code if isinstance(exit_request.code, int) else (
                    0 if exit_request.code is None else 1)
                if not isinstance(exit_request.code, (int, type(None))):
                    print(exit_request.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = stdout_path.read_text(), stderr_path.read_text()
    stdout_path.unlink()
    stderr_path.unlink()
    return StageResult(returncode, stdout, stderr, usage.ru_utime + usage.ru_stime)


# ------------------------------------------------------------------------ stages and inputs
QUIET = ("--use-tensorboard", "false", "--device", "cpu")


@dataclasses.dataclass(frozen=True)
class StageCase:
    """A stage script at a tiny budget and the prepared inputs its working directory starts
    with (a key of :func:`make_stage_inputs`' result, or None)."""

    script: str
    argv: tuple[str, ...]
    inputs: str | None = None


STAGES = {
    "stage1": StageCase("train_single_agent.py", (
        "--env-type", "point_robot_sparse", "--seeds", "0-1", "--num-iters", "3",
        "--num-init-rollouts-pool", "2", "--num-rollouts-per-iter", "2",
        "--rl-updates-per-iter", "3", "--batch-size", "16", "--critic-hidden-sizes", "16",
        "--policy-hidden-sizes", "16", "--log-interval", "2", "--save-interval", "1", *QUIET)),
    "stage2": StageCase("train_vae_offline.py", (
        "--env-type", "gridworld", "--num-iters", "3", "--gru-hidden-size", "16",
        "--log-interval", "1", "--save-interval", "1", "--eval-interval", "3", *QUIET),
        inputs="gridworld"),
    "stage3": StageCase("train_agent_offline.py", (
        "--env-type", "gridworld", "--num-iters", "3", "--rl-updates-per-iter", "3",
        "--meta-batch", "2", "--batch-size", "16", "--num-train-tasks", "null",
        "--num-trajs-per-task", "null", "--num-eval-tasks", "3", "--critic-hidden-sizes", "16",
        "--log-interval", "3", "--save-interval", "1", *QUIET), inputs="gridworld_vae"),
    "focal": StageCase("launch_focal.py", (
        "--env-type", "point-robot", "--num-train-tasks", "3", "--num-eval-tasks", "1",
        "--num-trajs-per-task", "3", "--meta-batch", "3", "--batch-size", "8",
        "--embedding-batch-size", "8", "--net-size", "16", "--context-hidden-sizes", "16",
        "--num-iterations", "3", "--num-train-steps-per-itr", "2", "--log-interval", "2",
        "--save-interval", "1", "--num-steps-per-eval", "20", "--max-path-length", "20",
        "--num-embedding-contexts", "2", "--num-evals", "1", *QUIET), inputs="point-robot"),
    "online": StageCase("online_training.py", (
        "--env-type", "point_robot_sparse", "--num-train-tasks", "3", "--num-eval-tasks", "2",
        "--num-iters", "3", "--num-init-rollouts-pool", "2", "--num-rollouts-per-iter", "2",
        "--num-tasks-sample", "2", "--rl-updates-per-iter", "3", "--vae-updates-per-iter", "2",
        "--meta-batch", "2", "--batch-size", "16", "--critic-hidden-sizes", "16",
        "--policy-hidden-sizes", "16", "--gru-hidden-size", "16", "--belief-rewards", "true",
        "--recompute-beliefs", "true", "--log-interval", "1", "--save-interval", "1", *QUIET)),
}


def make_stage_inputs(root: Path) -> dict[str, Path]:
    """Working directories holding the inputs of the stages in ``STAGES``, made by running the
    earlier stages at tiny budgets: ``gridworld`` (stage-1 data of 3 tasks), ``gridworld_vae``
    (that data and a stage-2 run) and ``point-robot`` (FOCAL-env data of 4 tasks)."""
    import matplotlib.pyplot  # noqa: F401  heavy imports once, before the children fork
    import torch._dynamo  # noqa: F401

    gridworld, point_robot = root / "gridworld", root / "point-robot"
    for cwd, env_type, seeds in ((gridworld, "gridworld", "0-2"),
                                 (point_robot, "point-robot", "0-3")):
        result = run_stage("train_single_agent.py", [
            "--env-type", env_type, "--seeds", seeds, "--num-iters", "1",
            "--num-init-rollouts-pool", "2", "--num-rollouts-per-iter", "2",
            "--rl-updates-per-iter", "2", "--batch-size", "16", "--critic-hidden-sizes", "16",
            "--policy-hidden-sizes", "16", *QUIET], cwd)
        assert result.returncode == 0, result.stderr
        shutil.rmtree(cwd / "runs")
    with_vae = root / "gridworld_vae"
    shutil.copytree(gridworld, with_vae)
    result = run_stage("train_vae_offline.py", [
        "--env-type", "gridworld", "--num-iters", "1", "--gru-hidden-size", "16", *QUIET],
        with_vae)
    assert result.returncode == 0, result.stderr
    return {"gridworld": gridworld, "gridworld_vae": with_vae, "point-robot": point_robot}


def prepare_workdir(stage: str, inputs: dict[str, Path], cwd: Path) -> Path:
    """A new working directory ``cwd`` holding a copy of ``stage``'s inputs."""
    source = STAGES[stage].inputs
    if source is None:
        cwd.mkdir(parents=True)
    else:
        shutil.copytree(inputs[source], cwd)
    return cwd


def run_stage_case(stage: str, cwd: Path, *extra: str, fault: Fault | None = None,
                   fresh_interpreter: bool = False) -> StageResult:
    """Run the stage of ``STAGES`` in ``cwd`` with ``extra`` flags; without a fault it must
    succeed."""
    case = STAGES[stage]
    result = run_stage(case.script, [*case.argv, *extra], cwd, fault, fresh_interpreter)
    if fault is None:
        assert result.returncode == 0, result.stderr
    return result


# ------------------------------------------------------------------------ comparing outputs
def temporary_files(root: Path) -> list[Path]:
    """Files left by an interrupted atomic write (``.<name>.<random>.tmp``)."""
    return sorted(path for path in Path(root).rglob(".*.tmp") if path.is_file())


def output_files(root: Path) -> list[str]:
    """Relative paths of every file under ``root`` except TensorBoard events."""
    return sorted(path.relative_to(root).as_posix() for path in Path(root).rglob("*")
                  if path.is_file() and "tensorboard" not in path.parts)


def _assert_equal_values(expected: Any, actual: Any, where: str) -> None:
    import numpy as np
    import torch

    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), where
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected, err_msg=where)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), where
        for key in expected:
            if not is_timing(key):
                _assert_equal_values(expected[key], actual[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), where
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            _assert_equal_values(left, right, f"{where}[{index}]")
    elif isinstance(expected, float) and expected != expected:
        assert actual != actual, where
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def is_timing(name: Any) -> bool:
    """Whether a logged name or checkpoint key holds a wall-clock time (never reproducible)."""
    return isinstance(name, str) and (name.startswith(TIMING_TAG_PREFIX) or "Time" in name
                                      or "seconds" in name)


def _rows_without_timings(path: Path) -> list[Any]:
    from utils.logger import read_scalars

    if path.name == "scalars.csv":
        return [row for row in read_scalars(path) if not is_timing(row[1])]
    with path.open(newline="") as stream:
        return [{key: value for key, value in row.items() if not is_timing(key)}
                for row in csv.DictReader(stream)]


def assert_same_outputs(expected_root: Path, actual_root: Path) -> None:
    """The two working directories hold the same files with the same contents: datasets and
    checkpoints exactly, logged rows without timings, configs without the resume flag. Figures
    and TensorBoard events are only checked for presence."""
    import numpy as np
    import torch
    import yaml

    expected_files = output_files(expected_root)
    assert output_files(actual_root) == expected_files
    assert not temporary_files(actual_root), temporary_files(actual_root)
    for name in expected_files:
        expected, actual = Path(expected_root) / name, Path(actual_root) / name
        if Path(name).name in UNCOMPARED or name.endswith(".png"):
            continue
        if name.endswith(".npz"):
            with np.load(expected, allow_pickle=False) as left, \
                    np.load(actual, allow_pickle=False) as right:
                assert sorted(left.files) == sorted(right.files), name
                for key in left.files:
                    np.testing.assert_array_equal(right[key], left[key], err_msg=f"{name}:{key}")
        elif name.endswith(".pt"):
            _assert_equal_values(torch.load(expected, weights_only=True),
                                 torch.load(actual, weights_only=True), name)
        elif name.endswith(".csv"):
            _assert_equal_values(_rows_without_timings(expected), _rows_without_timings(actual),
                                 name)
        elif name.endswith(".yaml"):
            left, right = yaml.safe_load(expected.read_text()), yaml.safe_load(actual.read_text())
            for mapping in (left, right):
                mapping.pop("resume", None)
            assert left == right, name
        else:
            assert expected.read_bytes() == actual.read_bytes(), name


if __name__ == "__main__":  # python tests/faults.py FAULT_JSON|none SCRIPT ARGS...
    sys.path.insert(0, str(ROOT))
    execute_script(sys.argv[2], sys.argv[3:], Fault.from_json(sys.argv[1]))
