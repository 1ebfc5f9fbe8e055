"""Results tables, learning curves and presets of reproduce.py, on synthetic logs."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from utils.logger import Logger
from utils.presets import QUICK_PRESETS, get_preset
from utils.results import (
    MethodResult,
    latest_figure,
    learning_curve_figure,
    pool,
    results_csv,
    results_markdown,
    returns_figure,
    save_figure,
    seed_curves,
    write_results,
)


def test_pool_and_summary_give_mean_and_std_over_tasks_and_seeds():
    seed_a = (np.array([[1.0, 3.0], [3.0, 5.0]]), np.array([1.0, 0.0]))
    seed_b = (np.array([[2.0, 4.0]]), np.array([1.0]))
    result = pool("method", [seed_a, seed_b])
    summary = result.summary()
    assert summary["n"] == 3
    assert summary["episode_1_mean"] == pytest.approx(2.0)
    assert summary["episode_1_std"] == pytest.approx(np.std([1.0, 3.0, 2.0]))
    assert summary["sum_mean"] == pytest.approx(np.mean([4.0, 8.0, 6.0]))
    assert summary["success_rate"] == pytest.approx(2 / 3)


def test_tables_hold_every_method_and_episode(tmp_path):
    results = [MethodResult("BOReL (RR)", np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([1.0])),
               MethodResult("random", np.array([[-1.0, -1.0], [1.0, 1.0]]), np.zeros(2))]
    write_results(tmp_path, results, "Results", ["a note"])
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [row["method"] for row in rows] == ["BOReL (RR)", "random"]
    assert float(rows[0]["episode_4_mean"]) == pytest.approx(4.0)
    assert rows[1]["episode_4_mean"] == "" and float(rows[1]["sum_std"]) == pytest.approx(2.0)
    table = (tmp_path / "results.md").read_text()
    assert "| BOReL (RR) | 1.00 ± 0.00 | 2.00 ± 0.00 | 3.00 ± 0.00 | 4.00 ± 0.00 | 10.00 ± 0.00 |" \
        in table
    assert "- a note" in table
    assert results_csv(results).count("\n") == 3
    assert results_markdown(results, "T", []).startswith("# T")


def synthetic_run(path, steps, values, tag="eval/return_sum"):
    logger = Logger(path, use_tensorboard=False)
    for step, value in zip(steps, values, strict=True):
        logger.log(step, {tag: value})
    logger.close()
    return path


def test_seed_curves_align_on_common_steps(tmp_path):
    first = synthetic_run(tmp_path / "a", [10, 20, 30], [1.0, 2.0, 3.0])
    second = synthetic_run(tmp_path / "b", [10, 20], [3.0, 4.0])
    steps, values = seed_curves([first, second], "eval/return_sum")
    np.testing.assert_array_equal(steps, [10, 20])
    np.testing.assert_array_equal(values, [[1.0, 2.0], [3.0, 4.0]])
    assert seed_curves([first], "eval/missing") is None


def test_figures_are_written_from_synthetic_logs(tmp_path):
    runs = [synthetic_run(tmp_path / f"s{seed}", [10, 20], [seed, seed + 1.0]) for seed in range(3)]
    figure = learning_curve_figure([("BOReL", "iteration", {"RR": runs}, "eval/return_sum")])
    axis = figure.axes[0]
    np.testing.assert_allclose(axis.lines[0].get_ydata(), [1.0, 2.0])  # mean over 3 seeds
    path = save_figure(figure, tmp_path / "figures" / "curves.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    bars = returns_figure([MethodResult("a", np.ones((2, 4)), np.ones(2)),
                           MethodResult("b", np.zeros((2, 4)), np.zeros(2))])
    assert len(bars.axes[0].patches) == 8


def test_latest_figure_picks_the_last_step_numerically(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    for step in (9, 10, 100):
        (figures / f"eval_trajectory_task_0_step{step}.png").write_bytes(b"png")
    assert latest_figure(tmp_path, "eval_trajectory_task_0").name.endswith("step100.png")
    assert latest_figure(tmp_path, "eval_belief_map_task_0") is None


def test_presets_tuned_generic_and_paper():
    assert get_preset("gridworld", "quick", {}) is QUICK_PRESETS["gridworld"]
    budgets = {"collection": {"num_iters": 300, "rl_updates_per_iter": 1000,
                              "num_init_rollouts_pool": 25},
               "vae": {"num_iters": 100}, "offline": {"num_iters": 1000,
                                                      "rl_updates_per_iter": 1000},
               "focal": {"num_iterations": 500, "num_train_steps_per_itr": 2000}}
    generic = get_preset("cheetah_vel", "quick", budgets)
    assert generic.collection["num_iters"] == 15 and generic.collection["save_interval"] == 15
    assert generic.vae["num_iters"] == 5 and generic.vae["eval_interval"] == 5
    assert generic.offline["rl_updates_per_iter"] == 50
    assert generic.focal["num_train_steps_per_itr"] == 100
    paper = get_preset("cheetah_vel", "paper", budgets)
    assert paper.collection == {} and paper.focal_ablations
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("gridworld", "huge", budgets)
