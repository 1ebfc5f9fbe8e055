"""Toy environments of both papers: rewards, dynamics, terminations and episode ends against
hand-computed values; the seed-to-task map; the pure reward equal to the stepped reward; batched
copies equal to single ones."""

from __future__ import annotations

import numpy as np
import pytest

from environments.bamdp import BatchedBAMDP
from environments.registry import make_batched_env, make_env, task_from_seed
from environments.toy_navigation.escape_room import first_wall_contact
from environments.toy_navigation.gridworld import goal_cells
from utils.rollouts import collect_meta_episodes

TOY_ENV_TYPES = [
    "gridworld", "point_robot", "point_robot_sparse", "point_robot_wind", "escape_room",
    "point-robot", "sparse-point-robot", "point-robot-wind",
]


def single(env_type: str, task, **options):
    env = make_env(env_type, np.asarray(task, dtype=np.float64), env_options=options or None)
    env.reset(seed=0)
    return env


# ----------------------------------------------------------------------------- gridworld
def test_gridworld_goals_exclude_the_bottom_left_block():
    goals = goal_cells(5)
    assert len(goals) == 21
    assert not any(x < 2 and y < 2 for x, y in goals)
    assert {tuple(goal) for goal in goals} == {
        (x, y) for x in range(5) for y in range(5) if not (x < 2 and y < 2)
    }


def test_gridworld_moves_clip_at_walls_and_reward_on_goal():
    env = single("gridworld", [2.0, 1.0])
    observation, _ = env.reset(seed=0)
    np.testing.assert_array_equal(observation, [0.0, 0.0])
    expected = [  # (action, next cell, reward)
        (3, (0, 0), -0.1),  # down at the wall: stays
        (4, (0, 0), -0.1),  # left at the wall: stays
        (1, (0, 1), -0.1),  # up
        (2, (1, 1), -0.1),  # right
        (2, (2, 1), 1.0),  # right onto the goal
        (0, (2, 1), 1.0),  # stay on the goal
        (2, (3, 1), -0.1),
    ]
    for action, cell, reward in expected:
        observation, got_reward, terminated, truncated, info = env.step(action)
        np.testing.assert_array_equal(observation, cell)
        assert got_reward == pytest.approx(reward)
        assert info["success"] == (reward == 1.0)
        assert not terminated and not truncated


def test_gridworld_episode_lasts_15_steps_and_sparse_variant_gives_zero():
    env = single("gridworld", [4.0, 4.0], reward_variant="sparse")
    truncations = [env.step(0)[3] for _ in range(15)]
    assert truncations == [False] * 14 + [True]
    assert env.step(0)[1] == 0.0


def test_gridworld_exact_belief_reward():
    env = single("gridworld", [4.0, 4.0])
    # at (0, 0), not a candidate: 21 goals remain
    _, _, _, _, info = env.step(1)  # (0, 1): not a candidate either
    assert info["belief_reward"] == pytest.approx((1 - 0.1 * 20) / 21)
    env.step(1)  # (0, 2): a candidate, ruled out -> 20 remain
    _, _, _, _, info = env.step(2)  # (1, 2): ruled out -> 19 remain
    assert info["belief_reward"] == pytest.approx((1 - 0.1 * 18) / 19)
    for action in (2, 2, 2, 1, 1):  # to (4, 2), (4, 3), (4, 4): the goal
        _, _, _, _, info = env.step(action)
    assert info["belief_reward"] == pytest.approx(1.0)


def test_gridworld_seeds_0_to_20_select_every_goal_once():
    goals = {tuple(task_from_seed("gridworld", seed)) for seed in range(21)}
    assert len(goals) == 21
    np.testing.assert_array_equal(task_from_seed("gridworld", 73), goal_cells(5)[73 % 21])


def test_gridworld_rejects_a_task_that_is_not_a_goal():
    env = make_batched_env("gridworld", 1)
    with pytest.raises(ValueError, match="goal cells"):
        env.set_tasks(np.array([[0.0, 0.0]]))


def test_gridworld_uniform_start_never_starts_on_the_goal():
    env = make_batched_env("gridworld", 50, {"start_distribution": "uniform"})
    env.set_tasks(np.tile([[3.0, 3.0]], (50, 1)))
    env.seed(list(range(50)))
    starts = env.reset()
    assert not np.any(np.all(starts == [3.0, 3.0], axis=1))
    assert len({tuple(start) for start in starts}) > 5


# ----------------------------------------------------------------------------- point robots
def test_point_robot_dense_dynamics_and_reward():
    env = single("point_robot", [0.5, -0.5], start_distribution="origin")
    observation, reward, terminated, truncated, _ = env.step(np.array([0.05, -0.3]))
    np.testing.assert_allclose(observation, [0.05, -0.1], rtol=1e-6)  # action clipped to 0.1
    assert reward == pytest.approx(-np.hypot(0.45, 0.4), rel=1e-6)
    assert not terminated and not truncated


