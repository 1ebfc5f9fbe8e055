"""Reference policies of the results table against returns computed by hand on fixed tasks."""

from __future__ import annotations

import numpy as np
import pytest

from algorithms.reference_policies import make_reference_policy
from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env
from utils.rollouts import collect_meta_episodes


def play(env_type: str, name: str, tasks: list, episodes: int) -> np.ndarray:
    tasks = np.asarray(tasks, dtype=np.float64)
    env = make_batched_env(env_type, len(tasks), {})
    env.set_tasks(tasks)
    bamdp = BatchedBAMDP(env, episodes)
    policy = make_reference_policy(name, bamdp, tasks)
    return collect_meta_episodes(bamdp, policy, policy.observe).episode_returns(episodes)


def test_gridworld_oracle_walks_the_shortest_path_and_stays():
    # goal (2, 0) from (0, 0): one step at -0.1, arrival +1, then 13 steps on the goal
    returns = play("gridworld", "oracle", [[2, 0], [4, 4]], 4)
    np.testing.assert_allclose(returns[0], [13.9] * 4, atol=1e-5)
    # goal (4, 4): 7 steps at -0.1, arrival +1, 7 steps on the goal
    np.testing.assert_allclose(returns[1], [7.3] * 4, atol=1e-5)


def test_gridworld_search_rules_out_cells_then_exploits_the_found_goal():
    # goal (0, 2). Nearest open candidates, ties by cell id, x moves first:
    # (1,0) (2,0) (3,0) (4,0) (4,1) (3,1) (2,1) (2,2) (1,2): nine steps at -0.1, then (0, 2): +1
    # and five steps on the goal = 5.1. Later episodes: up, up (-0.1, +1) and 13 steps = 13.9.
    returns = play("gridworld", "search", [[0, 2], [2, 0]], 4)
    np.testing.assert_allclose(returns[0], [5.1, 13.9, 13.9, 13.9], atol=1e-5)
    # goal (2, 0) is the first candidate it tries: as good as the oracle
    np.testing.assert_allclose(returns[1], [13.9] * 4, atol=1e-5)


def test_semicircle_oracle_and_arc_search():
    goal = [0.5, np.sqrt(3) / 2]  # angle pi / 3
    # oracle: (0.1 n, 0.1 n) for n <= 5, then x stays 0.5; within 0.2 of the goal from step 7
    np.testing.assert_allclose(play("point_robot_sparse", "oracle", [goal], 2)[0], [54, 54])
    # search: 10 steps to (1, 0), then one arc step of 0.1 rad per step; the arc point at
    # 0.9 rad (step 19) is the first within 0.2 of the goal, so 42 rewarded steps. Episode 2
    # heads for that point and is within 0.2 of the goal from step 8: 53 rewarded steps.
    np.testing.assert_allclose(play("point_robot_sparse", "search", [goal], 2)[0], [42, 53])


def test_wind_oracle_cancels_the_wind():
    calm = play("point_robot_wind", "oracle", [[0.0, 0.0]], 2)[0]
    windy = play("point_robot_wind", "oracle", [[0.05, -0.05]], 2)[0]
    # goal (0, 1), 0.1 per step: within 0.2 after 8 steps, so 25 - 7 = 18 rewarded steps; with
    # the wind cancelled the robot moves at 0.05 net along y and needs 16 steps: 10 rewarded
    np.testing.assert_allclose(calm, [18, 18])
    np.testing.assert_allclose(windy, [10, 10])


def test_random_policy_is_seeded_and_stays_in_the_action_space():
    tasks = np.array([[2.0, 0.0]] * 3)
    env = make_batched_env("point_robot_sparse", 3, {})
    env.set_tasks(tasks)
    bamdp = BatchedBAMDP(env, 2)
    policy = make_reference_policy("random", bamdp, tasks, seed=5)
    first = policy(np.zeros((3, 3), np.float32))
    policy.reset()
    np.testing.assert_array_equal(first, policy(np.zeros((3, 3), np.float32)))
    assert first.shape == (3, 2) and np.all(np.abs(first) <= 1.0)


def test_envs_without_a_scripted_reference_get_none_and_unknown_names_fail():
    env = make_batched_env("cheetah_vel", 1, {})
    bamdp = BatchedBAMDP(env, 2)
    assert make_reference_policy("search", bamdp, np.zeros((1, 1))) is None
    assert make_reference_policy("oracle", bamdp, np.zeros((1, 1))) is None
    with pytest.raises(ValueError, match="unknown reference policy"):
        make_reference_policy("expert", bamdp, np.zeros((1, 1)))
