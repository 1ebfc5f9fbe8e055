"""Budgets of ``reproduce.py``: which tasks it collects and what it overrides in each stage.

A preset changes only budgets (iterations, updates, task counts, intervals) on top of each stage's
per-env file (``data_collection_config/<env-type>.yaml`` and the others), which hold the papers'
values. ``paper`` overrides nothing but the task list: the papers' budgets, meant for a GPU.
``quick`` is sized for a 2-core CPU: on the toy envs it is tuned to show the papers' qualitative
results within minutes; elsewhere every budget is divided by :data:`QUICK_DIVISORS`, which checks
that the pipeline runs end to end but is not expected to learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PRESETS = ("quick", "paper")
STAGES = ("collection", "vae", "offline", "focal")


@dataclass
class Preset:
    """Stage-1 task seeds and per-stage config overrides (field name -> value)."""

    task_seeds: str
    collection: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    offline: dict[str, Any] = field(default_factory=dict)
    focal: dict[str, Any] = field(default_factory=dict)
    focal_ablations: bool = False

    def overrides(self, stage: str) -> dict[str, Any]:
        return dict(getattr(self, stage))


# Task seeds per env at paper scale: BOReL's num_train_tasks (spec borel.md 5.3), plus the
# held-out tasks FOCAL evaluates with offline context (its split takes the last ones by seed).
PAPER_TASK_SEEDS = {
    "gridworld": "0-20",
    "point_robot_sparse": "0-99",
    "point_robot": "0-99",
    "point_robot_wind": "0-49",
    "escape_room": "0-64",
    "cheetah_vel": "0-119",
    "ant_semicircle_sparse": "0-99",
    "ant_semicircle": "0-99",
    "ant_dir": "0-99",
}
DEFAULT_PAPER_TASK_SEEDS = "0-49"

# Quick presets tuned on a 2-core CPU (see the README's results table for what they reach).
QUICK_PRESETS: dict[str, Preset] = {
    "gridworld": Preset(
        task_seeds="0-20",
        collection={"num_iters": 40, "log_interval": 20, "save_interval": 40},
        vae={"num_iters": 25, "vae_lr": 1e-3, "eval_interval": 25, "save_interval": 25},
        offline={"num_iters": 90, "rl_updates_per_iter": 250, "critic_lr": 3e-4, "gamma": 0.9,
                 "tau": 0.02, "use_cql": True, "cql_alpha": 1.0, "log_interval": 10,
                 "save_interval": 90},
        focal={"num_train_tasks": 16, "num_eval_tasks": 5, "num_iterations": 10,
               "num_train_steps_per_itr": 250, "log_interval": 5, "save_interval": 10},
    ),
    "point_robot_sparse": Preset(
        task_seeds="0-29",
        collection={"num_iters": 60, "rl_updates_per_iter": 200, "num_init_rollouts_pool": 10,
                    "log_interval": 20, "save_interval": 60},
        vae={"num_iters": 20, "eval_interval": 20, "save_interval": 20},
        offline={"num_train_tasks": 25, "num_eval_tasks": 10, "num_iters": 60,
                 "rl_updates_per_iter": 200, "log_interval": 10, "save_interval": 60},
        focal={"num_train_tasks": 25, "num_eval_tasks": 5, "num_iterations": 30,
               "num_train_steps_per_itr": 100, "log_interval": 10, "save_interval": 30},
    ),
}

# Budget fields and how much ``quick`` divides them by on envs without a tuned quick preset.
QUICK_DIVISORS = {
    "collection": {"num_iters": 20, "rl_updates_per_iter": 10, "num_init_rollouts_pool": 5},
    "vae": {"num_iters": 20},
    "offline": {"num_iters": 100, "rl_updates_per_iter": 20},
    "focal": {"num_iterations": 50, "num_train_steps_per_itr": 20},
}
QUICK_TASKS = 8
QUICK_INTERVALS = {  # interval fields set to the divided budget: one log and one save at the end
    "collection": ("num_iters", ("log_interval", "save_interval")),
    "vae": ("num_iters", ("log_interval", "save_interval", "eval_interval")),
    "offline": ("num_iters", ("log_interval", "save_interval")),
    "focal": ("num_iterations", ("log_interval", "save_interval")),
}


# A gridworld chain of a few updates per stage, for the tests and ``python -m bench --quick``: it
# checks that every step runs end to end (two iterations, so logging and saving intervals are
# crossed) and learns nothing.
SMOKE_GRIDWORLD = Preset(
    task_seeds="0-3",
    collection={"num_iters": 2, "num_init_rollouts_pool": 2, "num_rollouts_per_iter": 1,
                "rl_updates_per_iter": 5, "batch_size": 16, "log_interval": 2,
                "save_interval": 2},
    vae={"num_iters": 2, "eval_interval": 2, "save_interval": 2, "log_interval": 1},
    offline={"num_train_tasks": 4, "num_eval_tasks": 3, "num_iters": 2,
             "rl_updates_per_iter": 3, "meta_batch": 2, "batch_size": 16, "log_interval": 1,
             "save_interval": 2},
    focal={"num_train_tasks": 3, "num_eval_tasks": 1, "num_iterations": 2,
           "num_train_steps_per_itr": 2, "meta_batch": 2, "batch_size": 16,
           "embedding_batch_size": 8, "log_interval": 1, "save_interval": 2},
)


def get_preset(env_type: str, name: str, stage_budgets: dict[str, dict[str, Any]]) -> Preset:
    """The preset ``name`` for ``env_type``.

    ``stage_budgets`` maps each stage to its per-env config values (field -> value), from which
    the generic quick preset divides the budgets.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {PRESETS}")
    if name == "paper":
        return Preset(task_seeds=PAPER_TASK_SEEDS.get(env_type, DEFAULT_PAPER_TASK_SEEDS),
                      focal_ablations=True)
    if env_type in QUICK_PRESETS:
        return QUICK_PRESETS[env_type]
    overrides: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    for stage, divisors in QUICK_DIVISORS.items():
        for key, divisor in divisors.items():
            overrides[stage][key] = max(1, math.ceil(stage_budgets[stage][key] / divisor))
        budget_key, interval_keys = QUICK_INTERVALS[stage]
        for key in interval_keys:
            overrides[stage][key] = overrides[stage][budget_key]
    overrides["offline"].update(num_train_tasks=QUICK_TASKS - 2, num_eval_tasks=2)
    overrides["focal"].update(num_train_tasks=QUICK_TASKS - 2, num_eval_tasks=2)
    return Preset(task_seeds=f"0-{QUICK_TASKS - 1}", **overrides)
