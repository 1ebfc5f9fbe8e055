"""Escape Room: a point robot inside a circular wall with one door; the task is the door's angle.

The wall is the thin ring ``WALL_INNER <= ||p|| <= 1``. The door, of angular width pi/8, is centred
at theta ~ U[0, pi]. A move s -> s + a that touches the wall is tested at the first point p of the
segment inside the ring: if the polar angle of p lies within theta +- pi/16 the move goes through;
otherwise the robot is pushed back to 0.99 (s + a) / ||s + a||. The reward is 1 once outside the
room (||s'|| > 1), else 0; that is also success. Only the dynamics differ between tasks, so Reward
Relabelling does not apply (Policy Replaying does). Spec: borel.md section 2.2 (Escape Room).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from environments.base import BatchedStep, BatchedTaskEnv
from environments.toy_navigation.point_robot import ACTION_BOUND

WALL_INNER = 0.999
WALL_OUTER = 1.0
DOOR_HALF_WIDTH = np.pi / 16
PUSH_BACK_RADIUS = 0.99


def first_wall_contact(starts: np.ndarray, moves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments p(t) = s + t a, t in [0, 1], find the smallest t with p(t) in the wall ring.

    Args:
        starts: segment starts s, shape (N, 2).
        moves: displacements a, shape (N, 2).

    Returns:
        ``(touches, points)``: (N,) bool, whether the segment meets the ring, and (N, 2) the first
        contact point (undefined where it does not touch).
    """
    starts = np.asarray(starts, dtype=np.float64)
    moves = np.asarray(moves, dtype=np.float64)
    start_norm_sq = np.sum(starts**2, axis=1)
    linear = 2.0 * np.sum(starts * moves, axis=1)
    quadratic = np.sum(moves**2, axis=1)
    start_radius = np.sqrt(start_norm_sq)

    def first_root(radius: float) -> np.ndarray:
        """Smallest t >= 0 with ||p(t)|| = radius (inf where there is none)."""
        constant = start_norm_sq - radius**2
        discriminant = linear**2 - 4.0 * quadratic * constant
        with np.errstate(invalid="ignore", divide="ignore"):
            root = np.sqrt(np.maximum(discriminant, 0.0))
            candidates = np.stack(
                [(-linear - root) / (2.0 * quadratic), (-linear + root) / (2.0 * quadratic)]
            )
        valid = (discriminant >= 0) & (quadratic > 0) & (candidates >= 0)
        return np.min(np.where(valid, candidates, np.inf), axis=0)

    inside_wall = (start_radius >= WALL_INNER) & (start_radius <= WALL_OUTER)
    contact_time = np.where(
        inside_wall,
        0.0,
        np.where(start_radius < WALL_INNER, first_root(WALL_INNER), first_root(WALL_OUTER)),
    )
    touches = contact_time <= 1.0
    points = starts + np.where(touches, contact_time, 0.0)[:, None] * moves
    return touches, points


def angle_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Absolute difference of two angles, wrapped to [0, pi]."""
    return np.abs((first - second + np.pi) % (2.0 * np.pi) - np.pi)


class EscapeRoom(BatchedTaskEnv):
    """K escape rooms; task = door angle (theta,)."""

    task_changes_dynamics = True

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = 60,
        start_distribution: str = "origin",
    ) -> None:
        super().__init__(num_envs)
        if start_distribution not in ("origin", "uniform"):
            raise ValueError(
                f"start_distribution must be 'origin' or 'uniform', got {start_distribution!r}"
            )
        self.max_episode_steps = int(max_episode_steps)
        self.start_distribution = start_distribution
        self.task_dim = 1
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(2,), dtype=np.float32)
        self._states = np.zeros((num_envs, 2), dtype=np.float32)

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.0, np.pi, size=(num_tasks, 1))

    def _reset_copies(self, mask: np.ndarray) -> np.ndarray:
        for index in np.flatnonzero(mask):
            if self.start_distribution == "origin":
                self._states[index] = 0.0
            else:
                rng = self._random_streams[index]
                angle = rng.uniform(0.0, 2.0 * np.pi)
                radius = rng.uniform(0.0, PUSH_BACK_RADIUS)
                self._states[index] = radius * np.array([np.cos(angle), np.sin(angle)])
        return self._states.copy()

    def transition(
        self, states: np.ndarray, actions: np.ndarray, tasks: np.ndarray
    ) -> np.ndarray:
        """Next positions (N, 2) after moving from ``states`` by ``actions`` with door ``tasks``."""
        states = np.asarray(states, dtype=np.float64)
        moves = np.clip(np.asarray(actions, dtype=np.float64), -ACTION_BOUND, ACTION_BOUND)
        proposed = states + moves
        touches, contacts = first_wall_contact(states, moves)
        contact_angles = np.arctan2(contacts[:, 1], contacts[:, 0])
        through_door = angle_difference(contact_angles, tasks[:, 0]) <= DOOR_HALF_WIDTH
        blocked = touches & ~through_door
        norms = np.linalg.norm(proposed, axis=1, keepdims=True)
        pushed_back = PUSH_BACK_RADIUS * proposed / np.maximum(norms, 1e-12)
        return np.where(blocked[:, None], pushed_back, proposed)

    def _step(self, actions: np.ndarray) -> BatchedStep:
        observations = self._states.copy()
        tasks = self.get_tasks()
        self._states = self.transition(observations, actions, tasks).astype(np.float32)
        next_observations = self._states.copy()
        return BatchedStep(
            observations=next_observations,
            rewards=self.reward(observations, actions, next_observations, tasks),
            terminated=np.zeros(self.num_envs, dtype=bool),
            successes=self.success(observations, actions, next_observations, tasks),
        )

    def success(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        radius = np.linalg.norm(np.asarray(next_obs, dtype=np.float64)[..., :2], axis=-1)
        return np.broadcast_to(radius > WALL_OUTER, np.broadcast_shapes(
            radius.shape, np.shape(task)[:-1]
        )).copy()

    def reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        return self.success(obs, action, next_obs, task).astype(np.float32)

    def trajectory_xy(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(observations)[..., :2]

    def plot_task(self, ax: Any, task: np.ndarray) -> None:
        door = float(np.asarray(task)[0])
        angles = np.linspace(0.0, 2.0 * np.pi, 400)
        wall = angle_difference(angles, door) > DOOR_HALF_WIDTH
        wall_angles = np.where(wall, angles, np.nan)
        ax.plot(np.cos(wall_angles), np.sin(wall_angles), color="black", linewidth=2)
        door_angles = np.linspace(door - DOOR_HALF_WIDTH, door + DOOR_HALF_WIDTH, 20)
        ax.plot(np.cos(door_angles), np.sin(door_angles), color="tab:green", linewidth=3)
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_aspect("equal")
