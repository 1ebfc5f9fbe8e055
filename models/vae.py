"""The VariBAD belief model: encoder, reward decoder, optional state and task decoders, and its
ELBO, vectorised over trajectories, latents and transitions.

For a batch of B trajectories of length T (valid steps j < n_b), the encoder gives beliefs
q_t = N(mu_t, sigma_t^2) for t = 0..T (q_0 the prior), and one sample z_t ~ q_t per latent. Every
valid latent (t <= n_b) decodes every valid transition j of its own trajectory, past and future:

    R_b  = sum_{t <= n_b} sum_{j < n_b} l_rew(z_t, j)
    S_b  = sum_{t <= n_b} sum_{j < n_b} ||s-hat_{j+1}(z_t, s_j, a_j) - s_{j+1}||^2  (state decoder)
    K_b  = sum_{t <= n_b} KL(q_t || q_{t-1}),   q_{-1} = N(0, I)   (or KL(q_t || N(0, I)))
    Tk_b = sum_{t <= n_b} ||task-hat(z_t) - task||^2                                 (task decoder)
    loss = mean_b (w_rew R_b + w_state S_b + w_kl K_b + w_task Tk_b)

with l_rew the squared error (deterministic decoder) or the binary cross-entropy against
1[r_j = 1] (Bernoulli decoders). The previous posterior in the KL is not detached. Spec: borel.md
sections 4.4-4.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from models.decoder import RewardDecoder, StateDecoder, TaskDecoder
from models.encoder import RNNEncoder

Batch = dict[str, torch.Tensor]


def gaussian_kl(mean: torch.Tensor, log_variance: torch.Tensor, prior_mean: torch.Tensor,
                prior_log_variance: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_variance)) || N(prior_mean, exp(prior_log_variance))) for diagonal
    Gaussians, summed over the last dimension."""
    return 0.5 * torch.sum(
        prior_log_variance - log_variance
        + (log_variance.exp() + (mean - prior_mean) ** 2) / prior_log_variance.exp()
        - 1.0,
        dim=-1,
    )


class VAE(nn.Module):
    """Encoder and decoders of the belief model (networks only; the trainer holds the optimiser)."""

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        latent_dim: int,
        gru_hidden_size: int,
        action_embedding_size: int,
        state_embedding_size: int,
        reward_embedding_size: int,
        reward_decoder: str,
        reward_decoder_inputs: Sequence[str],
        reward_decoder_hidden_sizes: Sequence[int],
        decode_state: bool = False,
        state_decoder_hidden_sizes: Sequence[int] = (32, 32),
        task_dim: int | None = None,
        task_decoder_hidden_sizes: Sequence[int] = (32, 32),
        num_states: int | None = None,
    ) -> None:
        super().__init__()
        self.observation_dim, self.action_dim, self.latent_dim = (observation_dim, action_dim,
                                                                  latent_dim)
        decoder_embedding = max(action_embedding_size, 1)
        self.encoder = RNNEncoder(observation_dim, action_dim, latent_dim, gru_hidden_size,
                                  action_embedding_size, state_embedding_size,
                                  reward_embedding_size)
        self.reward_decoder = RewardDecoder(
            latent_dim, observation_dim, action_dim, reward_decoder, reward_decoder_inputs,
            reward_decoder_hidden_sizes, state_embedding_size, decoder_embedding, num_states)
        self.state_decoder = (
            StateDecoder(latent_dim, observation_dim, action_dim, state_decoder_hidden_sizes,
                         state_embedding_size, decoder_embedding) if decode_state else None)
        self.task_decoder = (TaskDecoder(latent_dim, task_dim, task_decoder_hidden_sizes)
                             if task_dim else None)

    def loss_terms(
        self,
        batch: Batch,
        kl_to_gauss_prior: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-trajectory ELBO terms (B,) of the module docstring: ``reward``, ``state``,
        ``kl`` and ``task`` (zeros where a decoder is absent).

        ``batch``: observations, actions, rewards (B, T, 1), next_observations (B, T, .),
        lengths (B,) int; ``cells`` (B, T) for the multi-head decoder; ``tasks`` (B, task_dim)
        for the task decoder.
        """
        observations, actions = batch["observations"], batch["actions"]
        rewards, next_observations = batch["rewards"], batch["next_observations"]
        lengths = batch["lengths"]
        batch_size, horizon = rewards.shape[:2]
        means, log_variances = self.encoder(actions, rewards, next_observations)
        noise = torch.randn(means.shape, generator=generator, device=means.device)
        latents = means + (0.5 * log_variances).exp() * noise

        steps = torch.arange(horizon, device=rewards.device)
        valid_transitions = steps[None, :] < lengths[:, None]  # (B, T)
        valid_latents = torch.arange(horizon + 1, device=rewards.device)[None, :] <= lengths[:,
                                                                                            None]
        pair_mask = (valid_latents[:, :, None] & valid_transitions[:, None, :]).float()

        predictions = self.reward_decoder.all_pairs(latents, observations, actions,
                                                    next_observations, batch.get("cells"))
        targets = rewards[:, None, :, 0].expand_as(predictions)
        if self.reward_decoder.is_bernoulli:
            losses = functional.binary_cross_entropy_with_logits(
                predictions, (targets == 1.0).float(), reduction="none")
        else:
            losses = (predictions - targets) ** 2
        terms = {"reward": (losses * pair_mask).sum(dim=(1, 2))}

        if self.state_decoder is not None:
            predicted_states = self.state_decoder.all_pairs(latents, observations, actions)
            errors = ((predicted_states - next_observations[:, None]) ** 2).sum(dim=-1)
            terms["state"] = (errors * pair_mask).sum(dim=(1, 2))
        else:
            terms["state"] = torch.zeros(batch_size, device=rewards.device)

        if kl_to_gauss_prior:
            previous_means = torch.zeros_like(means)
            previous_log_variances = torch.zeros_like(log_variances)
        else:
            start = torch.zeros_like(means[:, :1])
            previous_means = torch.cat([start, means[:, :-1]], dim=1)
            previous_log_variances = torch.cat([start, log_variances[:, :-1]], dim=1)
        kl = gaussian_kl(means, log_variances, previous_means, previous_log_variances)
        terms["kl"] = (kl * valid_latents.float()).sum(dim=1)

        if self.task_decoder is not None and "tasks" in batch:
            task_errors = ((self.task_decoder(latents) - batch["tasks"][:, None]) ** 2).sum(-1)
            terms["task"] = (task_errors * valid_latents.float()).sum(dim=1)
        else:
            terms["task"] = torch.zeros(batch_size, device=rewards.device)
        return terms
