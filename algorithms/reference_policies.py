"""Reference policies for the results table: random, task-oracle and scripted Bayes-adaptive search.

Each policy plays K meta-episodes at once inside a :class:`~environments.bamdp.BatchedBAMDP`:
``policy(observations)`` maps (K, obs_dim) observations to actions in the BAMDP's action space
(Box actions in [-1, 1], Discrete actions as integers), and ``policy.observe(stored_actions,
result)`` sees every step's :class:`~environments.bamdp.BAMDPStep`, so a scripted searcher can
rule out what it has seen. ``policy.reset()`` starts new meta-episodes. Use them with
:func:`utils.rollouts.collect_meta_episodes` (``on_step=policy.observe``).

- ``random``: uniform actions (every env).
- ``oracle``: knows the task and goes straight to the goal, then stays (gridworld, point robots,
  wind; the wind oracle cancels the wind).
- ``search``: what a Bayes-adaptive agent should do without knowing the task.
  Gridworld: walk to the nearest goal cell not yet ruled out (ties by cell id), rule out every
  cell it passes, and once the goal is seen go straight to it in every later episode.
  Semi-circle (``point_robot_sparse``): go to (1, 0), sweep the arc counter-clockwise until a
  reward arrives, stay there, and go straight back to that point in later episodes.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from environments.bamdp import BAMDPStep, BatchedBAMDP
from environments.toy_navigation.gridworld import GridWorld, cell_ids
from environments.toy_navigation.point_robot import ACTION_BOUND, PointRobot, PointRobotWind

REFERENCE_POLICIES = ("random", "oracle", "search")
ARC_SWEEP_STEP = 0.1
ARC_RADIUS = 1.0
ARRIVAL_TOLERANCE = 1e-4


class ReferencePolicy:
    """Base class: K copies, stateless unless a subclass keeps a memory."""

    def __init__(self, bamdp: BatchedBAMDP) -> None:
        self.bamdp = bamdp
        self.num_envs = bamdp.num_envs

    def reset(self) -> None:
        """Forget everything: new meta-episodes (and possibly new tasks) start."""

    def observe(self, stored_actions: np.ndarray, result: BAMDPStep) -> None:
        """Update the memory with one step of every copy."""

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomPolicy(ReferencePolicy):
    """Uniform actions from a seeded generator."""

    def __init__(self, bamdp: BatchedBAMDP, seed: int = 0) -> None:
        super().__init__(bamdp)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        space = self.bamdp.action_space
        if isinstance(space, spaces.Discrete):
            return self.rng.integers(0, int(space.n), size=self.num_envs)
        return self.rng.uniform(-1.0, 1.0, size=(self.num_envs, *space.shape)).astype(np.float32)


def grid_step_towards(positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Gridworld action (K,) moving each cell one step towards its target: along x first, then y;
    0 (stay) on the target."""
    difference = np.rint(targets - positions).astype(np.int64)
    actions = np.zeros(len(positions), dtype=np.int64)
    actions[difference[:, 1] > 0] = 1
    actions[difference[:, 1] < 0] = 3
    actions[difference[:, 0] > 0] = 2
    actions[difference[:, 0] < 0] = 4
    return actions


def point_step_towards(positions: np.ndarray, targets: np.ndarray, drift: np.ndarray | None = None
                       ) -> np.ndarray:
    """Point-robot action in [-1, 1]^2 that moves each robot as far as one step allows towards its
    target, cancelling a known ``drift`` (the wind) if given."""
    move = targets - positions
    if drift is not None:
        move = move - drift
    return np.clip(move / ACTION_BOUND, -1.0, 1.0).astype(np.float32)


class GridOracle(ReferencePolicy):
    """Walks the shortest path to the known goal and stays on it."""

    def __init__(self, bamdp: BatchedBAMDP, tasks: np.ndarray) -> None:
        super().__init__(bamdp)
        self.goals = np.asarray(tasks, dtype=np.float64)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return grid_step_towards(observations[:, :2], self.goals)


