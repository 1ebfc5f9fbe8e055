"""The task-conditioned actor-critic networks of FOCAL (spec focal.md 3.2).

Every network takes the task embedding z as an extra input, concatenated after the state (and the
action): the policy pi(a | s, z), the twin critics Q_1, Q_2(s, a, z), the state value V(s, z) and
the BRAC dual critic c(s, a, z). Inputs carry any leading shape, typically (T, B) for T tasks of B
transitions each, and z is given with the same leading shape (the caller broadcasts (T, L) to
(T, B, L)), so a whole meta-batch goes through each network in one pass.

For Discrete action spaces the policy and the behaviour-cloning model output logits over the A
actions (:class:`TaskConditionedLogits`) and the twin critics output Q(s, ., z) for every action
at once (:class:`TwinQHeads`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.ensemble import EnsembleMLP
from models.mlp import MLP
from models.policies import TanhGaussianPolicy, tanh_gaussian_log_prob


class TaskConditionedPolicy(nn.Module):
    """Tanh-Gaussian pi(a | s, z): states (..., o) and z (..., L) -> actions (..., A) in [-1, 1].

    A one-member :class:`TanhGaussianPolicy` over the input [s, z] (log std clamped to [-20, 2]).
    """

    def __init__(self, observation_dim: int, latent_size: int, action_dim: int,
                 hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.network = TanhGaussianPolicy(1, observation_dim + latent_size, action_dim,
                                          hidden_sizes)

    def forward(self, observations: torch.Tensor, latents: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log std of the pre-tanh Gaussian, each (..., A)."""
        inputs = torch.cat([observations, latents], dim=-1).unsqueeze(0)
        mean, log_std = self.network(inputs)
        return mean.squeeze(0), log_std.squeeze(0)

    def sample(self, observations: torch.Tensor, latents: torch.Tensor,
               deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions (..., A), reparameterised (tanh(mean) if deterministic), and log pi (..., 1)."""
        mean, log_std = self(observations, latents)
        if deterministic:
            return torch.tanh(mean), tanh_gaussian_log_prob(mean, mean, log_std)
        noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, log_std, noise)


class TwinQNetwork(nn.Module):
    """Q_1 and Q_2 evaluated together: (..., o), (..., A), (..., L) -> (2, ..., 1)."""

    def __init__(self, observation_dim: int, action_dim: int, latent_size: int,
                 hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.network = EnsembleMLP(2, observation_dim + action_dim + latent_size, hidden_sizes, 1)

    def forward(self, observations: torch.Tensor, actions: torch.Tensor, latents: torch.Tensor
                ) -> torch.Tensor:
        inputs = torch.cat([observations, actions, latents], dim=-1)
        return self.network(inputs.unsqueeze(0).expand(2, *inputs.shape))


class StateValueNetwork(nn.Module):
    """V(s, z): (..., o), (..., L) -> (..., 1)."""

    def __init__(self, observation_dim: int, latent_size: int, hidden_sizes: Sequence[int]
                 ) -> None:
        super().__init__()
        self.network = MLP(observation_dim + latent_size, hidden_sizes, 1)

    def forward(self, observations: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return self.network(torch.cat([observations, latents], dim=-1))


class DualCritic(nn.Module):
    """The BRAC dual critic c(s, a, z), a logit: (..., o), (..., A), (..., L) -> (..., 1)."""

    def __init__(self, observation_dim: int, action_dim: int, latent_size: int,
                 hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.network = MLP(observation_dim + action_dim + latent_size, hidden_sizes, 1)

    def forward(self, observations: torch.Tensor, actions: torch.Tensor, latents: torch.Tensor
                ) -> torch.Tensor:
        return self.network(torch.cat([observations, actions, latents], dim=-1))


class TaskConditionedLogits(nn.Module):
    """Logits over A discrete actions from [s, z]: (..., o), (..., L) -> (..., A).

    FOCAL's categorical policy pi(. | s, z) and its behaviour-cloning model beta(. | s, z) for
    Discrete action spaces both have this form.
    """

    def __init__(self, observation_dim: int, latent_size: int, num_actions: int,
                 hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.network = MLP(observation_dim + latent_size, hidden_sizes, num_actions)

    def forward(self, observations: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return self.network(torch.cat([observations, latents], dim=-1))


class TwinQHeads(nn.Module):
    """Q_1, Q_2 (s, ., z) over all A discrete actions at once: (..., o), (..., L) -> (2, ..., A)."""

    def __init__(self, observation_dim: int, latent_size: int, num_actions: int,
                 hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.network = EnsembleMLP(2, observation_dim + latent_size, hidden_sizes, num_actions)

    def forward(self, observations: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([observations, latents], dim=-1)
        return self.network(inputs.unsqueeze(0).expand(2, *inputs.shape))
