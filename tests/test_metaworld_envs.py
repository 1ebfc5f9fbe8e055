"""Meta-World ML1 through metaworld 3.1.1: names and aliases, tasks from seeds, create/reset/step,
determinism, and the refusal to recompute rewards."""

from __future__ import annotations

import os
import pickle
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")  # before MuJoCo is first imported, for rendering

import metaworld
import numpy as np
import pytest

from environments.bamdp import BatchedBAMDP
from environments.metaworld.ml1 import MetaWorldML1, goal_variations, resolve_env_name
from environments.registry import get_spec, make_batched_env
from utils.errors import UserError

PAPER_TASKS = [
    "handle-pull",
    "handle-pull-side",
    "pick-out-of-hole",
    "plate-slide-side",
    "plate-slide",
    "reach-wall",
    "soccer",
    "push-wall",
    "window-close",
    "shelf-place",
    "sweep",
    "reach",
    "push",
]


def uniform_tasks(env: MetaWorldML1, count: int, seed: int = 0) -> np.ndarray:
    """Goal variations drawn from ML1's own range (without building the 2 s ML1 benchmark)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(env._task_low, env._task_high, size=(count, env.task_dim))


def test_metaworld_is_registered_with_one_episode_of_500_steps():
    spec = get_spec("metaworld")
    assert spec.episodes_per_task == 1
    assert spec.options["max_episode_steps"] == 500


@pytest.mark.parametrize("task_name", PAPER_TASKS)
def test_paper_tasks_create_reset_and_step(task_name):
    env = MetaWorldML1(num_envs=2, env_name=f"{task_name}-v3")
    assert env.observation_space.shape == (39,) and env.action_space.shape == (4,)
    assert env.max_episode_steps == 500
    env.set_tasks(uniform_tasks(env, 2))
    observations = env.reset()
    assert observations.shape == (2, 39) and observations.dtype == np.float32
    np.testing.assert_array_equal(observations[:, 36:], 0.0)  # the goal is hidden in ML1
    for _ in range(3):
        result = env.step(np.random.default_rng(0).uniform(-1, 1, size=(2, 4)))
    assert result.observations.shape == (2, 39)
    assert result.rewards.dtype == np.float32 and np.all(np.isfinite(result.rewards))
    assert np.all((result.rewards >= 0.0) & (result.rewards <= 10.0))
    assert not result.terminated.any() and result.successes.dtype == bool
    assert set(result.infos) >= {"near_object", "obj_to_target"}
    env.close()


def test_v2_names_are_aliases_of_v3_with_a_warning():
    with pytest.warns(UserWarning, match="'handle-pull-v2' is an alias of 'handle-pull-v3'"):
        assert resolve_env_name("handle-pull-v2") == "handle-pull-v3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_env_name("handle-pull") == "handle-pull-v3"
        assert resolve_env_name("reach-v3") == "reach-v3"
    with pytest.warns(UserWarning, match="alias"):
        env = make_batched_env("metaworld", env_options={"env_name": "push-v2"})
    assert env.env_name == "push-v3"
    env.close()


def test_unknown_names_are_rejected_with_close_matches():
    with pytest.raises(ValueError, match="handle-pull-v3"):
        resolve_env_name("handle-pul-v3")
    with pytest.raises(UserError, match="rejects its options"):
        make_batched_env("metaworld", env_options={"env_name": "juggle-v3"})
    with pytest.raises(UserError, match="env_name"):
        make_batched_env("metaworld", env_options={"task_name": "reach-v3"})


def test_a_task_is_the_ml1_goal_variation_that_the_seed_selects():
    env = MetaWorldML1(num_envs=1, env_name="reach-v3")
    benchmark = metaworld.ML1("reach-v3", seed=1337)
    expected = pickle.loads(benchmark.train_tasks[3].data)["rand_vec"]
    np.testing.assert_array_equal(env.task_from_seed(3), expected)
    np.testing.assert_array_equal(env.task_from_seed(53), expected)  # 50 variations cycle
    np.testing.assert_array_equal(MetaWorldML1(env_name="reach").task_from_seed(3), expected)
    variations = goal_variations("reach-v3", 1337, "train")
    assert variations.shape == (50, 6)
    sampled = env.sample_tasks(10, np.random.default_rng(0))
    assert len(np.unique(sampled, axis=0)) == 10
    assert all(any(np.array_equal(task, row) for row in variations) for task in sampled)
    test_set = MetaWorldML1(env_name="reach-v3", goal_set="test").task_from_seed(3)
    assert not np.array_equal(test_set, expected)
    env.close()


def test_resets_and_steps_are_deterministic_given_the_task():
    env = MetaWorldML1(num_envs=3, env_name="reach-v3")
    tasks = uniform_tasks(env, 3)
    tasks[2] = tasks[0]
    env.set_tasks(tasks)
    first = env.reset()
    np.testing.assert_array_equal(first[0], first[2])
    assert not np.array_equal(first[0], first[1])  # another object position
    actions = np.random.default_rng(1).uniform(-1, 1, size=(20, 1, 4)).repeat(3, axis=1)
    for action in actions:
        result = env.step(action)
    np.testing.assert_array_equal(result.observations[0], result.observations[2])
    np.testing.assert_array_equal(result.rewards[0], result.rewards[2])
    np.testing.assert_array_equal(env.reset(), first)
    env.close()


def test_rewards_cannot_be_recomputed():
    env = MetaWorldML1(env_name="reach-v3")
    assert env.reward_recomputable is False
    observation = np.zeros((1, 39), dtype=np.float32)
    with pytest.raises(NotImplementedError, match="cannot be recomputed"):
        env.reward(observation, np.zeros((1, 4)), observation, env._task_low)
    env.close()


def test_the_family_applies_no_time_limit_and_the_bamdp_plays_500_steps():
    env = MetaWorldML1(env_name="window-close-v3")
    env.set_tasks(uniform_tasks(env, 1))
    env.reset()
    for _ in range(501):  # Meta-World itself refuses the 501st step
        env.step(np.zeros((1, 4)))
    bamdp = BatchedBAMDP(env, episodes_per_task=1)
    assert bamdp.trajectory_len == 500 and bamdp.observation_space.shape == (39,)
    env.close()


def test_render_frames_shows_the_scene_upright():
    env = MetaWorldML1(env_name="push-v3")
    env.set_tasks(uniform_tasks(env, 1))
    env.reset()
    try:
        frame = env.render_frames(0)
    except RuntimeError as error:
        pytest.skip(f"no offscreen OpenGL on this machine: {error}")
    finally:
        env.close()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    # the floor (bottom rows) is darker than the bright back wall (top rows) when upright
    assert frame[:40].mean() > frame[-40:].mean()
