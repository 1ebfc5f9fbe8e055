"""Tanh-squashed Gaussian policies (SAC) for K stacked agents.

The trunk feeds one linear layer giving the mean and the log standard deviation (initialised
uniform +-1e-3), with log std clamped to [-20, 2]. Actions a = tanh(u), u ~ N(mean, std^2), drawn
by reparameterisation; log pi(a|s) = sum_i [log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2)],
with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) computed stably. The deterministic action
is tanh(mean). Spec: borel.md section 1.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from models.ensemble import EnsembleLinear, EnsembleMLP

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
HEAD_INIT = 1e-3


class TanhGaussianPolicy(nn.Module):
    """K policies: observations (K, ..., obs_dim) -> actions (K, ..., action_dim) in [-1, 1]."""

    def __init__(
        self, num_members: int, observation_dim: int, action_dim: int,
        hidden_sizes: Sequence[int],
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.trunk = EnsembleMLP(num_members, observation_dim, hidden_sizes, None)
        # The mean and log-std heads as one layer: outputs [mean, log std].
        self.heads = EnsembleLinear(num_members, self.trunk.output_dim, 2 * action_dim)
        self.heads.init_uniform(HEAD_INIT)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clamped log std of the pre-tanh Gaussian, each (K, ..., action_dim)."""
        mean, log_std = self.heads(self.trunk(observations)).split(self.action_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, observations: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions (K, ..., action_dim) and their log-probabilities (K, ..., 1)."""
        mean, log_std = self(observations)
        if deterministic:
            return torch.tanh(mean), tanh_gaussian_log_prob(mean, mean, log_std)
        noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, log_std, noise)


def tanh_gaussian_log_prob(
    pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)^2), summed over the action dimension.

    ``noise``, when u was drawn as mean + exp(log_std) noise, is (u - mean) / exp(log_std): given,
    it saves recomputing it (the value and its gradients are the same).
    """
    if noise is None:
        noise = (pre_tanh - mean) / log_std.exp()
    gaussian = -0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)
    squash = 2.0 * (math.log(2.0) - pre_tanh - functional.softplus(-2.0 * pre_tanh))
    return (gaussian - squash).sum(dim=-1, keepdim=True)
