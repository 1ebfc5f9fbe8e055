"""The VariBAD recurrent encoder: a GRU over (a_t, r_t, s_{t+1}) giving a Gaussian belief q(z).

Per step, each input has its own embedding (linear + ReLU; a size of 0 drops that input, as the
gridworld drops the action), the embeddings are concatenated and fed to a one-layer GRU, and two
linear heads give the posterior mean mu and log-variance log sigma^2. The prior is the heads'
output at the zero hidden state (no learned prior network). Spec: borel.md section 4.4.

Shapes are batch-first: a trajectory batch is (B, T, dim); ``forward`` returns T + 1 beliefs
(B, T + 1, latent_dim), the prior first.
"""

from __future__ import annotations

import torch
from torch import nn


class Embedding(nn.Module):
    """``relu(W x + b)``, or nothing (width 0)."""

    def __init__(self, input_dim: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.linear = nn.Linear(input_dim, width) if width > 0 else None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor | None:
        return None if self.linear is None else torch.relu(self.linear(inputs))


class RNNEncoder(nn.Module):
    """q(z | a_{<t}, r_{<t}, s_{<=t}) as a GRU; beliefs (mu, log sigma^2) of size latent_dim."""

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        latent_dim: int,
        hidden_size: int,
        action_embedding_size: int,
        state_embedding_size: int,
        reward_embedding_size: int,
    ) -> None:
        super().__init__()
        self.latent_dim, self.hidden_size = latent_dim, hidden_size
        self.action_embedding = Embedding(action_dim, action_embedding_size)
        self.state_embedding = Embedding(observation_dim, state_embedding_size)
        self.reward_embedding = Embedding(1, reward_embedding_size)
        input_size = action_embedding_size + state_embedding_size + reward_embedding_size
        if input_size == 0:
            raise ValueError("the encoder needs at least one non-zero embedding")
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        for name, parameter in self.gru.named_parameters():
            if "weight" in name:
                nn.init.orthogonal_(parameter)
            else:
                nn.init.zeros_(parameter)
        self.mean_head = nn.Linear(hidden_size, latent_dim)
        self.log_variance_head = nn.Linear(hidden_size, latent_dim)

    def embed(self, actions: torch.Tensor, rewards: torch.Tensor, next_observations: torch.Tensor
              ) -> torch.Tensor:
        """GRU inputs (..., input_size) from actions, rewards (..., 1) and next observations."""
        parts = [
            self.action_embedding(actions),
            self.state_embedding(next_observations),
            self.reward_embedding(rewards),
        ]
        return torch.cat([part for part in parts if part is not None], dim=-1)

    def heads(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean_head(hidden), self.log_variance_head(hidden)

    def prior(self, batch_size: int, device: torch.device | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The zero hidden state (B, H) and its belief (B, L), (B, L)."""
        hidden = torch.zeros(batch_size, self.hidden_size, device=device)
        mean, log_variance = self.heads(hidden)
        return hidden, mean, log_variance

    def forward(
        self, actions: torch.Tensor, rewards: torch.Tensor, next_observations: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Beliefs along trajectories (B, T, .): means and log-variances (B, T + 1, L), index 0
        the prior, index t + 1 after seeing transition t. The GRU is never reset."""
        batch_size = actions.shape[0]
        outputs, _ = self.gru(self.embed(actions, rewards, next_observations))
        zero = torch.zeros(batch_size, 1, self.hidden_size, device=outputs.device,
                           dtype=outputs.dtype)
        hidden = torch.cat([zero, outputs], dim=1)
        return self.heads(hidden)

    def step(
        self, hidden: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
        next_observation: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One online belief update: hidden (B, H) and a transition (B, .) -> new hidden and
        belief (B, L), (B, L)."""
        inputs = self.embed(action, reward, next_observation)[:, None]
        _, new_hidden = self.gru(inputs, hidden[None].contiguous())
        new_hidden = new_hidden[0]
        mean, log_variance = self.heads(new_hidden)
        return new_hidden, mean, log_variance
