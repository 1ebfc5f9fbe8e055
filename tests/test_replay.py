"""Replay helpers: TD successors at inner resets and meta-batch task sampling."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from utils.replay import inner_episode_successors, sample_task_indices


def two_trajectories() -> SimpleNamespace:
    """Trajectory 0: two inner episodes of 3 steps (length 6). Trajectory 1: two episodes of 2
    steps (length 4), then 2 padding steps. Observation values encode (trajectory, step)."""
    observations = np.array([[[10 * row + step] for step in range(6)] for row in range(2)],
                            dtype=np.float32)
    next_observations = observations + 0.5  # the real successor state of every step
    truncations = np.zeros((2, 6, 1), dtype=np.float32)
    truncations[0, [2, 5]] = 1.0
    truncations[1, [1, 3]] = 1.0
    return SimpleNamespace(observations=observations, next_observations=next_observations,
                           truncations=truncations, lengths=np.array([6, 4]))


def test_an_inner_episode_end_bootstraps_from_the_next_start_and_the_meta_episode_end_does_not():
    data = two_trajectories()
    before = data.next_observations.copy()
    successors = inner_episode_successors(data.observations, data.next_observations,
                                          data.truncations, data.lengths)
    expected = before.copy()
    expected[0, 2] = data.observations[0, 3]  # end of the first episode -> second one's start
    expected[1, 1] = data.observations[1, 2]
    np.testing.assert_array_equal(successors, expected)  # 0/5 and 1/3 end the meta-episode
    np.testing.assert_array_equal(data.next_observations, before)  # the input is not changed


def test_meta_batch_tasks_are_drawn_without_replacement_when_there_are_enough():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        tasks = sample_task_indices(5, 5, generator)
        assert sorted(tasks.tolist()) == [0, 1, 2, 3, 4]
        assert len(set(sample_task_indices(5, 3, generator).tolist())) == 3
    many = torch.cat([sample_task_indices(3, 7, generator) for _ in range(20)])
    assert many.shape == (140,) and set(many.tolist()) == {0, 1, 2}  # more than there are
