"""Pieces of online off-policy VariBAD (spec borel.md 6): task sampling, the per-task buffers, and
the hyper-state transitions the agent trains on.

Every training task has a VAE buffer of whole meta-episodes (the VAE's loss decodes every
transition of a trajectory from every belief along it) and a policy buffer of hyper-state
transitions ([s_t, b_t], a_t, r_t, [s'_t, b_{t+1}], d_t), with b_t = (mu_t, log sigma_t^2) the
belief held before step t. The reward the agent trains on is one of

- ``reward``: the environment's reward r_t;
- ``belief``: the belief reward R+_t = E_{z ~ b_t}[r-hat(z, s_t, a_t, s'_t)] of the current VAE;
- ``oracle``: the environment's exact belief reward (the gridworld's, spec 2.2).

As in the paper, hyper-states keep the beliefs of collection time; with ``recompute`` the
trajectories behind the policy buffer are kept too and the whole buffer is rebuilt from them with
the current VAE (:meth:`OnlineBuffers.rebuild_policy`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from algorithms.state_relabelling import (
    encoder_beliefs,
    hyperstates_from_beliefs,
    sampled_belief_rewards,
)
from environments.base import BatchedTaskEnv
from models.vae import VAE
from utils.replay import (
    FIELDS,
    EnsembleReplayBuffer,
    TrajectoryBuffer,
    inner_episode_successors,
)
from utils.rollouts import MetaEpisodeBatch
from utils.seeding import evaluation_seeds

RewardSource = Literal["reward", "belief", "oracle"]
CellIndex = Callable[[np.ndarray], np.ndarray]
RECOMPUTE_CHUNK = 256
TRAJECTORY_FIELDS = (*FIELDS, "truncations", "successes")


def task_split(env: BatchedTaskEnv, num_train: int, num_eval: int, seed: int
               ) -> tuple[list[int], np.ndarray, list[int], np.ndarray]:
    """Training seeds 0 .. num_train - 1 and their tasks; held-out seeds drawn with the run's
    ``seed`` (:func:`evaluation_seeds`) whose tasks differ from every training task and from
    each other, and their tasks."""
    train_seeds = list(range(num_train))
    train_tasks = np.stack([env.task_from_seed(task_seed) for task_seed in train_seeds])
    eval_seeds = evaluation_seeds(train_seeds, num_eval, seed, env.task_from_seed, train_tasks)
    eval_tasks = np.stack([env.task_from_seed(task_seed) for task_seed in eval_seeds])
    return train_seeds, train_tasks, eval_seeds, eval_tasks


def reward_source(belief_rewards: bool, oracle: bool, switch_iteration: int | None,
                  iteration: int) -> RewardSource:
    """Which reward the agent trains on for data collected in ``iteration``."""
    if not belief_rewards or iteration < (switch_iteration or 0):
        return "reward"
    return "oracle" if oracle else "belief"


def policy_transitions(vae: VAE, arrays: dict[str, np.ndarray], lengths: np.ndarray,
                       beliefs: torch.Tensor, source: RewardSource, num_samples: int,
                       generator: torch.Generator, cell_index: CellIndex | None,
                       goal_is_terminal: bool) -> dict[str, np.ndarray]:
    """Hyper-state transitions (N, T, .) of trajectories ``arrays`` (the step arrays of
    :data:`TRAJECTORY_FIELDS`, and oracle_rewards for the oracle) of ``lengths`` (N,) with
    beliefs b_0..b_T (N, T + 1, 2L).

    The successor of an inner episode's last step is the BAMDP's next decision state, the next
    episode's start [s_{t+1}, b_{t+1}] (the last step of the meta-episode keeps its final state).
    The TD terminal is the stored termination, without goal-reached steps unless
    ``goal_is_terminal``. Padding steps are not read by the buffer."""
    device = beliefs.device
    tensors = {name: torch.as_tensor(arrays[name], device=device)
               for name in ("observations", "actions", "next_observations")}
    hyper_observations, hyper_next_observations = (tensor.cpu().numpy() for tensor in (
        hyperstates_from_beliefs(tensors["observations"], tensors["next_observations"],
                                 beliefs)))
    hyper_next_observations = inner_episode_successors(
        hyper_observations, hyper_next_observations, arrays["truncations"], lengths)
    terminations = arrays["terminations"]
    if not goal_is_terminal:
        terminations = terminations * (1.0 - arrays["successes"])
    if source == "belief":
        cells = (None if cell_index is None else
                 torch.as_tensor(cell_index(arrays["next_observations"]), device=device))
        rewards = sampled_belief_rewards(
            vae, beliefs, tensors["observations"], tensors["actions"],
            tensors["next_observations"], cells, num_samples, generator).cpu().numpy()
    elif source == "oracle":
        rewards = arrays["oracle_rewards"]
    else:
        rewards = arrays["rewards"]
    return {"observations": hyper_observations, "actions": arrays["actions"],
            "rewards": rewards, "next_observations": hyper_next_observations,
            "terminations": terminations}


def trajectory_arrays(rollout: MetaEpisodeBatch, oracle: bool) -> dict[str, np.ndarray]:
    """The step arrays a buffer keeps of a rollout (with the env's belief reward for the
    oracle)."""
    arrays = {name: getattr(rollout, name) for name in TRAJECTORY_FIELDS}
    if oracle:
        arrays["oracle_rewards"] = rollout.belief_rewards
    return arrays


class OnlineBuffers:
    """The VAE and policy buffers of every training task (see the module docstring).

    Capacities: ``policy_capacity`` transitions and ``vae_capacity`` transitions (as whole
    meta-episodes of ``trajectory_len`` steps) per task; storage grows as data arrives.
    """

    def __init__(self, num_tasks: int, trajectory_len: int, observation_dim: int,
                 action_dim: int, latent_dim: int, policy_capacity: int, vae_capacity: int,
                 device: torch.device, oracle: bool, keep_policy_trajectories: bool) -> None:
        self.oracle, self.trajectory_len = oracle, trajectory_len
        raw_dims = {"observations": observation_dim, "actions": action_dim, "rewards": 1,
                    "next_observations": observation_dim, "terminations": 1,
                    "truncations": 1, "successes": 1}
        if oracle:
            raw_dims["oracle_rewards"] = 1
        self.vae = TrajectoryBuffer(num_tasks, max(1, vae_capacity // trajectory_len),
                                    trajectory_len, raw_dims)
        hyper_dim = observation_dim + 2 * latent_dim
        self.policy = EnsembleReplayBuffer(
            num_tasks, policy_capacity, {"observations": hyper_dim, "actions": action_dim,
                                         "rewards": 1, "next_observations": hyper_dim,
                                         "terminations": 1},
            device, initial_capacity=min(policy_capacity, 16 * trajectory_len))
        self.policy_trajectories = (
            TrajectoryBuffer(num_tasks, max(1, policy_capacity // trajectory_len),
                             trajectory_len, raw_dims) if keep_policy_trajectories else None)

    def add(self, rollout: MetaEpisodeBatch, transitions: dict[str, np.ndarray],
            task_of_row: np.ndarray) -> None:
        """Store a rollout's trajectories (row i in task ``task_of_row[i]``) in the VAE buffer
        (and the kept trajectories) and their hyper-state ``transitions`` in the policy
        buffer."""
        arrays = trajectory_arrays(rollout, self.oracle)
        self.vae.add(arrays, rollout.lengths, task_of_row)
        if self.policy_trajectories is not None:
            self.policy_trajectories.add(arrays, rollout.lengths, task_of_row)
        self.policy.add_trajectories(transitions, rollout.lengths, task_of_row)

    def vae_batch(self, tasks: np.ndarray, per_task: int, generator: torch.Generator,
                  task_vectors: np.ndarray, cell_index: CellIndex | None,
                  device: torch.device) -> dict[str, torch.Tensor]:
        """``per_task`` uniformly drawn meta-episodes of each of ``tasks`` as one VAE batch
        (B, T, .) with ``lengths``, ``tasks`` and, for the gridworld, ``cells``."""
        rows = np.repeat(tasks, per_task)
        arrays = self.vae.gather(rows, self.vae.sample_indices(tasks, per_task, generator))
        batch = {name: torch.as_tensor(arrays[name], device=device)
                 for name in ("observations", "actions", "rewards", "next_observations",
                              "terminations")}
        batch["lengths"] = torch.as_tensor(arrays["lengths"], device=device)
        batch["tasks"] = torch.as_tensor(task_vectors[rows], dtype=torch.float32, device=device)
        if cell_index is not None:
            batch["cells"] = torch.as_tensor(cell_index(arrays["next_observations"]),
                                             dtype=torch.long, device=device)
        return batch

    @torch.no_grad()
    def rebuild_policy(self, vae: VAE, source: RewardSource, num_samples: int,
                       generator: torch.Generator, cell_index: CellIndex | None,
                       goal_is_terminal: bool, device: torch.device) -> None:
        """Refill the policy buffer from the kept trajectories (oldest first) with beliefs of
        the current encoder and rewards of ``source``."""
        if self.policy_trajectories is None:
            raise RuntimeError("the buffers were built without keeping policy trajectories")
        self.policy.clear()
        store = self.policy_trajectories
        for task in range(store.num_tasks):
            slots = store.ordered_slots(task)
            for start in range(0, len(slots), RECOMPUTE_CHUNK):
                chosen = slots[start : start + RECOMPUTE_CHUNK]
                arrays = store.gather(np.full(len(chosen), task), chosen)
                beliefs = encoder_beliefs(vae, *(torch.as_tensor(arrays[name], device=device)
                                                 for name in ("actions", "rewards",
                                                              "next_observations")))
                transitions = policy_transitions(vae, arrays, arrays["lengths"], beliefs,
                                                 source, num_samples, generator, cell_index,
                                                 goal_is_terminal)
                self.policy.add_trajectories(transitions, arrays["lengths"],
                                             np.full(len(chosen), task))

    def state_dict(self) -> dict[str, Any]:
        state = {"vae": self.vae.state_dict(), "policy": self.policy.state_dict()}
        if self.policy_trajectories is not None:
            state["policy_trajectories"] = self.policy_trajectories.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vae.load_state_dict(state["vae"])
        self.policy.load_state_dict(state["policy"])
        if self.policy_trajectories is not None:
            self.policy_trajectories.load_state_dict(state["policy_trajectories"])
