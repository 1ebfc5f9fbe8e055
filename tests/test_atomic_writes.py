"""A dataset or checkpoint write that fails inside the atomic write (a full disk at flush or
rename, an exception or an interrupt half-way through the content) leaves the previous file
intact and no temporary file; operating-system errors become one-line UserErrors. A failed
append to scalars.csv is rolled back, and a line torn by a kill is ignored."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import utils.io
from tests.faults import temporary_files
from tests.test_properties import valid_dataset
from utils.datasets import load_task_dataset, save_task_dataset
from utils.errors import UserError
from utils.io import remove_stale_temporaries
from utils.logger import Logger, read_scalars
from utils.runs import RunDirectory


def disk_full(*arguments) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def half_then(error: BaseException):
    """A replacement for np.savez that writes half of the archive, then raises ``error``."""
    original = np.savez

    def savez(stream, **arrays) -> None:
        original(stream, **arrays)
        stream.truncate(stream.tell() // 2)
        raise error

    return savez


@pytest.mark.parametrize("failure", ["fsync", "rename", "exception", "interrupt"])
def test_a_failed_dataset_write_keeps_the_previous_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "task_0.npz"
    first = valid_dataset()
    save_task_dataset(path, first)
    second = first.select(slice(0, 1))
    expected: type[BaseException] = UserError
    if failure == "fsync":
        monkeypatch.setattr(utils.io.os, "fsync", disk_full)
    elif failure == "rename":
        monkeypatch.setattr(utils.io.os, "replace", disk_full)
    elif failure == "exception":
        monkeypatch.setattr(np, "savez", half_then(RuntimeError("writer failed")))
        expected = RuntimeError
    else:
        monkeypatch.setattr(np, "savez", half_then(KeyboardInterrupt()))
        expected = KeyboardInterrupt
    with pytest.raises(expected) as raised:
        save_task_dataset(path, second)
    if expected is UserError:
        assert str(raised.value) == f"could not write {path}: No space left on device"
    monkeypatch.undo()
    loaded = load_task_dataset(path)
    assert loaded.num_trajectories == 2
    np.testing.assert_array_equal(loaded.observations, first.observations)
    assert temporary_files(tmp_path) == []


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path / "run")
    run.checkpoint_dir.mkdir(parents=True)
    run.save_checkpoint({"weights": torch.ones(3)}, step=1, keep=True)
    monkeypatch.setattr(utils.io.os, "fsync", disk_full)
    with pytest.raises(UserError, match=r"could not write .*step_2.pt: No space left on device"):
        run.save_checkpoint({"weights": torch.zeros(3)}, step=2, keep=True)
    monkeypatch.undo()
    checkpoint = run.load_checkpoint()
    assert checkpoint["step"] == 1 and torch.equal(checkpoint["weights"], torch.ones(3))
    assert run.checkpoint_steps() == [1]
    assert temporary_files(tmp_path) == []


def test_stale_temporaries_are_removed_only_for_the_named_files(tmp_path):
    for name in (".task_0.npz.abc.tmp", ".task_1.npz.def.tmp", ".task_10.npz.ghi.tmp",
                 "task_0.npz"):
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path, ["task_0.npz", "task_1.npz"])
    assert sorted(path.name for path in removed) == [".task_0.npz.abc.tmp",
                                                     ".task_1.npz.def.tmp"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [".task_10.npz.ghi.tmp",
                                                                "task_0.npz"]
    assert [path.name for path in remove_stale_temporaries(tmp_path)] == [
        ".task_10.npz.ghi.tmp"]


class FailsHalfWay:
    """A text stream that writes half of what it is given, then reports a full disk."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(text[: len(text) // 2])
        self.stream.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self) -> FailsHalfWay:
        return self

    def __exit__(self, *exception) -> None:
        self.stream.close()


def test_a_failed_append_to_scalars_is_rolled_back_and_a_torn_line_ignored(tmp_path,
                                                                           monkeypatch):
    logger = Logger(tmp_path, use_tensorboard=False)
    logger.log(1, {"train/loss": 1.0})
    original_open = Path.open

    def failing_open(self, mode="r", *arguments, **keywords):
        stream = original_open(self, mode, *arguments, **keywords)
        return FailsHalfWay(stream) if mode == "a" else stream

    monkeypatch.setattr(Path, "open", failing_open)
    with pytest.raises(UserError, match="scalars.csv: No space left on device"):
        logger.log(2, {"train/loss": 2.0, "eval/return": 3.0})
    monkeypatch.undo()
    assert read_scalars(logger.csv_path) == [(1, "train/loss", 1.0)]
    with logger.csv_path.open("a") as stream:  # what a kill during an append leaves
        stream.write("2,train/lo")
    assert read_scalars(logger.csv_path) == [(1, "train/loss", 1.0)]
    logger.truncate_after(1)
    logger.log(2, {"train/loss": 2.0})
    assert read_scalars(logger.csv_path) == [(1, "train/loss", 1.0), (2, "train/loss", 2.0)]
