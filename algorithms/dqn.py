"""DQN for K independent agents stacked along a leading member dimension.

Batches are dicts of tensors (K, B, dim); ``actions`` are one-hot (K, B, |A|) as datasets store
them, and the taken action is their argmax. For each member, with target network Q-bar:

    y = r + gamma (1 - d) max_a' Q-bar(s', a')
    L = mean_B (Q(s, a) - y)^2

The K losses are summed (each member's gradient equals a lone agent's); Adam; the target follows
Q by Polyak averaging with rate tau after every step (spec borel.md 3.2). With ``cql_alpha`` > 0
the loss gains CQL(H)'s conservative term

    cql_alpha * mean_B [log sum_a exp Q(s, a) - Q(s, a_data)].
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from algorithms.common import polyak_update, step
from models.ensemble import EnsembleMLP

Batch = dict[str, torch.Tensor]


class DQN:
    """K stacked DQN agents (K = 1: an ordinary agent)."""

    def __init__(
        self,
        num_members: int,
        observation_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int],
        lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        max_grad_norm: float | None = None,
        cql_alpha: float = 0.0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_members, self.num_actions = num_members, num_actions
        self.cql_alpha = cql_alpha
        self.gamma, self.tau, self.max_grad_norm = gamma, tau, max_grad_norm
        self.device = torch.device(device)
        self.q_network = EnsembleMLP(num_members, observation_dim, hidden_sizes, num_actions).to(
            self.device
        )
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=lr)
        self.num_updates = 0

    @torch.no_grad()
    def act(self, observations: torch.Tensor, epsilon: float = 0.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """Epsilon-greedy integer actions (K, N) for observations (K, N, obs_dim)."""
        greedy = self.q_network(observations).argmax(dim=-1)
        if epsilon <= 0.0:
            return greedy
        shape, device = greedy.shape, greedy.device
        explore = torch.rand(shape, generator=generator, device=device) < epsilon
        random_actions = torch.randint(self.num_actions, shape, generator=generator,
                                       device=device)
        return torch.where(explore, random_actions, greedy)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step of every member on its slice of ``batch``; returns the mean metrics
        as detached scalar tensors on the device (no host synchronisation)."""
        taken = batch["actions"].argmax(dim=-1, keepdim=True)
        all_q_values = self.q_network(batch["observations"])
        q_values = all_q_values.gather(-1, taken)
        with torch.no_grad():
            next_values = self.target_network(batch["next_observations"]).max(dim=-1,
                                                                              keepdim=True).values
            targets = batch["rewards"] + self.gamma * (1.0 - batch["terminations"]) * next_values
        loss = (q_values - targets).pow(2).mean(dim=(1, 2)).sum()
        metrics = {"q_loss": loss.detach() / self.num_members, "q_value": q_values.detach().mean()}
        if self.cql_alpha > 0:
            penalty = torch.logsumexp(all_q_values, dim=-1, keepdim=True) - q_values
            loss = loss + self.cql_alpha * penalty.mean(dim=(1, 2)).sum()
            metrics["cql_penalty"] = penalty.detach().mean()
        step(self.optimizer, loss, self.max_grad_norm)
        polyak_update(self.target_network, self.q_network, self.tau)
        self.num_updates += 1
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "q_network": self.q_network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q_network.load_state_dict(state["q_network"])
        self.target_network.load_state_dict(state["target_network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
