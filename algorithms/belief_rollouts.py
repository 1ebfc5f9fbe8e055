"""Acting on hyper-states with an online belief: the encoder's GRU is updated after every step.

:class:`OnlineBelief` keeps the GRU state of K copies; ``augment`` appends the current belief
(mu, log sigma^2) to observations, and ``update`` feeds the transition (a, r, s') just made. The
belief starts from the prior at the start of every meta-episode and is never reset inside it
(spec borel.md 5.5). Copies whose meta-episode has ended keep their last belief.
:func:`evaluate_with_online_belief` is the evaluation protocol of stage 3 and online VariBAD.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from algorithms.agents import Agent, act
from environments.bamdp import BAMDPStep, BatchedBAMDP
from models.encoder import RNNEncoder
from models.vae import VAE
from utils.rollouts import MetaEpisodeBatch, StepObserver, collect_meta_episodes

EVALUATION_SEED_OFFSET = 1
"""The evaluation task of seed s is played in an env stream seeded with s + this offset."""


class OnlineBelief:
    """Beliefs of K copies, updated transition by transition. Each belief is copied to the host
    once, when it is made: the recorded history and the hyper-observations share that copy."""

    def __init__(self, encoder: RNNEncoder, num_envs: int, device: torch.device) -> None:
        self.encoder, self.num_envs, self.device = encoder, num_envs, device
        self.reset()

    def reset(self) -> None:
        """Back to the prior for every copy; the recorded history starts with it."""
        with torch.no_grad():
            self.hidden, mean, log_variance = self.encoder.prior(self.num_envs, self.device)
        self.belief = torch.cat([mean, log_variance], dim=-1)
        self.history = [self.belief.cpu().numpy()]  # the last entry is the current belief

    def augment(self, observations: np.ndarray) -> np.ndarray:
        """Hyper-observations [s, mu, log sigma^2] (K, obs_dim + 2L)."""
        return np.concatenate([observations, self.history[-1]], axis=-1)

    @torch.no_grad()
    def update(self, stored_actions: np.ndarray, result: BAMDPStep) -> None:
        """Feed (a, r, s') of the step just made to the GRU of every active copy."""
        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=torch.float32, device=self.device)

        hidden, mean, log_variance = self.encoder.step(
            self.hidden, tensor(stored_actions), tensor(result.rewards)[:, None],
            tensor(result.next_observations))
        active = torch.as_tensor(result.active, device=self.device)[:, None]
        self.hidden = torch.where(active, hidden, self.hidden)
        self.belief = torch.where(active, torch.cat([mean, log_variance], dim=-1), self.belief)
        self.history.append(self.belief.cpu().numpy())

    def beliefs(self) -> np.ndarray:
        """Every recorded belief (K, steps + 1, 2L), the prior first."""
        return np.stack(self.history, axis=1)


def collect_with_belief(bamdp: BatchedBAMDP, belief: OnlineBelief,
                        policy: Callable[[np.ndarray], np.ndarray],
                        on_step: StepObserver | None = None
                        ) -> tuple[MetaEpisodeBatch, np.ndarray]:
    """One meta-episode in every copy of ``bamdp``; ``policy`` receives hyper-observations
    [s, mu, log sigma^2] (K, obs_dim + 2L), the belief starting from the prior and updated after
    every step (then ``on_step`` sees the step). Returns the rollout and the beliefs b_0..b_T
    (K, T + 1, 2L) (b_t held before step t), padded with the last belief when every copy ended
    early."""
    belief.reset()

    def observe(stored_actions: np.ndarray, result: BAMDPStep) -> None:
        belief.update(stored_actions, result)
        if on_step is not None:
            on_step(stored_actions, result)

    rollout = collect_meta_episodes(
        bamdp, lambda observations: policy(belief.augment(observations)), observe)
    beliefs = belief.beliefs()
    missing = bamdp.trajectory_len + 1 - beliefs.shape[1]
    if missing > 0:
        beliefs = np.concatenate([beliefs, np.repeat(beliefs[:, -1:], missing, axis=1)], axis=1)
    return rollout, beliefs


def evaluate_with_online_belief(agent: Agent, belief: OnlineBelief, bamdp: BatchedBAMDP,
                                task_seeds: list[int], on_step: StepObserver | None = None
                                ) -> tuple[MetaEpisodeBatch, np.ndarray]:
    """BOReL's evaluation (spec borel.md 5.5), shared by stage 3, online VariBAD and
    ``sim_policy.py``: one meta-episode in each copy of ``bamdp`` (copy c in the task of seed
    ``task_seeds[c]``, its env stream seeded with that seed + ``EVALUATION_SEED_OFFSET``) with the
    deterministic policy on [s, mu, log sigma^2], the belief starting from the prior and updated
    after every step. Returns the rollout and the beliefs along it (:func:`collect_with_belief`)."""
    bamdp.seed([seed + EVALUATION_SEED_OFFSET for seed in task_seeds])
    return collect_with_belief(bamdp, belief, lambda hyper_observations: act(
        agent, hyper_observations, 1, deterministic=True), on_step)


@torch.no_grad()
def reward_map(vae: VAE, belief_mean: torch.Tensor, points: np.ndarray) -> np.ndarray:
    """Expected reward r-hat(z = belief mean, s' = point) at planar points (P, 2), the other
    observation entries and the action set to zero: the belief over where the reward is."""
    next_observations = np.zeros((len(points), vae.observation_dim), dtype=np.float32)
    next_observations[:, :2] = points
    inputs = torch.as_tensor(next_observations, device=belief_mean.device)
    zeros = torch.zeros(len(points), vae.action_dim, device=belief_mean.device)
    latents = belief_mean.expand(len(points), -1)
    predictions = vae.reward_decoder.aligned(latents, torch.zeros_like(inputs), zeros, inputs)
    return vae.reward_decoder.mean_reward(predictions).cpu().numpy()
