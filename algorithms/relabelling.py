"""Data transforms against MDP ambiguity: Reward Relabelling and Policy Replaying (BOReL).

Both replace the first ``floor(k / 2)`` inner episodes of a task's trajectories by episodes that a
*different* behaviour produced, so that the belief model cannot identify the task from which
states were visited (spec borel.md sections 4.2-4.3):

- **Reward Relabelling (RR)**, for families with shared dynamics and known rewards: each replaced
  episode is the same-index episode of a random trajectory of a random other task; its rewards and
  terminations are recomputed with the target task's pure ``reward`` / ``success``.
- **Policy Replaying (PR)**, for families whose dynamics differ between tasks (Wind, Escape Room):
  other tasks' stage-1 agents are run in the target task (real dynamics and rewards), and their
  first episodes replace the target's.

Episodes are located by the ``truncations`` marks, so inner episodes that ended early are handled;
a mixed trajectory is the replaced episodes followed by the target's own remaining ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from algorithms.agents import act
from environments.base import BatchedTaskEnv
from utils.datasets import TaskDataset
from utils.errors import UserError
from utils.rollouts import collect_meta_episodes

STEP_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminations",
               "truncations")
SourcePicker = Callable[[int, int, np.random.Generator], tuple[int, int]]
"""(target task, episode index, rng) -> (source dataset, source trajectory)."""


def episode_bounds(truncations: np.ndarray, length: int) -> list[tuple[int, int]]:
    """(start, end) of each inner episode of one trajectory from its truncation marks (T, 1)."""
    ends = np.flatnonzero(truncations[:length, 0]) + 1
    starts = np.concatenate([[0], ends[:-1]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def mix_first_episodes(
    targets: list[TaskDataset],
    sources: list[TaskDataset],
    pick_source: SourcePicker,
    episodes_to_replace: int,
    fraction: float,
    rng: np.random.Generator,
) -> tuple[list[TaskDataset], list[np.ndarray], list[np.ndarray]]:
    """Replace the first ``episodes_to_replace`` episodes of a ``fraction`` of every target's
    trajectories by episodes of ``sources`` chosen with ``pick_source``.

    Returns the mixed datasets, and for each a (N, T) int array naming the source dataset of every
    step (-1 where the step is the target's own) and a (N, T) int array of source trajectories.
    Rewards and flags are copied as they are; see :func:`reward_relabelling` for recomputing them.
    """
    mixed, source_tasks, source_trajectories = [], [], []
    for target_index, target in enumerate(targets):
        arrays = {name: getattr(target, name).copy() for name in STEP_FIELDS}
        sparse = None if target.sparse_rewards is None else target.sparse_rewards.copy()
        lengths = target.lengths.copy()
        origin = np.full(target.rewards.shape[:2], -1, dtype=np.int64)
        origin_trajectory = np.full(target.rewards.shape[:2], -1, dtype=np.int64)
        chosen = np.flatnonzero(rng.random(target.num_trajectories) < fraction)
        for trajectory in chosen:
            own = episode_bounds(target.truncations[trajectory], int(target.lengths[trajectory]))
            pieces = []  # (dataset index, trajectory, start, end)
            for episode in range(min(episodes_to_replace, len(own))):
                source_index, source_trajectory = pick_source(target_index, episode, rng)
                source = sources[source_index]
                bounds = episode_bounds(source.truncations[source_trajectory],
                                        int(source.lengths[source_trajectory]))
                if episode >= len(bounds):
                    raise UserError("a source trajectory has fewer inner episodes than needed")
                pieces.append((source_index, source_trajectory, *bounds[episode]))
            pieces += [(-1, trajectory, start, end) for start, end in own[len(pieces):]]
            position = 0
            for source_index, source_trajectory, start, end in pieces:
                dataset = target if source_index < 0 else sources[source_index]
                span = slice(position, position + end - start)
                for name in STEP_FIELDS:
                    arrays[name][trajectory, span] = getattr(dataset, name)[source_trajectory,
                                                                            start:end]
                if sparse is not None:
                    source_sparse = dataset.sparse_rewards
                    sparse[trajectory, span] = (0.0 if source_sparse is None
                                                else source_sparse[source_trajectory, start:end])
                origin[trajectory, span] = source_index
                origin_trajectory[trajectory, span] = source_trajectory
                position += end - start
            for name in STEP_FIELDS:
                arrays[name][trajectory, position:] = 0.0
            if sparse is not None:
                sparse[trajectory, position:] = 0.0
            lengths[trajectory] = position
        mixed.append(replace(target, **arrays, lengths=lengths, sparse_rewards=sparse))
        source_tasks.append(origin)
        source_trajectories.append(origin_trajectory)
    return mixed, source_tasks, source_trajectories


def check_relabelling_possible(env: BatchedTaskEnv, env_type: str) -> None:
    """Reward Relabelling needs recomputable rewards and dynamics shared by all tasks."""
    if not env.reward_recomputable:
        raise UserError(f"Reward Relabelling needs rewards recomputable from stored data, and "
                        f"{env_type}'s are not; use --hindsight-relabelling false")
    if env.task_changes_dynamics:
        raise UserError(f"Reward Relabelling assumes dynamics shared by all tasks, but "
                        f"{env_type}'s tasks change the dynamics; use --policy-replaying true")


def reward_relabelling(
    datasets: list[TaskDataset],
    env: BatchedTaskEnv,
    to_native_actions: Callable[[np.ndarray], np.ndarray],
    episodes_per_task: int,
    fraction: float,
    rng: np.random.Generator,
) -> list[TaskDataset]:
    """RR: the first floor(k/2) episodes of a ``fraction`` of each task's trajectories come from
    random other tasks (each episode independently), with rewards and terminations recomputed
    under the target task: r = reward(s, a, s' | task), d = success(s, a, s' | task) (if success
    is terminal for the family) or a fall already stored in the source."""
    if len(datasets) < 2:
        raise UserError("Reward Relabelling needs at least two tasks")

    def pick_source(target_index: int, episode: int, generator: np.random.Generator
                    ) -> tuple[int, int]:
        other = int(generator.integers(len(datasets) - 1))
        other += other >= target_index
        return other, int(generator.integers(datasets[other].num_trajectories))

    mixed, origins, _ = mix_first_episodes(datasets, datasets, pick_source,
                                           episodes_per_task // 2, fraction, rng)
    observation_dim = env.observation_space.shape[0]
    tasks = np.stack([dataset.task for dataset in datasets])
    relabelled = []
    for dataset, origin in zip(mixed, origins, strict=True):
        steps = origin >= 0
        if not steps.any():
            relabelled.append(dataset)
            continue
        observations = dataset.observations[steps][:, :observation_dim]
        next_observations = dataset.next_observations[steps][:, :observation_dim]
        actions = to_native_actions(dataset.actions[steps])
        rewards = env.reward(observations, actions, next_observations, dataset.task)
        successes = env.success(observations, actions, next_observations, dataset.task)
        source_tasks = tasks[origin[steps]]
        source_successes = env.success(observations, actions, next_observations, source_tasks)
        stored = dataset.terminations[steps][:, 0] > 0
        falls = stored & ~(source_successes & env.success_is_terminal)
        goal = successes & env.success_is_terminal
        new_rewards = dataset.rewards.copy()
        new_terminations = dataset.terminations.copy()
        new_rewards[steps, 0] = rewards
        new_terminations[steps, 0] = (goal | falls).astype(np.float32)
        updates = {"rewards": new_rewards, "terminations": new_terminations}
        if dataset.sparse_rewards is not None:
            sparse = env.sparse_reward(observations, actions, next_observations, dataset.task)
            if sparse is not None:
                new_sparse = dataset.sparse_rewards.copy()
                new_sparse[steps, 0] = sparse
                updates["sparse_rewards"] = new_sparse
        relabelled.append(replace(dataset, **updates))
    return relabelled


def policy_replaying(
    datasets: list[TaskDataset],
    replayed: list[TaskDataset],
    episodes_per_task: int,
    rng: np.random.Generator,
) -> list[TaskDataset]:
    """PR: the first floor(k/2) episodes of *every* trajectory of task i are replaced by the
    first episodes of random rollouts that other tasks' agents made in task i (``replayed[i]``,
    real rewards, nothing recomputed)."""
    for dataset, rollouts in zip(datasets, replayed, strict=True):
        if not np.array_equal(dataset.task, rollouts.task):
            raise UserError("the Policy Replaying rollouts do not match the dataset's tasks; "
                            "collect them again")

    def pick_source(target_index: int, episode: int, generator: np.random.Generator
                    ) -> tuple[int, int]:
        return target_index, int(generator.integers(replayed[target_index].num_trajectories))

    mixed, _, _ = mix_first_episodes(datasets, replayed, pick_source, episodes_per_task // 2,
                                     1.0, rng)
    return mixed


def collect_replaying_rollouts(
    agent_groups: list[tuple[object, list[int]]],
    bamdp_factory: Callable[[int], object],
    targets: list[tuple[int, np.ndarray]],
    num_policies: int,
    rollouts_per_policy: int,
    rng: np.random.Generator,
    meta: dict,
) -> list[TaskDataset]:
    """PR data: in each target task, meta-episodes of up to ``num_policies`` agents trained on
    *other* tasks (stochastic policies, real dynamics and rewards).

    Args:
        agent_groups: (stacked agents, the seed of each member) of the stage-1 runs.
        bamdp_factory: builds a ``BatchedBAMDP`` of the given number of copies.
        targets: (seed, task) of every task that needs rollouts.
        num_policies: other tasks' agents replayed per target task (chosen at random).
        rollouts_per_policy: meta-episodes per replayed agent.
        rng: chooses the agents and seeds the environments.
        meta: the dataset meta of the result (``seed`` and ``replayed_seeds`` are added).
    """
    members = [(group, member, seed) for group, (_, seeds) in enumerate(agent_groups)
               for member, seed in enumerate(seeds)]
    results = []
    for target_seed, task in targets:
        candidates = [index for index, (_, _, seed) in enumerate(members) if seed != target_seed]
        if not candidates:
            raise UserError("Policy Replaying needs agents trained on other tasks")
        chosen = set(rng.choice(candidates, size=min(num_policies, len(candidates)),
                                replace=False).tolist())
        pieces, replayed_seeds = [], []
        for group, (agent, seeds) in enumerate(agent_groups):
            wanted = [member for index, (g, member, _) in enumerate(members)
                      if g == group and index in chosen]
            if not wanted:
                continue
            bamdp = bamdp_factory(len(seeds) * rollouts_per_policy)
            bamdp.set_tasks(np.tile(task, (bamdp.num_envs, 1)))
            bamdp.seed(rng.integers(2**31, size=bamdp.num_envs).tolist())
            batch = collect_meta_episodes(bamdp, lambda observations, agent=agent, count=len(
                seeds): act(agent, observations, count, deterministic=False))
            rows = np.isin(np.repeat(np.arange(len(seeds)), rollouts_per_policy), wanted)
            pieces.append(TaskDataset(
                observations=batch.observations[rows], actions=batch.actions[rows],
                rewards=batch.rewards[rows], next_observations=batch.next_observations[rows],
                terminations=batch.terminations[rows], truncations=batch.truncations[rows],
                lengths=batch.lengths[rows],
                training_steps=np.full(int(rows.sum()), agent.num_updates, dtype=np.int64),
                task=np.asarray(task, dtype=np.float64), meta={},
                sparse_rewards=None if batch.sparse_rewards is None
                else batch.sparse_rewards[rows]))
            replayed_seeds += [seeds[member] for member in wanted]
        merged = pieces[0]
        for piece in pieces[1:]:
            merged = merged.concatenate(piece)
        results.append(replace(merged, meta={**meta, "seed": int(target_seed),
                                             "replayed_seeds": sorted(replayed_seeds)}))
    return results
