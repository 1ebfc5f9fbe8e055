"""Acting on hyper-states with an online belief: the encoder's GRU is updated after every step.

:class:`OnlineBelief` keeps the GRU state of K copies; ``augment`` appends the current belief
(mu, log sigma^2) to observations, and ``update`` feeds the transition (a, r, s') just made. The
belief starts from the prior at the start of every meta-episode and is never reset inside it
(spec borel.md 5.5). Copies whose meta-episode has ended keep their last belief.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from environments.bamdp import BAMDPStep, BatchedBAMDP
from models.encoder import RNNEncoder
from models.vae import VAE
from utils.rollouts import MetaEpisodeBatch, collect_meta_episodes


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


def collect_with_belief(bamdp: BatchedBAMDP, belief: OnlineBelief,
                        policy: Callable[[np.ndarray], np.ndarray]
                        ) -> tuple[MetaEpisodeBatch, np.ndarray]:
    """One meta-episode in every copy of ``bamdp``; ``policy`` receives hyper-observations
    [s, mu, log sigma^2] (K, obs_dim + 2L), the belief starting from the prior and updated after
    every step. Returns the rollout and the beliefs b_0..b_T (K, T + 1, 2L) (b_t held before
    step t), padded with the last belief when every copy ended early."""
    belief.reset()
    rollout = collect_meta_episodes(
        bamdp, lambda observations: policy(belief.augment(observations)), belief.update)
    beliefs = belief.beliefs()
    missing = bamdp.trajectory_len + 1 - beliefs.shape[1]
    if missing > 0:
        beliefs = np.concatenate([beliefs, np.repeat(beliefs[:, -1:], missing, axis=1)], axis=1)
    return rollout, beliefs


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
