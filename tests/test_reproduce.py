"""reproduce.py end to end at the smoke preset: every step runs, finished steps are skipped, and the
results table and figures are written."""

from __future__ import annotations

import csv

import pytest

import reproduce
from utils.config import load_config
from utils.presets import QUICK_PRESETS, SMOKE_GRIDWORLD
from utils.stage_configs import ReproduceConfig


@pytest.fixture
def smoke_preset(monkeypatch):
    monkeypatch.setitem(QUICK_PRESETS, "gridworld", SMOKE_GRIDWORLD)


def test_reproduce_runs_every_step_then_skips_them(tmp_path, smoke_preset, capsys):
    argv = ["--env-type", "gridworld", "--preset", "quick", "--runs-dir", str(tmp_path / "runs"),
            "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"),
            "--use-tensorboard", "false"]
    config = load_config(ReproduceConfig, argv)
    directory = reproduce.main(config)
    assert directory == tmp_path / "results" / "gridworld"
    rows = {row["method"]: row for row in csv.DictReader((directory / "results.csv").open())}
    assert set(rows) == {"BOReL (RR)", "BOReL (no RR)", "FOCAL (online context)",
                         "FOCAL (offline context)", "task oracle (reference)",
                         "scripted search (reference)", "random (reference)"}
    assert int(rows["BOReL (RR)"]["n"]) == 3  # three evaluation tasks, one seed
    assert float(rows["task oracle (reference)"]["sum_mean"]) > float(
        rows["random (reference)"]["sum_mean"])
    table = (directory / "results.md").read_text()
    assert table.count("\n| ") == 8  # header and seven methods
    for figure in ("returns_per_episode.png", "learning_curves.png",
                   "borel_rr_eval_trajectory_task_0.png"):
        assert (directory / "figures" / figure).stat().st_size > 0
    first_output = capsys.readouterr().out
    assert "skipped" not in first_output

    reproduce.main(config)
    second_output = capsys.readouterr().out
    assert second_output.count("finished, skipped") == 6  # stage 1, 2 VAEs, 2 stage-3 runs, FOCAL


def test_unknown_env_type_and_preset_are_user_errors(tmp_path):
    from utils.errors import UserError

    with pytest.raises(UserError, match="unknown env-type|no env-type"):
        reproduce.main(load_config(ReproduceConfig, ["--env-type", "gridwrld"]))
    with pytest.raises(UserError):
        load_config(ReproduceConfig, ["--env-type", "gridworld", "--preset", "huge"])