def test_semicircle_sparse_reward_and_success_at_the_radius():
    env = single("point_robot_sparse", [1.0, 0.0])
    for _ in range(8):
        observation, reward, *_ = env.step(np.array([0.1, 0.0]))
    np.testing.assert_allclose(observation, [0.8, 0.0], atol=1e-6)  # distance 0.2: inside
    assert reward == 1.0
    inside = env.reward(None, None, np.array([0.81, 0.0]), np.array([1.0, 0.0]))
    outside = env.reward(None, None, np.array([0.79, 0.0]), np.array([1.0, 0.0]))
    assert (inside, outside) == (1.0, 0.0)


def test_semicircle_goals_lie_on_the_upper_unit_arc():
    env = make_batched_env("point_robot_sparse")
    goals = env.sample_tasks(200, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0)
    assert np.all(goals[:, 1] >= 0)
    angle = np.random.default_rng(73).uniform(0.0, np.pi)
    np.testing.assert_allclose(task_from_seed("point_robot_sparse", 73),
                               [np.cos(angle), np.sin(angle)])


@pytest.mark.parametrize(
    ("distribution", "low", "high"),
    [("square", (-1, -1), (1, 1)), ("uniform", (-1.5, -0.5), (1.5, 1.5)),
     ("uniform_off_circle", (-1.5, -0.5), (1.5, 1.5)), ("origin", (0, 0), (0, 0))],
)
def test_point_robot_start_distributions(distribution, low, high):
    env = make_batched_env("point_robot_sparse", 400, {"start_distribution": distribution})
    env.set_tasks(np.tile([[0.0, 1.0]], (400, 1)))
    env.seed(list(range(400)))
    starts = env.reset()
    assert np.all(starts >= np.array(low) - 1e-7) and np.all(starts <= np.array(high) + 1e-7)
    if distribution == "uniform_off_circle":
        radii = np.linalg.norm(starts, axis=1)
        assert not np.any((radii >= 0.8) & (radii <= 1.2))


def test_focal_sparse_point_robot_dense_reward_with_sparse_companion():
    env = single("sparse-point-robot", [1.0, 0.0])
    assert env.max_episode_steps == 20
    for _ in range(9):
        _, reward, _, _, info = env.step(np.array([0.1, 0.0]))
    assert reward == pytest.approx(-0.1, abs=1e-6)  # dense: -||s' - g|| at (0.9, 0)
    assert info["sparse_reward"] == pytest.approx(1.0 - 0.1 / 0.2, abs=1e-5)
    assert info["success"]


def test_wind_moves_the_robot_and_goals_differ_between_papers():
    env = single("point_robot_wind", [0.05, -0.02])
    observation, *_ = env.step(np.array([0.1, 0.1]))
    np.testing.assert_allclose(observation, [0.15, 0.08], rtol=1e-6)
    assert env.reward(None, None, np.array([0.0, 0.9]), np.array([0.0, 0.0])) == 1.0
    focal = single("point-robot-wind", [0.0, 0.0])
    _, reward, *_ = focal.step(np.array([0.1, 0.0]))
    assert reward == pytest.approx(-0.9, rel=1e-6)  # goal (1, 0), dense
    assert focal.max_episode_steps == 25
    with pytest.raises(ValueError, match="wind"):
        env.set_task(np.array([0.2, 0.0]))


# ----------------------------------------------------------------------------- escape room
def test_wall_contact_is_the_first_point_of_the_segment_in_the_ring():
    touches, points = first_wall_contact(
        np.array([[0.95, 0.0], [0.0, 0.0], [1.2, 0.0], [0.9995, 0.0]]),
        np.array([[0.1, 0.0], [0.1, 0.0], [-0.1, 0.0], [0.0, 0.0]]),
    )
    np.testing.assert_array_equal(touches, [True, False, False, True])
    np.testing.assert_allclose(points[0], [0.999, 0.0])
    np.testing.assert_allclose(points[3], [0.9995, 0.0])


def test_escape_room_door_lets_through_and_wall_pushes_back():
    through = single("escape_room", [0.0])
    through.batched._states[:] = [0.95, 0.0]
    observation, reward, _, _, info = through.step(np.array([0.1, 0.0]))
    np.testing.assert_allclose(observation, [1.05, 0.0], rtol=1e-6)
    assert reward == 1.0 and info["success"]

    blocked = single("escape_room", [np.pi / 2])
    blocked.batched._states[:] = [0.95, 0.0]
    observation, reward, *_ = blocked.step(np.array([0.1, 0.0]))
    np.testing.assert_allclose(observation, [0.99, 0.0], rtol=1e-6)
    assert reward == 0.0


def test_escape_room_door_edge_is_pi_over_16():
    just_inside = single("escape_room", [np.pi / 16 - 1e-3])
    just_outside = single("escape_room", [np.pi / 16 + 1e-3])
    for env, escapes in ((just_inside, True), (just_outside, False)):
        env.batched._states[:] = [0.95, 0.0]
        observation, reward, *_ = env.step(np.array([0.1, 0.0]))
        assert (reward == 1.0) == escapes


