"""Decoders of the VariBAD belief model: reward, state and task.

The reward decoder predicts r_j of a transition j = (s_j, a_j, r_j, s_{j+1}) from a latent z and a
configurable choice of inputs among s_{j+1} (``next_state``), a_j (``action``) and s_j
(``state``); the state embedding is shared between s_{j+1} and s_j. Types:

- ``deterministic``: a real prediction r-hat, loss (r-hat - r)^2;
- ``bernoulli``: a logit of p(r = 1), loss BCE(logit, 1[r = 1]);
- ``multihead_bernoulli`` (gridworld): z alone gives one logit per cell; the head of the cell of
  s_{j+1} is the logit of p(r = 1), loss BCE(logit, 1[r = 1]).

All-pairs decoding (every latent z_t decodes every transition j, O(T^2) pairs) is computed
without materialising the concatenated inputs: the first layer is linear, so
W [z_t, x_j] + b = W_z z_t + (W_x x_j + b), and the two parts are broadcast-added as
(B, T+1, 1, h) + (B, 1, T, h). Spec: borel.md section 4.4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.encoder import Embedding

REWARD_DECODER_TYPES = ("deterministic", "bernoulli", "multihead_bernoulli")
REWARD_DECODER_INPUTS = ("next_state", "action", "state")


class PairwiseMLP(nn.Module):
    """An MLP on [z, x] evaluated for all pairs (z_t, x_j) by broadcasting its first layer.

    ``forward(latents (..., P, L), features (..., Q, F))`` -> (..., P, Q, output_dim) with
    outputs[..., p, q] = MLP([latents[..., p], features[..., q]]). ``features`` may be None.
    """

    def __init__(self, latent_dim: int, feature_dim: int, hidden_sizes: Sequence[int],
                 output_dim: int) -> None:
        super().__init__()
        if not hidden_sizes:
            raise ValueError("the decoder needs at least one hidden layer")
        first = hidden_sizes[0]
        self.latent_layer = nn.Linear(latent_dim, first)
        self.feature_layer = nn.Linear(feature_dim, first, bias=False) if feature_dim else None
        layers: list[nn.Module] = []
        width = first
        for size in hidden_sizes[1:]:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, output_dim))
        self.rest = nn.Sequential(*layers)

    def first_layer(self, latents: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        hidden = self.latent_layer(latents).unsqueeze(-2)
        if self.feature_layer is None or features is None:
            return torch.relu(hidden)
        hidden = hidden + self.feature_layer(features).unsqueeze(-3)
        return hidden.relu_()  # in place: the all-pairs tensor is the largest one of the loss

    def forward(self, latents: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        return self.rest(self.first_layer(latents, features))

    def aligned(self, latents: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """The MLP on matching pairs: latents (..., L), features (..., F) -> (..., output_dim)."""
        hidden = self.latent_layer(latents)
        if self.feature_layer is not None and features is not None:
            hidden = hidden + self.feature_layer(features)
        return self.rest(torch.relu(hidden))


def rewards_length(transitions: torch.Tensor) -> int:
    """T of a (B, T, dim) batch of transitions."""
    return transitions.shape[-2]


class RewardDecoder(nn.Module):
    """p(r_j | z, inputs_j) for every latent and transition; see the module docstring."""

    def __init__(
        self,
        latent_dim: int,
        observation_dim: int,
        action_dim: int,
        decoder_type: str,
        inputs: Sequence[str],
        hidden_sizes: Sequence[int],
        state_embedding_size: int,
        action_embedding_size: int,
        num_states: int | None = None,
    ) -> None:
        super().__init__()
        if decoder_type not in REWARD_DECODER_TYPES:
            raise ValueError(f"reward decoder must be one of {REWARD_DECODER_TYPES}")
        unknown = set(inputs) - set(REWARD_DECODER_INPUTS)
        if unknown:
            raise ValueError(f"unknown reward decoder inputs {sorted(unknown)}; "
                             f"choose from {REWARD_DECODER_INPUTS}")
        self.decoder_type = decoder_type
        self.inputs = tuple(inputs)
        if decoder_type == "multihead_bernoulli":
            if num_states is None:
                raise ValueError("a multi-head decoder needs the number of cells")
            self.inputs = ()
        uses_state = any(name in self.inputs for name in ("next_state", "state"))
        self.state_embedding = Embedding(observation_dim, state_embedding_size if uses_state
                                         else 0)
        self.action_embedding = Embedding(action_dim, action_embedding_size
                                          if "action" in self.inputs else 0)
        feature_dim = (state_embedding_size * sum(name in self.inputs for name in
                                                  ("next_state", "state"))
                       + self.action_embedding.width)
        output_dim = num_states if decoder_type == "multihead_bernoulli" else 1
        self.network = PairwiseMLP(latent_dim, feature_dim, hidden_sizes, output_dim)

    @property
    def is_bernoulli(self) -> bool:
        return self.decoder_type != "deterministic"

    def features(self, observations: torch.Tensor, actions: torch.Tensor,
                 next_observations: torch.Tensor) -> torch.Tensor | None:
        """Embedded inputs of each transition (..., F), or None for a decoder on z alone."""
        parts = []
        for name in self.inputs:
            if name == "next_state":
                parts.append(self.state_embedding(next_observations))
            elif name == "state":
                parts.append(self.state_embedding(observations))
            else:
                parts.append(self.action_embedding(actions))
        return torch.cat(parts, dim=-1) if parts else None

    def all_pairs(self, latents: torch.Tensor, observations: torch.Tensor, actions: torch.Tensor,
                  next_observations: torch.Tensor, cells: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """Predictions for every (latent t, transition j): latents (B, P, L), transitions
        (B, T, .) -> (B, P, T): r-hat, or the logit of p(r = 1). ``cells`` (B, T) are the cell
        indices of s_{j+1} for the multi-head decoder."""
        if self.decoder_type == "multihead_bernoulli":
            logits = self.network.aligned(latents, None)  # (B, P, cells)
            index = cells[:, None, :].expand(-1, latents.shape[1], -1)
            return torch.gather(logits, 2, index)
        features = self.features(observations, actions, next_observations)
        if features is None:  # a decoder on z alone: the same prediction for every transition
            predictions = self.network.aligned(latents, None)[..., 0]
            return predictions[..., None].expand(*predictions.shape, rewards_length(
                next_observations))
        return self.network(latents, features)[..., 0]

    def aligned(self, latents: torch.Tensor, observations: torch.Tensor, actions: torch.Tensor,
                next_observations: torch.Tensor, cells: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Predictions for matching latents and transitions (..., L), (..., .) -> (...)."""
        if self.decoder_type == "multihead_bernoulli":
            logits = self.network.aligned(latents, None)
            index = cells.expand(logits.shape[:-1])[..., None]
            return torch.gather(logits, -1, index)[..., 0]
        features = self.features(observations, actions, next_observations)
        return self.network.aligned(latents, features)[..., 0]

    def cell_probabilities(self, latents: torch.Tensor) -> torch.Tensor:
        """Multi-head decoder: p(r = 1 | z) for every cell (..., num_states)."""
        return torch.sigmoid(self.network.aligned(latents, None))

    def mean_reward(self, predictions: torch.Tensor) -> torch.Tensor:
        """The expected reward of a prediction: r-hat, or p(r = 1) for Bernoulli decoders."""
        return torch.sigmoid(predictions) if self.is_bernoulli else predictions