class GridSearch(ReferencePolicy):
    """Scripted Bayes-adaptive search on the gridworld (see the module docstring)."""

    def __init__(self, bamdp: BatchedBAMDP) -> None:
        super().__init__(bamdp)
        env: GridWorld = bamdp.env
        self.num_cells = env.num_cells
        self.candidate_ids = cell_ids(env.goals, env.num_cells)
        self.reset()

    def reset(self) -> None:
        self.possible = np.ones((self.num_envs, len(self.candidate_ids)), dtype=bool)
        self.found = np.full(self.num_envs, -1, dtype=np.int64)

    def observe(self, stored_actions: np.ndarray, result: BAMDPStep) -> None:
        cells = cell_ids(result.next_observations[:, :2], self.num_cells)
        for index in np.flatnonzero(result.active):
            here = self.candidate_ids == cells[index]
            if result.successes[index]:
                self.found[index] = cells[index]
            else:
                self.possible[index, here] = False

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        positions = np.rint(observations[:, :2]).astype(np.int64)
        candidates = np.stack([self.candidate_ids % self.num_cells,
                               self.candidate_ids // self.num_cells], axis=1)
        targets = positions.copy()
        for index in range(self.num_envs):
            if self.found[index] >= 0:
                found = self.found[index]
                targets[index] = (found % self.num_cells, found // self.num_cells)
                continue
            open_cells = candidates[self.possible[index]]
            if len(open_cells) == 0:
                continue
            distances = np.abs(open_cells - positions[index]).sum(axis=1)
            targets[index] = open_cells[int(np.argmin(distances))]
        return grid_step_towards(positions, targets)


class PointOracle(ReferencePolicy):
    """Moves straight to the known goal (cancelling a known wind) and stays on it."""

    def __init__(self, bamdp: BatchedBAMDP, tasks: np.ndarray) -> None:
        super().__init__(bamdp)
        env: PointRobot = bamdp.env
        tasks = np.asarray(tasks, dtype=np.float64)
        self.goals = np.array(env._goals(tasks), dtype=np.float64)
        self.drift = tasks if isinstance(env, PointRobotWind) else None

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return point_step_towards(observations[:, :2].astype(np.float64), self.goals, self.drift)


class ArcSearch(ReferencePolicy):
    """Scripted search of the semi-circle (see the module docstring).

    ``angle`` is each copy's sweep progress: it heads for the arc point at that angle and, on
    reaching it, advances the angle by one step length, so the sweep resumes where it stopped
    after an inner reset.
    """

    def __init__(self, bamdp: BatchedBAMDP) -> None:
        super().__init__(bamdp)
        self.reset()

    def reset(self) -> None:
        self.found = np.full((self.num_envs, 2), np.nan)
        self.angle = np.zeros(self.num_envs)

    def observe(self, stored_actions: np.ndarray, result: BAMDPStep) -> None:
        rewarded = result.active & (result.rewards > 0) & np.isnan(self.found[:, 0])
        self.found[rewarded] = result.next_observations[rewarded, :2]

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        positions = observations[:, :2].astype(np.float64)
        arc_points = ARC_RADIUS * np.stack([np.cos(self.angle), np.sin(self.angle)], axis=1)
        arrived = np.linalg.norm(positions - arc_points, axis=1) < ARRIVAL_TOLERANCE
        self.angle = np.where(arrived, np.minimum(self.angle + ARC_SWEEP_STEP, np.pi), self.angle)
        arc_points = ARC_RADIUS * np.stack([np.cos(self.angle), np.sin(self.angle)], axis=1)
        targets = np.where(np.isnan(self.found), arc_points, self.found)
        return point_step_towards(positions, targets)


def make_reference_policy(name: str, bamdp: BatchedBAMDP, tasks: np.ndarray, seed: int = 0
                          ) -> ReferencePolicy | None:
    """The reference policy ``name`` for the tasks ``tasks`` (K, task_dim) of ``bamdp``, or None
    where the project has none for this env (an oracle or a scripted search exists only for the
    navigation envs it knows)."""
    if name not in REFERENCE_POLICIES:
        raise ValueError(f"unknown reference policy {name!r}; choose from {REFERENCE_POLICIES}")
    env = bamdp.env
    if name == "random":
        return RandomPolicy(bamdp, seed)
    if isinstance(env, GridWorld):
        return GridOracle(bamdp, tasks) if name == "oracle" else GridSearch(bamdp)
    if isinstance(env, PointRobot):
        if name == "oracle":
            return PointOracle(bamdp, tasks)
        if env.goal_distribution == "semicircle" and env.reward_variant == "sparse":
            return ArcSearch(bamdp)
    return None
