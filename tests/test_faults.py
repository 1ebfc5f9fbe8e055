"""Kill/resume and determinism of every stage script, run as child processes at tiny budgets.

Each stage is SIGKILLed at a chosen write (see tests/faults.py), or hits a full disk there,
then is restarted with ``--resume true``, and must then hold exactly what an uninterrupted run
with the same seed holds: the same files, datasets and checkpoint tensors bit for bit, the same
logged rows (timings aside), and no temporary file. A second run with the same seed is
identical; another seed is not.

To cover another stage, add its :class:`tests.faults.StageCase` to ``tests.faults.STAGES`` and
its kill points to ``KILL_POINTS``.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from tests.faults import (
    KILLED,
    STAGES,
    Fault,
    assert_same_outputs,
    output_files,
    prepare_workdir,
    run_stage_case,
    temporary_files,
)
from utils.datasets import load_task_dataset

LATEST = "runs/*/checkpoints/latest.pt"
KILL_POINTS = [  # (stage, fault, run the faulty child in a fresh interpreter instead of a fork)
    ("stage1", Fault(LATEST, 2, "before"), True),  # datasets of iteration 2 saved, no checkpoint
    ("stage1", Fault("data/*/task_1.npz", 2, "during"), False),
    ("stage2", Fault(LATEST, 1, "before"), False),  # killed before any checkpoint existed
    ("stage2", Fault(LATEST, 2, "after"), False),
    ("stage3", Fault("runs/vae/*/hyperstates/task_1.npz", 1, "during"), False),
    ("stage3", Fault("runs/offline/*/checkpoints/latest.pt", 2, "during"), False),
    ("focal", Fault(LATEST, 1, "after"), False),
    ("focal", Fault("runs/*/progress.csv", 2, "during"), False),  # the evaluation at 2
    ("online", Fault(LATEST, 2, "during"), False),  # buffers and optimisers in latest.pt
    # the disk fills up on a dataset write (exit code 2); resumed once space is free again
    ("stage1", Fault("data/*/task_0.npz", 3, "during", "disk_full"), False),
]


@pytest.fixture(scope="module")
def references(stage_inputs, tmp_path_factory) -> dict[str, Path]:
    """One uninterrupted run of each stage, made on first use."""

    class Lazy(dict):
        def __missing__(self, stage: str) -> Path:
            cwd = prepare_workdir(stage, stage_inputs,
                                  tmp_path_factory.mktemp(f"reference_{stage}") / "run")
            run_stage_case(stage, cwd)
            self[stage] = cwd
            return cwd

    return Lazy()


@pytest.mark.parametrize(("stage", "fault", "fresh_interpreter"), KILL_POINTS,
                         ids=[f"{stage}-{fault.kind}-{fault.moment}-{Path(fault.pattern).name}#"
                              f"{fault.occurrence}" for stage, fault, _ in KILL_POINTS])
def test_interrupted_stage_resumes_to_the_uninterrupted_result(stage, fault, fresh_interpreter,
                                                               stage_inputs, references,
                                                               tmp_path):
    cwd = prepare_workdir(stage, stage_inputs, tmp_path / "run")
    interrupted = run_stage_case(stage, cwd, fault=fault, fresh_interpreter=fresh_interpreter)
    if fault.kind == "disk_full":
        assert interrupted.returncode == 2 and len(interrupted.stderr_lines) == 1, \
            interrupted.stderr
        assert not temporary_files(cwd)
    else:
        assert interrupted.returncode == KILLED, interrupted.stderr
    if fault.moment == "during":  # the interrupted write left the previous file intact
        assert temporary_files(cwd) or fault.kind == "disk_full"
        for name in fnmatch.filter(output_files(cwd), fault.pattern):
            if name.endswith(".npz"):
                load_task_dataset(cwd / name)
    run_stage_case(stage, cwd, "--resume", "true")
    assert_same_outputs(references[stage], cwd)


@pytest.mark.parametrize("stage", list(STAGES))
def test_same_seed_gives_identical_outputs(stage, stage_inputs, references, tmp_path):
    again = prepare_workdir(stage, stage_inputs, tmp_path / "again")
    run_stage_case(stage, again)
    assert_same_outputs(references[stage], again)


@pytest.mark.parametrize("stage", ["stage1", "focal"])
def test_another_seed_gives_other_outputs(stage, stage_inputs, references, tmp_path):
    other = prepare_workdir(stage, stage_inputs, tmp_path / "other")
    run_stage_case(stage, other, "--seed", "5")
    for path in sorted(other.rglob("*_s5"), key=lambda item: -len(item.parts)):
        path.rename(path.with_name(path.name.replace("_s5", "_s73")))
    assert output_files(other) == output_files(references[stage])
    with pytest.raises(AssertionError):
        assert_same_outputs(references[stage], other)
