"""The bad-input battery: every kind of user mistake, broken input file and full disk, against the
stage scripts run as child processes. Each ends with exit code 2 and exactly one line on stderr
(``error: ...``, no traceback), and leaves nothing partial behind: no temporary file, no changed
input, no new file at all when the mistake is found before the run starts, and only complete,
loadable files when the disk fills up mid-run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.faults import (
    STAGES,
    Fault,
    prepare_workdir,
    run_stage,
    temporary_files,
)
from tests.test_safe_loading import CreatesAFileWhenUnpickled
from utils.datasets import load_task_dataset
from utils.logger import read_scalars

GRID_DATA = "data/gridworld/default"
POINT_DATA = "data/point-robot/default"
VAE_RUN = "runs/vae/gridworld/default_s73"


@dataclasses.dataclass(frozen=True)
class BadInput:
    """One mistake: the stage (its tiny-budget flags from ``STAGES`` plus ``extra``, or
    ``argv`` instead), what to break first, the expected fragment of the error line, and an
    optional write fault. ``mid_run``: the run had started, so complete new files may remain."""

    name: str
    stage: str
    expected: str
    extra: tuple[str, ...] = ()
    argv: tuple[str, ...] | None = None
    setup: Callable[[Path], None] | None = None
    fault: Fault | None = None
    mid_run: bool = False


def write(name: str, text: str) -> Callable[[Path], None]:
    return lambda cwd: (cwd / name).write_text(text)


def break_dataset(directory: str, how: str, seed: int = 1) -> Callable[[Path], None]:
    """Damage ``task_<seed>.npz`` in ``directory``: random bytes, a pickle, a truncated file, a
    pickled object array, a NaN reward, another env-type in its meta, or a wider observation."""

    def damage(cwd: Path) -> None:
        path = cwd / directory / f"task_{seed}.npz"
        data = path.read_bytes()
        if how == "corrupt":
            path.write_bytes(np.random.default_rng(0).bytes(len(data)))
            return
        if how == "pickle file":  # a pickle that would create the file 'unpickled' if loaded
            path.write_bytes(PICKLE_PAYLOAD)
            return
        if how == "truncated":
            path.write_bytes(data[: len(data) // 2])
            return
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        if how == "pickled":
            arrays["observations"] = np.array([{"payload": 1}], dtype=object)
        elif how == "nan":
            arrays["rewards"] = arrays["rewards"].copy()
            arrays["rewards"][0, 0, 0] = np.nan
        elif how == "other_env_type":
            meta = json.loads(str(arrays["meta"]))
            arrays["meta"] = np.array(json.dumps({**meta, "env_type": "escape_room"}))
        elif how == "wider":
            for name in ("observations", "next_observations"):
                arrays[name] = np.concatenate([arrays[name], arrays[name][..., :1]], axis=-1)
        else:
            raise ValueError(how)
        with path.open("wb") as stream:
            np.savez(stream, **arrays)

    return damage


def delete(pattern: str) -> Callable[[Path], None]:
    def remove(cwd: Path) -> None:
        for path in cwd.glob(pattern):
            path.unlink()

    return remove


def truncate(name: str) -> Callable[[Path], None]:
    def cut(cwd: Path) -> None:
        data = (cwd / name).read_bytes()
        (cwd / name).write_bytes(data[: len(data) // 3])

    return cut


def stage_argv(stage: str, **replacements: str) -> tuple[str, ...]:
    """The tiny-budget flags of ``stage`` with some values replaced (flag names in snake case)."""
    argv = list(STAGES[stage].argv)
    for key, value in replacements.items():
        argv[argv.index("--" + key.replace("_", "-")) + 1] = value
    return tuple(argv)


GRID = ("--env-type", "gridworld")
PICKLE_PAYLOAD = b"cbuiltins\nopen\n(S'unpickled'\nS'w'\ntR."  # protocol 0: open('unpickled', 'w')
DISK_FULL = "No space left on device"
CASES = [
    # ------------------------------------------------------------------ configs and flags
    BadInput("unknown flag", "stage1", "unknown flag '--num-iter' in the command line "
             "(closest: --num-iters", argv=(*GRID, "--num-iter", "3")),
    BadInput("unknown key in a config file", "stage1", "unknown key 'num_iter' in bad.yaml",
             argv=(*GRID, "--config", "bad.yaml"), setup=write("bad.yaml", "num_iter: 3\n")),
    BadInput("key that is not a name", "stage1", "key 1 in bad.yaml is not a name",
             argv=(*GRID, "--config", "bad.yaml"), setup=write("bad.yaml", "1: 3\n")),
    BadInput("wrong type of a flag", "stage1", "--num-iters in the command line must be int, "
             "got 'three'", argv=(*GRID, "--num-iters", "three")),
    BadInput("wrong type in a config file", "stage1", "gamma in bad.yaml must be float, got "
             "'fast'", argv=(*GRID, "--config", "bad.yaml"), setup=write("bad.yaml",
                                                                        "gamma: fast\n")),
    BadInput("NaN in a config file", "stage1", "gamma in bad.yaml must be float, got nan",
             argv=(*GRID, "--config", "bad.yaml"), setup=write("bad.yaml", "gamma: .nan\n")),
    BadInput("wrong type in FOCAL's JSON", "focal", "num_iterations in bad.json must be int",
             argv=("bad.json",), setup=write("bad.json", '{"env_type": "point-robot", '
                                                       '"num_iterations": "many"}')),
    BadInput("YAML that does not parse", "stage1", "config file bad.yaml is not valid yaml",
             argv=(*GRID, "--config", "bad.yaml"), setup=write("bad.yaml", "num_iters: [1,\n")),
    BadInput("YAML date that does not exist", "stage1", "config file bad.yaml is not valid "
             "yaml: month must be in 1..12", argv=(*GRID, "--config", "bad.yaml"),
             setup=write("bad.yaml", "exp_name: 2020-13-45\n")),
    BadInput("YAML that would run code", "stage1", "config file bad.yaml is not valid yaml: "
             "could not determine a constructor", argv=(*GRID, "--config", "bad.yaml"),
             setup=write("bad.yaml", "exp_name: !!python/object/apply:builtins.open "
                                     "['unpickled', 'w']\n")),
    BadInput("missing config file", "stage1", "config file missing.yaml does not exist",
             argv=(*GRID, "--config", "missing.yaml")),
    BadInput("missing FOCAL config file", "focal", "config file configs/nope.json does not "
             "exist", argv=("configs/nope.json",)),
    BadInput("unknown env-type", "stage1", "no config file for env-type 'gridwold'",
             argv=("--env-type", "gridwold")),
    BadInput("resume and overwrite together", "stage2", "contradict each other",
             extra=("--resume", "true", "--overwrite", "true")),
    # ------------------------------------------------------------------ datasets
    *[BadInput(f"{how} dataset ({stage})", stage, message, setup=break_dataset(directory, how))
      for stage, directory in (("stage2", GRID_DATA), ("focal", POINT_DATA))
      for how, message in (
          ("corrupt", "task_1.npz: not an .npz archive"),
          ("pickle file", "task_1.npz: not an .npz archive"),
          ("truncated", "task_1.npz: truncated or corrupt file"),
          ("pickled", "task_1.npz: holds a pickled object array"),
          ("nan", "task_1.npz: 'rewards' holds NaN or infinite values"))],
    BadInput("dataset of another env-type", "stage2", "task_1.npz: collected on env-type "
             "'escape_room', expected 'gridworld'",
             setup=break_dataset(GRID_DATA, "other_env_type")),
    BadInput("datasets of mismatched shapes", "stage2", "task_1.npz: shape (T=60, obs=4, "
             "act=5) differs from the other tasks' (T=60, obs=3, act=5)",
             setup=break_dataset(GRID_DATA, "wider")),
    BadInput("datasets of mismatched shapes (FOCAL)", "focal", "observation/action sizes differ",
             setup=break_dataset(POINT_DATA, "wider")),
    BadInput("dataset that does not fit the VAE", "stage3", "does not fit the VAE run",
             setup=lambda cwd: [break_dataset(GRID_DATA, "wider", seed)(cwd)
                                for seed in range(3)]),
    BadInput("empty dataset folder", "stage2", "holds no task_<seed>.npz files",
             setup=delete(f"{GRID_DATA}/*.npz")),
    BadInput("missing dataset folder", "focal", "data/point-robot/other does not exist",
             extra=("--dataset-name", "other")),
    # ------------------------------------------------------------------ the VAE run
    BadInput("missing VAE run", "stage3", "no vae run 'missing' for env-type 'gridworld'",
             extra=("--vae-run", "missing")),
    BadInput("VAE run of another env-type", "stage3", f"VAE run {VAE_RUN} was trained on "
             "'gridworld', not 'point_robot_sparse'",
             argv=(*stage_argv("stage3", env_type="point_robot_sparse"), "--vae-run", VAE_RUN)),
    BadInput("VAE run without checkpoint", "stage3", "has no checkpoint yet",
             setup=delete(f"{VAE_RUN}/checkpoints/*.pt")),
    BadInput("VAE run without model.json", "stage3", f"run {VAE_RUN} has no model.json",
             setup=delete(f"{VAE_RUN}/model.json")),
    BadInput("corrupt VAE checkpoint", "stage3", "checkpoints/latest.pt cannot be loaded",
             setup=truncate(f"{VAE_RUN}/checkpoints/latest.pt")),
    BadInput("VAE checkpoint that would run code", "stage3", "checkpoints/latest.pt cannot be "
             "loaded: Weights only load failed",
             setup=lambda cwd: torch.save({"payload": CreatesAFileWhenUnpickled()},
                                          cwd / VAE_RUN / "checkpoints/latest.pt")),
    # ------------------------------------------------------------------ a full disk
    BadInput("disk full when the run starts", "stage2", f"could not write {VAE_RUN}/config.yaml:"
             f" {DISK_FULL}", fault=Fault("runs/*", 1, "open", "disk_full")),
    BadInput("disk full on a dataset", "stage1", "could not write data/point_robot_sparse/"
             f"default/task_0.npz: {DISK_FULL}",
             fault=Fault("data/*/task_0.npz", 2, "during", "disk_full"), mid_run=True),
    BadInput("disk full on a checkpoint", "focal", "could not write runs/focal/point-robot/"
             f"default_s73/checkpoints/latest.pt: {DISK_FULL}",
             fault=Fault("runs/*/latest.pt", 1, "during", "disk_full"), mid_run=True),
    BadInput("disk full on scalars.csv", "stage3", "could not write runs/offline/gridworld/"
             f"default_s73/scalars.csv: {DISK_FULL}",
             fault=Fault("runs/offline/*/scalars.csv", 3, "open", "disk_full"), mid_run=True),
    BadInput("disk full on a figure", "focal", "could not write runs/focal/point-robot/"
             f"default_s73/figures/eval_task_embeddings_step2.png: {DISK_FULL}",
             fault=Fault("runs/*/figures/*", 1, "open", "disk_full"), mid_run=True),
    BadInput("disk full on TensorBoard events", "stage2", f"{DISK_FULL} ({VAE_RUN}/tensorboard/",
             argv=stage_argv("stage2", use_tensorboard="true"),
             fault=Fault("runs/*/tensorboard/*", 1, "open", "disk_full"), mid_run=True),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def assert_complete(path: Path) -> None:
    """``path`` is a whole file of its kind (loads without error)."""
    if path.suffix == ".npz":
        load_task_dataset(path)
    elif path.suffix == ".pt":
        torch.load(path, weights_only=True)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".yaml":
        yaml.safe_load(path.read_text())
    elif path.name == "scalars.csv":
        read_scalars(path)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_ends_with_one_line_and_exit_code_2(case, stage_inputs, tmp_path):
    cwd = prepare_workdir(case.stage, stage_inputs, tmp_path / "run")
    if case.setup is not None:
        case.setup(cwd)
    before = snapshot(cwd)
    argv = list(case.argv if case.argv is not None else (*STAGES[case.stage].argv, *case.extra))
    result = run_stage(STAGES[case.stage].script, argv, cwd, case.fault)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr_lines) == 1, result.stderr
    line = result.stderr_lines[0]
    assert line.startswith("error: ") and case.expected in line, line
    assert not temporary_files(cwd)
    after = snapshot(cwd)
    assert {name for name in before if after.get(name) != before[name]} == set()
    created = sorted(set(after) - set(before))
    assert "unpickled" not in created
    if not case.mid_run:
        assert created == []
    for name in created:
        assert_complete(cwd / name)
