"""The one registry of env-types.

Every ``--env-type`` name maps to an :class:`EnvSpec`: the family class (imported lazily, so a toy
run never imports MuJoCo), the paper's options for that name (episode length, reward variant,
start distribution) and the number of inner episodes per BAMDP meta-episode. BOReL's names use
underscores (``point_robot_sparse``), FOCAL's dashes (``sparse-point-robot``); the two may share a
family with different options.

A new environment is one entry here plus its family class (see ``docs/adding_an_environment.md``).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np

from environments.base import BatchedTaskEnv, TaskEnv
from environments.metaworld.specs import METAWORLD_SPECS
from environments.mujoco.specs import MUJOCO_SPECS
from environments.registry_types import EnvSpec
from utils.errors import UserError, closest_names

_TOY = "environments.toy_navigation"
_REGISTRY: dict[str, EnvSpec] = {}


def register(spec: EnvSpec) -> None:
    """Add an env-type; a name may be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"env-type {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


for _spec in [
    # ---------------------------------------------------------------- BOReL toy domains
    EnvSpec(
        "gridworld",
        f"{_TOY}.gridworld:GridWorld",
        {"num_cells": 5, "max_episode_steps": 15, "start_distribution": "origin"},
        episodes_per_task=4,
        description="5x5 grid, 21 goals, -0.1 per step and +1 on the goal, 4 x 15 steps",
    ),
    EnvSpec(
        "point_robot",
        f"{_TOY}.point_robot:PointRobot",
        {"max_episode_steps": 60, "reward_variant": "dense", "goal_distribution": "square",
         "start_distribution": "square"},
        episodes_per_task=3,
        description="point robot, goal uniform in [-1, 1]^2, reward -||s' - g||, 3 x 60 steps",
    ),
    EnvSpec(
        "point_robot_sparse",
        f"{_TOY}.point_robot:PointRobot",
        {"max_episode_steps": 60, "reward_variant": "sparse", "goal_distribution": "semicircle",
         "start_distribution": "origin"},
        episodes_per_task=2,
        description="semi-circle: goal on the upper unit arc, +1 within 0.2, 2 x 60 steps",
    ),
    EnvSpec(
        "point_robot_wind",
        f"{_TOY}.point_robot:PointRobotWind",
        {"max_episode_steps": 25, "reward_variant": "sparse", "goal": (0.0, 1.0)},
        episodes_per_task=2,
        description="wind ~ U[-0.05, 0.05]^2 added every step, goal (0, 1), +1 within 0.2, 2 x 25",
    ),
    EnvSpec(
        "escape_room",
        f"{_TOY}.escape_room:EscapeRoom",
        {"max_episode_steps": 60, "start_distribution": "origin"},
        episodes_per_task=2,
        description="circular room of radius 1, door of width pi/8 at angle ~ U[0, pi], 2 x 60",
    ),
    # ---------------------------------------------------------------- FOCAL toy domains
    EnvSpec(
        "point-robot",
        f"{_TOY}.point_robot:PointRobot",
        {"max_episode_steps": 20, "reward_variant": "dense", "goal_distribution": "square",
         "start_distribution": "square"},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL point robot: goal uniform in [-1, 1]^2, reward -||s' - g||, 20 steps",
    ),
    EnvSpec(
        "sparse-point-robot",
        f"{_TOY}.point_robot:PointRobot",
        {"max_episode_steps": 20, "reward_variant": "dense_with_sparse", "goal_radius": 0.2,
         "goal_distribution": "semicircle", "start_distribution": "origin"},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL semi-circle: dense reward for RL, sparse (r + 0.2)/0.2 within 0.2 for "
        "contexts and returns, 20 steps",
    ),
    EnvSpec(
        "point-robot-wind",
        f"{_TOY}.point_robot:PointRobotWind",
        {"max_episode_steps": 25, "reward_variant": "dense", "goal": (1.0, 0.0)},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL wind: goal (1, 0), reward -||s' - g||, wind ~ U[-0.05, 0.05]^2, "
        "25 steps",
    ),
]:
    register(_spec)

for _spec in MUJOCO_SPECS + METAWORLD_SPECS:
    register(_spec)


def registered_env_types() -> list[str]:
    """All env-type names, sorted."""
    return sorted(_REGISTRY)


def get_spec(env_type: str) -> EnvSpec:
    """The spec of ``env_type``; an unknown name is a :class:`UserError` naming close matches."""
    if env_type not in _REGISTRY:
        raise UserError(
            f"unknown env-type {env_type!r}{closest_names(env_type, _REGISTRY)}; "
            f"registered: {', '.join(registered_env_types())}"
        )
    return _REGISTRY[env_type]


def resolve_options(env_type: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec's options updated with ``overrides``; an option the family lacks is a UserError."""
    spec = get_spec(env_type)
    options = dict(spec.options)
    overrides = dict(overrides or {})
    parameters = inspect.signature(spec.family_class().__init__).parameters
    valid = [name for name in parameters if name not in ("self", "num_envs")]
    for key in overrides:
        if key not in valid:
            raise UserError(
                f"env option {key!r} does not exist for env-type {env_type!r}"
                f"{closest_names(key, valid)}; valid options: {', '.join(valid)}"
            )
    options.update(overrides)
    return options


def make_batched_env(
    env_type: str, num_envs: int = 1, env_options: dict[str, Any] | None = None
) -> BatchedTaskEnv:
    """Build ``num_envs`` copies of ``env_type``; options override the paper's values."""
    spec = get_spec(env_type)
    options = resolve_options(env_type, env_options)
    try:
        return spec.family_class()(num_envs=num_envs, **options)
    except (TypeError, ValueError) as error:
        raise UserError(f"env-type {env_type!r} rejects its options {options}: {error}") from None


def make_env(
    env_type: str, task: np.ndarray | None = None, env_options: dict[str, Any] | None = None
) -> TaskEnv:
    """One copy of ``env_type`` as a ``gymnasium.Env``, set to ``task`` (seed 0's task if None)."""
    return TaskEnv(make_batched_env(env_type, 1, env_options), task)


def task_from_seed(
    env_type: str, seed: int, env_options: dict[str, Any] | None = None
) -> np.ndarray:
    """The task that ``--seed seed`` selects for ``env_type`` (the same vector every time)."""
    env = make_batched_env(env_type, 1, env_options)
    try:
        return env.task_from_seed(seed)
    finally:
        env.close()


def warn_alias(old: str, new: str) -> None:
    """Warn that a deprecated task name was mapped to its current name."""
    warnings.warn(f"{old!r} is an alias of {new!r}; using {new!r}", UserWarning, stacklevel=3)