# ----------------------------------------------------------------------------- all toy envs
@pytest.mark.parametrize("env_type", TOY_ENV_TYPES)
def test_seed_selects_the_same_task_every_time(env_type):
    first = task_from_seed(env_type, 11)
    np.testing.assert_array_equal(first, task_from_seed(env_type, 11))
    assert not np.array_equal(first, task_from_seed(env_type, 12))


@pytest.mark.parametrize("env_type", TOY_ENV_TYPES)
def test_pure_reward_equals_stepped_reward_on_random_rollouts(env_type):
    env = make_batched_env(env_type, 6, {"start_distribution": "uniform"}
                           if env_type in ("gridworld", "point_robot_sparse", "escape_room")
                           else None)
    env.set_tasks(np.stack([env.task_from_seed(seed) for seed in range(6)]))
    env.seed(range(6))
    bamdp = BatchedBAMDP(env, episodes_per_task=2)
    rng = np.random.default_rng(0)
    discrete = hasattr(bamdp.action_space, "n")

    def policy(observations):
        if discrete:
            return rng.integers(0, bamdp.action_space.n, size=len(observations))
        return rng.uniform(-1, 1, size=(len(observations), 2))

    batch = collect_meta_episodes(bamdp, policy)
    tasks = env.get_tasks()[:, None, :]
    native_actions = batch.actions if discrete else bamdp.to_native_actions(batch.actions)
    recomputed = env.reward(batch.observations[..., :2], native_actions,
                            batch.next_observations[..., :2], tasks)
    np.testing.assert_array_equal(recomputed, batch.rewards[..., 0])
    success = env.success(batch.observations, native_actions, batch.next_observations[..., :2],
                          tasks)
    np.testing.assert_array_equal(success, batch.successes[..., 0].astype(bool))
    if batch.sparse_rewards is not None:
        sparse = env.sparse_reward(None, None, batch.next_observations[..., :2], tasks)
        np.testing.assert_array_equal(sparse, batch.sparse_rewards[..., 0])


@pytest.mark.parametrize("env_type", TOY_ENV_TYPES)
def test_batched_env_reproduces_single_envs_exactly(env_type):
    num_envs, steps = 4, 45
    options = {"start_distribution": "uniform"} if env_type in (
        "gridworld", "point_robot_sparse", "escape_room") else None
    tasks = np.stack([task_from_seed(env_type, seed) for seed in range(num_envs)])
    batched = make_batched_env(env_type, num_envs, options)
    batched.set_tasks(tasks)
    batched.seed([100 + index for index in range(num_envs)])
    rng = np.random.default_rng(1)
    discrete = hasattr(batched.action_space, "n")
    if discrete:
        actions = rng.integers(0, 5, size=(steps, num_envs))
    else:
        actions = rng.uniform(-0.15, 0.15, size=(steps, num_envs, 2))
    batched_observations = [batched.reset()]
    batched_rewards = []
    for step in range(steps):
        if step and step % 15 == 0:
            batched_observations.append(batched.reset(np.array([True, False, True, False])))
        result = batched.step(actions[step])
        batched_observations.append(result.observations)
        batched_rewards.append(result.rewards)
    for index in range(num_envs):
        env = make_env(env_type, tasks[index], env_options=options)
        observation, _ = env.reset(seed=100 + index)
        observations, rewards = [observation], []
        for step in range(steps):
            if step and step % 15 == 0:
                observations.append(env.reset()[0] if index in (0, 2) else observation)
            observation, reward, *_ = env.step(actions[step, index])
            observations.append(observation)
            rewards.append(reward)
        np.testing.assert_array_equal(np.array(observations),
                                      np.array(batched_observations)[:, index])
        np.testing.assert_array_equal(np.array(rewards, dtype=np.float32),
                                      np.array(batched_rewards)[:, index])


@pytest.mark.parametrize("env_type", TOY_ENV_TYPES)
def test_layout_and_trajectory_figure_draws(env_type, tmp_path):
    from utils.plotting import trajectory_figure

    env = make_batched_env(env_type, 1)
    env.set_tasks(env.task_from_seed(3)[None])
    bamdp = BatchedBAMDP(env, episodes_per_task=2)
    rng = np.random.default_rng(0)
    batch = collect_meta_episodes(
        bamdp,
        lambda obs: rng.integers(0, 5, len(obs)) if hasattr(bamdp.action_space, "n")
        else rng.uniform(-1, 1, (len(obs), 2)),
    )
    figure = trajectory_figure(env, env.get_tasks()[0], batch.observations[0],
                               batch.next_observations[0], batch.truncations[0],
                               int(batch.lengths[0]), title=env_type)
    assert len(figure.axes[0].get_legend().get_texts()) == 2
    path = tmp_path / "trajectory.png"
    figure.savefig(path)
    assert path.stat().st_size > 5000
