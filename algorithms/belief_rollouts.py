"""Acting on hyper-states with an online belief: the encoder's GRU is updated after every step.

:class:`OnlineBelief` keeps the GRU state of K copies; ``augment`` appends the current belief
(mu, log sigma^2) to observations, and ``update`` feeds the transition (a, r, s') just made. The
belief starts from the prior at the start of every meta-episode and is never reset inside it
(spec borel.md 5.5). Copies whose meta-episode has ended keep their last belief.
:func:`evaluate_with_online_belief` is the evaluation protocol of the offline (stage 3) agent.
"""

from __future__ import annotations

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
    """Beliefs of K copies, updated transition by transition."""

    def __init__(self, encoder: RNNEncoder, num_envs: int, device: torch.device) -> None:
        self.encoder, self.num_envs, self.device = encoder, num_envs, device
        self.reset()

    def reset(self) -> None:
        """Back to the prior for every copy; the recorded history starts with it."""
        with torch.no_grad():
            self.hidden, mean, log_variance = self.encoder.prior(self.num_envs, self.device)
        self.belief = torch.cat([mean, log_variance], dim=-1)
        self.history = [self.belief.cpu().numpy()]

    def augment(self, observations: np.ndarray) -> np.ndarray:
        """Hyper-observations [s, mu, log sigma^2] (K, obs_dim + 2L)."""
        return np.concatenate([observations, self.belief.cpu().numpy()], axis=-1)

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


def evaluate_with_online_belief(agent: Agent, belief: OnlineBelief, bamdp: BatchedBAMDP,
                                task_seeds: list[int], on_step: StepObserver | None = None
                                ) -> MetaEpisodeBatch:
    """BOReL's evaluation (spec borel.md 5.5): one meta-episode in each copy of ``bamdp`` (tasks
    set, copy c in the task of seed ``task_seeds[c]``, its env stream seeded with that seed +
    ``EVALUATION_SEED_OFFSET``) with the deterministic policy on [s, mu, log sigma^2], the belief
    starting from the prior and updated after every step. ``belief.beliefs()`` then holds the
    beliefs along the rollout."""
    belief.reset()
    bamdp.seed([seed + EVALUATION_SEED_OFFSET for seed in task_seeds])

    def observe(stored_actions: np.ndarray, result: BAMDPStep) -> None:
        belief.update(stored_actions, result)
        if on_step is not None:
            on_step(stored_actions, result)

    return collect_meta_episodes(bamdp, lambda observations: act(
        agent, belief.augment(observations), 1, deterministic=True), observe)


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
