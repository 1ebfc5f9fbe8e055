"""The BAMDP wrapper: k inner episodes of one task form a meta-episode.

For K copies of a family (:class:`BatchedBAMDP`) and, for one copy, as a ``gymnasium.Env``
(:class:`BAMDPEnv`). Conventions (spec borel.md section 1.1, with the reset-state fix of
section 9.6):

- A meta-episode is ``episodes_per_task`` (k) consecutive inner episodes in the same task. An inner
  episode ends after ``max_episode_steps`` (H) steps or earlier when the family reports
  ``terminated`` (a fall); the next inner episode then starts from a fresh reset. The meta-episode
  ends when the k-th inner episode ends, so it lasts at most ``trajectory_len = k * H`` steps.
- When k > 1 a 0/1 flag is appended to every observation: 1 on the observation that ends an inner
  episode, 0 otherwise.
- Box actions are taken in [-1, 1] and mapped affinely to the family's bounds, then clipped.
  Discrete actions are integer indices.
- After an inner episode ends, the *next* observation the agent sees is the true reset state (flag
  0). The transition's own ``next_observation`` is the real final state (flag 1), so stored rewards
  can be recomputed from (observation, action, next_observation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from environments.base import BatchedTaskEnv


@dataclass
class BAMDPStep:
    """One step of K meta-episodes; every array has leading dimension K.

    Attributes:
        observations: what each copy acts on next (the reset state after an inner reset).
        next_observations: the true next state of this transition (flag 1 at an inner end).
        rewards: rewards of this transition.
        terminations: the TD terminal stored with the data: a fall, or the goal reached where
            the family treats success as terminal (BOReL's goal envs; not Meta-World).
        truncations: True where this transition ends an inner episode.
        successes: True where the goal was reached.
        active: True where the copy was inside its meta-episode when this step was taken; the
            outputs of inactive copies are padding.
        meta_episode_done: True where the meta-episode ended with this step or earlier.
        infos: family-specific per-copy arrays (for example the gridworld's belief reward).
    """

    observations: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    successes: np.ndarray
    active: np.ndarray
    meta_episode_done: np.ndarray
    infos: dict[str, np.ndarray] = field(default_factory=dict)


def with_done_flag(observations: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Append a 0/1 column to (K, obs_dim) observations."""
    return np.concatenate([observations, flags.astype(np.float32)[:, None]], axis=1)


class BatchedBAMDP:
    """K copies of a family, each playing meta-episodes of k inner episodes of one task."""

    def __init__(
        self,
        env: BatchedTaskEnv,
        episodes_per_task: int,
        max_episode_steps: int | None = None,
    ) -> None:
        if episodes_per_task < 1:
            raise ValueError(f"episodes_per_task must be at least 1, got {episodes_per_task}")
        self.env = env
        self.num_envs = env.num_envs
        self.episodes_per_task = episodes_per_task
        self.max_episode_steps = max_episode_steps or env.max_episode_steps
        self.trajectory_len = episodes_per_task * self.max_episode_steps
        self.add_done_flag = episodes_per_task > 1

        inner = env.observation_space
        if self.add_done_flag:
            low = np.append(inner.low, 0.0).astype(np.float32)
            high = np.append(inner.high, 1.0).astype(np.float32)
            self.observation_space = spaces.Box(low, high, dtype=np.float32)
        else:
            self.observation_space = inner
        native = env.action_space
        if isinstance(native, spaces.Box):
            self.action_space: spaces.Box | spaces.Discrete = spaces.Box(
                -1.0, 1.0, shape=native.shape, dtype=np.float32
            )
            self._action_low = native.low.astype(np.float64)
            self._action_high = native.high.astype(np.float64)
        else:
            self.action_space = native

        self._observations = np.zeros((self.num_envs, self.observation_space.shape[0]), np.float32)
        self._inner_steps = np.zeros(self.num_envs, dtype=np.int64)
        self._episode_index = np.zeros(self.num_envs, dtype=np.int64)
        self._done = np.ones(self.num_envs, dtype=bool)
        self._ended_in_terminal_state = np.zeros(self.num_envs, dtype=bool)

    @property
    def observation_dim(self) -> int:
        return self.observation_space.shape[0]

    @property
    def episode_index(self) -> np.ndarray:
        """Index (0..k-1) of the inner episode each copy is in."""
        return self._episode_index.copy()

    @property
    def ended_in_terminal_state(self) -> np.ndarray:
        """Whether each copy's meta-episode ended because its last inner episode terminated."""
        return self._ended_in_terminal_state.copy()

    def set_tasks(self, tasks: np.ndarray) -> None:
        self.env.set_tasks(tasks)

    def get_tasks(self) -> np.ndarray:
        return self.env.get_tasks()

    def seed(self, seeds: list[int] | np.ndarray) -> None:
        self.env.seed(seeds)

    def to_native_actions(self, actions: np.ndarray) -> np.ndarray:
        """Map [-1, 1] actions to the family's bounds (clipped); discrete actions pass through."""
        if isinstance(self.action_space, spaces.Discrete):
            return np.asarray(actions, dtype=np.int64)
        actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        scaled = self._action_low + (actions + 1.0) * 0.5 * (self._action_high - self._action_low)
        return np.clip(scaled, self._action_low, self._action_high)

    def _observe(self, raw: np.ndarray, flags: np.ndarray) -> np.ndarray:
        raw = raw.astype(np.float32, copy=False)
        return with_done_flag(raw, flags) if self.add_done_flag else raw.copy()

    def reset(self) -> np.ndarray:
        """Start a new meta-episode in every copy; returns observations (K, obs_dim[+1])."""
        self.env.start_meta_episode(np.ones(self.num_envs, dtype=bool))
        raw = self.env.reset()
        self._inner_steps[:] = 0
        self._episode_index[:] = 0
        self._done[:] = False
        self._ended_in_terminal_state[:] = False
        self._observations = self._observe(raw, np.zeros(self.num_envs, dtype=bool))
        return self._observations.copy()

    def step(self, actions: np.ndarray) -> BAMDPStep:
        """Step every copy; copies whose meta-episode is over are left untouched (inactive)."""
        active = ~self._done
        result = self.env.step(self.to_native_actions(actions))
        self._inner_steps += active
        inner_end = active & (
            result.terminated | (self._inner_steps >= self.max_episode_steps)
        )
        next_observations = self._observe(result.observations, inner_end)
        next_observations[~active] = self._observations[~active]

        finishing = inner_end & (self._episode_index + 1 >= self.episodes_per_task)
        continuing = inner_end & ~finishing
        observations = next_observations.copy()
        if continuing.any():
            reset_raw = self.env.reset(mask=continuing)
            observations[continuing] = self._observe(
                reset_raw[continuing], np.zeros(int(continuing.sum()), dtype=bool)
            )
            self._inner_steps[continuing] = 0
            self._episode_index[continuing] += 1
        self._done |= finishing
        self._ended_in_terminal_state |= finishing & result.terminated
        self._observations = observations

        zero = ~active
        rewards = np.where(zero, 0.0, result.rewards).astype(np.float32)
        successes = result.successes & active
        goal_terminal = result.successes if self.env.success_is_terminal else False
        terminations = (result.terminated | goal_terminal) & active
        infos = {key: np.where(zero, 0, value) for key, value in result.infos.items()}
        return BAMDPStep(
            observations=observations.copy(),
            next_observations=next_observations,
            rewards=rewards,
            terminations=terminations,
            truncations=inner_end,
            successes=successes,
            active=active,
            meta_episode_done=self._done.copy(),
            infos=infos,
        )

    def close(self) -> None:
        self.env.close()


class BAMDPEnv(gymnasium.Env):
    """One copy of a :class:`BatchedBAMDP` as a ``gymnasium.Env``.

    ``step`` returns ``(obs, reward, terminated, truncated, info)``. The meta-episode ends with
    ``terminated`` when its last inner episode ended in a terminal state and with ``truncated``
    when it ran out of steps. ``info`` holds ``final_observation`` (the true next state, flag 1,
    when an inner episode ended), ``inner_episode_end``, ``terminal`` (the TD terminal),
    ``success``, ``episode_index`` and ``task``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, bamdp: BatchedBAMDP) -> None:
        if bamdp.num_envs != 1:
            raise ValueError("BAMDPEnv wraps a BatchedBAMDP with num_envs=1")
        self.bamdp = bamdp
        self.observation_space = bamdp.observation_space
        self.action_space = bamdp.action_space

    def set_task(self, task: np.ndarray) -> None:
        self.bamdp.set_tasks(np.asarray(task, np.float64)[None])

    def get_task(self) -> np.ndarray:
        return self.bamdp.get_tasks()[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.bamdp.seed([seed])
        if options and "task" in options:
            self.set_task(options["task"])
        return self.bamdp.reset()[0], {"task": self.get_task()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        result = self.bamdp.step(np.asarray(action)[None])
        inner_end = bool(result.truncations[0])
        done = bool(result.meta_episode_done[0])
        info: dict[str, Any] = {key: value[0] for key, value in result.infos.items()}
        info.update(
            inner_episode_end=inner_end,
            terminal=bool(result.terminations[0]),
            success=bool(result.successes[0]),
            episode_index=int(self.bamdp.episode_index[0]),
            task=self.get_task(),
        )
        if inner_end:
            info["final_observation"] = result.next_observations[0]
        terminated = done and bool(self.bamdp.ended_in_terminal_state[0])
        truncated = done and not terminated
        return result.observations[0], float(result.rewards[0]), terminated, truncated, info

    def close(self) -> None:
        self.bamdp.close()
