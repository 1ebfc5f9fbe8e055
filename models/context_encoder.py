"""FOCAL's deterministic, permutation-invariant context encoder q_phi.

Each context transition x_n = [s, a, r] (or [s, a, r, s']) is embedded on its own by an MLP with a
tanh output, so every embedding lies in the bounded box [-1, 1]^L, and the task embedding is the
mean over the context:

    z = (1 / N) sum_n tanh(f_phi(x_n)),        context (T, N, D) -> z (T, L)

There is no information bottleneck and no product of Gaussians (spec focal.md 3.1-3.3). A boolean
mask (T, N) restricts the mean to the valid transitions; a row without any valid transition gets
z = 0, the centre of the embedding box, which is the prior used before any context exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.mlp import MLP


class ContextEncoder(nn.Module):
    """Transitions (T, N, transition_dim) -> task embeddings (T, latent_size) in [-1, 1]^L."""

    def __init__(self, transition_dim: int, hidden_sizes: Sequence[int], latent_size: int) -> None:
        super().__init__()
        self.transition_dim, self.latent_size = transition_dim, latent_size
        self.network = MLP(transition_dim, hidden_sizes, latent_size)

    def embed_transitions(self, context: torch.Tensor) -> torch.Tensor:
        """Per-transition embeddings tanh(f_phi(x)): (..., N, D) -> (..., N, L)."""
        return torch.tanh(self.network(context))

    def forward(self, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean embedding over the N transitions of each row: (T, N, D) -> (T, L).

        ``mask`` (T, N) bool keeps only the valid transitions; rows with none give z = 0.
        """
        embeddings = self.embed_transitions(context)
        if mask is None:
            return embeddings.mean(dim=-2)
        weights = mask.to(embeddings.dtype).unsqueeze(-1)
        return (embeddings * weights).sum(dim=-2) / weights.sum(dim=-2).clamp(min=1.0)
