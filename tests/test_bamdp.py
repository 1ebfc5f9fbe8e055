"""The BAMDP wrapper: done flag, action normalisation, inner resets to the true reset state,
meta-episode ends, early terminations with padding, and the gymnasium adapter."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from environments.bamdp import BAMDPEnv, BatchedBAMDP
from environments.base import BatchedStep, BatchedTaskEnv
from environments.registry import make_batched_env
from utils.rollouts import collect_meta_episodes


class Line(BatchedTaskEnv):
    """A 1-D walker on [0, inf) that starts at 10 * copy index + 1 and falls when x > task."""

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 5) -> None:
        super().__init__(num_envs)
        self.max_episode_steps = max_episode_steps
        self.task_dim = 1
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(np.float32([-2.0]), np.float32([6.0]), dtype=np.float32)
        self._positions = np.zeros((num_envs, 1), dtype=np.float32)
        self.native_actions: list[np.ndarray] = []

    def sample_tasks(self, num_tasks, rng):
        return rng.uniform(2, 3, size=(num_tasks, 1))

    def _reset_copies(self, mask):
        self._positions[mask] = 0.0
        return self._positions.copy()

    def _step(self, actions):
        self.native_actions.append(actions.copy())
        self._positions = (self._positions + np.sign(actions)).astype(np.float32)
        next_obs = self._positions.copy()
        tasks = self.get_tasks()
        return BatchedStep(next_obs, self.reward(None, actions, next_obs, tasks),
                           next_obs[:, 0] > tasks[:, 0],
                           np.zeros(self.num_envs, dtype=bool))

    def reward(self, obs, action, next_obs, task):
        return np.asarray(next_obs, dtype=np.float32)[..., 0]


def test_done_flag_is_appended_only_with_several_episodes():
    env = make_batched_env("point_robot_sparse", 2)
    assert BatchedBAMDP(env, 2).observation_space.shape == (3,)
    assert BatchedBAMDP(env, 1).observation_space.shape == (2,)
    flagged = BatchedBAMDP(env, 2).observation_space
    assert flagged.low[-1] == 0.0 and flagged.high[-1] == 1.0


def test_box_actions_are_mapped_from_unit_interval_and_clipped():
    bamdp = BatchedBAMDP(Line(3), 2)
    assert bamdp.action_space.low[0] == -1.0 and bamdp.action_space.high[0] == 1.0
    native = bamdp.to_native_actions(np.array([[-1.0], [0.0], [1.0]]))
    np.testing.assert_allclose(native[:, 0], [-2.0, 2.0, 6.0])
    np.testing.assert_allclose(bamdp.to_native_actions(np.array([[5.0]]))[:, 0], [6.0])


def test_inner_reset_gives_the_true_reset_state_and_keeps_the_final_state():
    env = make_batched_env("point_robot_sparse", 1)
    env.set_tasks(np.array([[0.0, 1.0]]))
    bamdp = BatchedBAMDP(env, episodes_per_task=2, max_episode_steps=3)
    observation = bamdp.reset()
    np.testing.assert_array_equal(observation, [[0.0, 0.0, 0.0]])
    for _ in range(2):
        result = bamdp.step(np.array([[1.0, 1.0]]))
        assert not result.truncations[0]
    result = bamdp.step(np.array([[1.0, 1.0]]))
    assert result.truncations[0] and not result.meta_episode_done[0]
    np.testing.assert_allclose(result.next_observations[0], [0.3, 0.3, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(result.observations[0], [0.0, 0.0, 0.0])
    assert bamdp.episode_index[0] == 1
    for _ in range(3):
        result = bamdp.step(np.array([[1.0, 1.0]]))
    assert result.meta_episode_done[0] and result.truncations[0]
    np.testing.assert_allclose(result.observations[0], [0.3, 0.3, 1.0], rtol=1e-6)


def test_early_termination_resets_the_inner_episode_and_pads_the_trajectory():
    env = Line(2, max_episode_steps=5)
    env.set_tasks(np.array([[2.5], [100.0]]))  # copy 0 falls at x = 3 (third step)
    bamdp = BatchedBAMDP(env, episodes_per_task=2)
    batch = collect_meta_episodes(bamdp, lambda observations: np.ones((2, 1)))
    assert bamdp.trajectory_len == 10
    np.testing.assert_array_equal(batch.lengths, [6, 10])
    np.testing.assert_array_equal(batch.truncations[0, :, 0], [0, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.terminations[0, :, 0], [0, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.truncations[1, :, 0], [0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(batch.observations[0, :6, 0], [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(batch.next_observations[0, :6, 0], [1, 2, 3, 1, 2, 3])
    np.testing.assert_array_equal(batch.observations[0, 6:], 0.0)  # padding
    np.testing.assert_array_equal(batch.rewards[0, 6:], 0.0)
    np.testing.assert_allclose(batch.episode_returns(2), [[6, 6], [15, 15]])


def test_gymnasium_adapter_reports_termination_truncation_and_final_observation():
    env = Line(1, max_episode_steps=5)
    env.set_tasks(np.array([[2.5]]))
    adapter = BAMDPEnv(BatchedBAMDP(env, episodes_per_task=2))
    adapter.reset(seed=0)
    outcomes = [adapter.step(np.array([1.0])) for _ in range(6)]
    _, _, terminated, truncated, info = outcomes[2]
    assert info["inner_episode_end"] and info["terminal"] and not (terminated or truncated)
    np.testing.assert_array_equal(info["final_observation"], [3.0, 1.0])
    np.testing.assert_array_equal(outcomes[2][0], [0.0, 0.0])
    _, _, terminated, truncated, info = outcomes[5]
    assert terminated and not truncated and info["episode_index"] == 1

    calm = Line(1, max_episode_steps=2)
    calm.set_tasks(np.array([[100.0]]))
    adapter = BAMDPEnv(BatchedBAMDP(calm, episodes_per_task=2))
    adapter.reset()
    ends = [adapter.step(np.array([0.5]))[2:4] for _ in range(4)]
    assert ends == [(False, False)] * 3 + [(False, True)]


def test_inactive_copies_are_left_untouched():
    env = Line(2, max_episode_steps=2)
    env.set_tasks(np.array([[0.5], [100.0]]))  # copy 0 falls on every first step
    bamdp = BatchedBAMDP(env, episodes_per_task=1)
    bamdp.reset()
    first = bamdp.step(np.ones((2, 1)))
    assert first.meta_episode_done.tolist() == [True, False]
    second = bamdp.step(np.ones((2, 1)))
    assert second.active.tolist() == [False, True]
    assert second.rewards[0] == 0.0 and not second.truncations[0]
    np.testing.assert_array_equal(second.next_observations[0], first.next_observations[0])


def test_gridworld_belief_persists_across_inner_episodes_and_resets_per_meta_episode():
    env = make_batched_env("gridworld", 1)
    env.set_tasks(np.array([[4.0, 4.0]]))
    bamdp = BatchedBAMDP(env, episodes_per_task=4)
    bamdp.reset()
    for _ in range(15):
        result = bamdp.step(np.array([2]))  # walk right along the bottom row
    after_first_episode = result.infos["belief_reward"][0]
    assert after_first_episode == pytest.approx((1 - 0.1 * 17) / 18)  # (2..4, 0) ruled out
    result = bamdp.step(np.array([0]))  # stay at the reset cell (0, 0)
    assert result.infos["belief_reward"][0] == pytest.approx(after_first_episode)
    bamdp.reset()
    result = bamdp.step(np.array([0]))
    assert result.infos["belief_reward"][0] == pytest.approx((1 - 0.1 * 20) / 21)


def test_discrete_actions_are_stored_one_hot():
    env = make_batched_env("gridworld", 2)
    env.set_tasks(np.array([[4.0, 4.0], [2.0, 2.0]]))
    bamdp = BatchedBAMDP(env, episodes_per_task=4)
    batch = collect_meta_episodes(bamdp, lambda observations: np.array([1, 2]))
    assert batch.actions.shape == (2, 60, 5)
    np.testing.assert_array_equal(batch.actions[0, :, 1], 1.0)
    np.testing.assert_array_equal(batch.actions[1, :, 2], 1.0)
    assert batch.actions.sum() == 120
    np.testing.assert_array_equal(batch.lengths, [60, 60])


def test_success_is_a_td_terminal_only_where_the_family_says_so():
    class AlwaysSucceeds(Line):
        def _step(self, actions):
            result = super()._step(actions)
            result.successes[:] = True
            return result

    class KeepsRewarding(AlwaysSucceeds):
        success_is_terminal = False

    for family, expected in ((AlwaysSucceeds, 1.0), (KeepsRewarding, 0.0)):
        env = family(1, max_episode_steps=3)
        env.set_tasks(np.array([[100.0]]))
        batch = collect_meta_episodes(BatchedBAMDP(env, 1), lambda obs: np.zeros((1, 1)))
        np.testing.assert_array_equal(batch.successes[0, :, 0], 1.0)
        np.testing.assert_array_equal(batch.terminations[0, :, 0], expected)