class StateDecoder(nn.Module):
    """s-hat_{j+1} = MLP([z, relu(W_s s_j), relu(W_a a_j)]), trained with squared error."""

    def __init__(self, latent_dim: int, observation_dim: int, action_dim: int,
                 hidden_sizes: Sequence[int], state_embedding_size: int,
                 action_embedding_size: int) -> None:
        super().__init__()
        self.state_embedding = Embedding(observation_dim, state_embedding_size)
        self.action_embedding = Embedding(action_dim, action_embedding_size)
        feature_dim = self.state_embedding.width + self.action_embedding.width
        self.network = PairwiseMLP(latent_dim, feature_dim, hidden_sizes, observation_dim)

    def features(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor | None:
        parts = [part for part in (self.state_embedding(observations),
                                   self.action_embedding(actions)) if part is not None]
        return torch.cat(parts, dim=-1) if parts else None

    def all_pairs(self, latents: torch.Tensor, observations: torch.Tensor, actions: torch.Tensor
                  ) -> torch.Tensor:
        """Predicted next observations (B, P, T, obs_dim) for every (latent, transition)."""
        return self.network(latents, self.features(observations, actions))

    def aligned(self, latents: torch.Tensor, observations: torch.Tensor, actions: torch.Tensor
                ) -> torch.Tensor:
        return self.network.aligned(latents, self.features(observations, actions))


class TaskDecoder(nn.Module):
    """task-hat = MLP(z), trained with squared error against the task vector (optional)."""

    def __init__(self, latent_dim: int, task_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.network = PairwiseMLP(latent_dim, 0, hidden_sizes, task_dim)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.network.aligned(latents, None)
