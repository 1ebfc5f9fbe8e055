"""reproduce.py end to end at the smoke preset: every step runs, finished steps are skipped, and the
results table and figures are written."""

from __future__ import annotations

import csv
import json

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
            "--use-tensorboard", "false", "--launcher", "local"]
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


def test_chains_in_worker_processes_give_the_same_results_as_one_after_another(
        tmp_path, smoke_preset):
    def run(launcher: str) -> tuple[str, dict]:
        folder = tmp_path / launcher
        config = load_config(ReproduceConfig, [
            "--env-type", "gridworld", "--preset", "quick", "--runs-dir", str(folder / "runs"),
            "--data-dir", str(folder / "data"), "--results-dir", str(folder / "results"),
            "--use-tensorboard", "false", "--launcher", launcher, "--workers", "2"])
        directory = reproduce.main(config)
        timings = json.loads((directory / "timings.json").read_text())
        return (directory / "results.csv").read_text(), timings

    in_processes, process_timings = run("processes")
    one_after_another, local_timings = run("local")
    assert in_processes == one_after_another
    assert list(process_timings) == list(local_timings)  # every step ran, in the same order
    chains = reproduce.step_chains(load_config(ReproduceConfig, ["--env-type", "gridworld"]),
                                   SMOKE_GRIDWORLD, [0, 1])
    assert [name for name, _ in chains] == [
        "BOReL (RR), seed 0", "BOReL (no RR), seed 0", "FOCAL, seed 0",
        "BOReL (RR), seed 1", "BOReL (no RR), seed 1", "FOCAL, seed 1"]
    assert [[step.stage for step in steps] for _, steps in chains[:3]] == [
        ["vae", "offline"], ["vae", "offline"], ["focal"]]


def test_policy_replaying_runs_as_one_chain_over_the_seeds():
    """Its VAEs share the replayed dataset that the first seed's VAE collects."""
    config = load_config(ReproduceConfig, ["--env-type", "point_robot_wind"])
    chains = reproduce.step_chains(config, reproduce.reproduce_preset(config), [0, 1])
    assert [name for name, _ in chains] == [
        "BOReL (PR)", "BOReL (no PR), seed 0", "FOCAL, seed 0", "BOReL (no PR), seed 1",
        "FOCAL, seed 1"]
    assert [(step.stage, step.config.seed) for step in chains[0][1]] == [
        ("vae", 0), ("offline", 0), ("vae", 1), ("offline", 1)]


def test_unknown_env_type_and_preset_are_user_errors(tmp_path):
    from utils.errors import UserError

    with pytest.raises(UserError, match="unknown env-type|no env-type"):
        reproduce.main(load_config(ReproduceConfig, ["--env-type", "gridwrld"]))
    with pytest.raises(UserError):
        load_config(ReproduceConfig, ["--env-type", "gridworld", "--preset", "huge"])
