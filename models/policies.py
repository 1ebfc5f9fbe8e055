"""Tanh-squashed Gaussian policies (SAC) for K stacked agents.

The trunk feeds two linear heads, the mean and the log standard deviation (both initialised
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
        self.trunk = EnsembleMLP(num_members, observation_dim, hidden_sizes, None)
        self.mean_head = EnsembleLinear(num_members, self.trunk.output_dim, action_dim)
        self.log_std_head = EnsembleLinear(num_members, self.trunk.output_dim, action_dim)
        self.mean_head.init_uniform(HEAD_INIT)
        self.log_std_head.init_uniform(HEAD_INIT)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clamped log std of the pre-tanh Gaussian, each (K, ..., action_dim)."""
        features = self.trunk(observations)
        log_std = self.log_std_head(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mean_head(features), log_std

    def sample(
        self, observations: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions (K, ..., action_dim) and their log-probabilities (K, ..., 1)."""
        mean, log_std = self(observations)
        if deterministic:
            pre_tanh = mean
        else:
            pre_tanh = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, log_std)


def tanh_gaussian_log_prob(
    pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)^2), summed over the action dimension."""
    gaussian = -0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(
        2 * math.pi
    )
    squash = 2.0 * (math.log(2.0) - pre_tanh - functional.softplus(-2.0 * pre_tanh))
    return (gaussian - squash).sum(dim=-1, keepdim=True)
