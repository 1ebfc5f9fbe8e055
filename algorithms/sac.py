"""Soft actor-critic for K independent agents stacked along a leading member dimension.

Batches are dicts of tensors (K, B, dim): ``observations``, ``actions`` (in [-1, 1]),
``rewards`` (K, B, 1), ``next_observations``, ``terminations`` (K, B, 1). For each member, with
twin critics Q_1, Q_2, their Polyak-averaged targets Q-bar_j, policy pi and temperature alpha:

    y = r + gamma (1 - d) (min_j Q-bar_j(s', a') - alpha log pi(a'|s')),    a' ~ pi(.|s')
    L_Q = sum_j mean_B (Q_j(s, a) - y)^2
    L_pi = mean_B (alpha log pi(a~|s) - min_j Q_j(s, a~)),                  a~ ~ pi(.|s)
    L_alpha = -mean_B log alpha (log pi(a~|s) + H_target)      (automatic entropy tuning only)

The losses of the K members are summed, so each member's gradient equals that of a lone agent.
Order per update (spec borel.md 3.2): critic step, target update (tau), policy step, alpha step.

With ``cql_alpha`` > 0 each critic's loss gains the conservative term of CQL(H) (Kumar et al.,
2020), with N = ``cql_num_actions`` actions per state from each of three proposals:

    L_CQL_j = mean_B [ log sum_{a in A_s} exp(Q_j(s, a) - log p(a)) - Q_j(s, a_data) ]

where A_s holds N uniform actions (log p = -|A| log 2), N actions of pi(.|s) and N of pi(.|s'),
each weighted by its proposal's density (log pi for the policy samples). The original BOReL code
never exponentiated Q here (spec borel.md 5.4); this is the standard estimator.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch

from algorithms.common import polyak_update, step
from models.ensemble import EnsembleMLP
from models.policies import TanhGaussianPolicy

Batch = dict[str, torch.Tensor]


class SAC:
    """K stacked SAC agents (K = 1: an ordinary agent)."""

    def __init__(
        self,
        num_members: int,
        observation_dim: int,
        action_dim: int,
        policy_hidden_sizes: Sequence[int],
        critic_hidden_sizes: Sequence[int],
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        entropy_alpha: float = 0.2,
        automatic_entropy_tuning: bool = False,
        target_entropy: float | None = None,
        alpha_lr: float = 3e-4,
        max_grad_norm: float | None = None,
        cql_alpha: float = 0.0,
        cql_num_actions: int = 10,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_members = num_members
        self.cql_alpha, self.cql_num_actions = cql_alpha, cql_num_actions
        self.action_dim = action_dim
        self.gamma, self.tau = gamma, tau
        self.max_grad_norm = max_grad_norm
        self.device = torch.device(device)
        self.policy = TanhGaussianPolicy(
            num_members, observation_dim, action_dim, policy_hidden_sizes
        ).to(self.device)
        self.critic = EnsembleMLP(
            2 * num_members, observation_dim + action_dim, critic_hidden_sizes, 1
        ).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=actor_lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=critic_lr, fused=True)
        self.automatic_entropy_tuning = automatic_entropy_tuning
        self.target_entropy = -float(action_dim) if target_entropy is None else target_entropy
        self.log_alpha = torch.full(
            (num_members, 1, 1), float(torch.log(torch.tensor(entropy_alpha))),
            device=self.device, requires_grad=automatic_entropy_tuning,
        )
        self.alpha_optimizer = (
            torch.optim.Adam([self.log_alpha], lr=alpha_lr) if automatic_entropy_tuning else None
        )
        self.num_updates = 0

    @property
    def alpha(self) -> torch.Tensor:
        """Temperatures (K, 1, 1)."""
        return self.log_alpha.detach().exp()

    def q_values(self, critic: EnsembleMLP, observations: torch.Tensor, actions: torch.Tensor
                 ) -> torch.Tensor:
        """Both critics' values (2, K, B, 1) of (K, B, .) inputs."""
        inputs = torch.cat([observations, actions], dim=-1).repeat(2, *([1] * (actions.dim() - 1)))
        return critic(inputs).view(2, self.num_members, *actions.shape[1:-1], 1)

    @torch.no_grad()
    def act(self, observations: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions (K, N, action_dim) in [-1, 1] for observations (K, N, obs_dim)."""
        return self.policy.sample(observations, deterministic)[0]

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step of every member on its slice of ``batch``; returns the mean metrics
        as detached scalar tensors on the device (no host synchronisation)."""
        observations, actions = batch["observations"], batch["actions"]
        rewards, terminations = batch["rewards"], batch["terminations"]
        alpha = self.alpha
        with torch.no_grad():
            next_actions, next_log_probs = self.policy.sample(batch["next_observations"])
            next_values = self.q_values(self.target_critic, batch["next_observations"],
                                        next_actions).min(dim=0).values
            targets = rewards + self.gamma * (1.0 - terminations) * (
                next_values - alpha * next_log_probs
            )
        q_values = self.q_values(self.critic, observations, actions)
        critic_loss = (q_values - targets).pow(2).mean(dim=(2, 3)).sum()
        cql_penalty = None
        if self.cql_alpha > 0:
            cql_penalty = self.cql_penalty(observations, batch["next_observations"], q_values)
            critic_loss = critic_loss + self.cql_alpha * cql_penalty.mean(dim=2).sum()
        step(self.critic_optimizer, critic_loss, self.max_grad_norm)
        polyak_update(self.target_critic, self.critic, self.tau)

        new_actions, log_probs = self.policy.sample(observations)
        new_values = self.q_values(self.critic, observations, new_actions).min(dim=0).values
        policy_loss = (alpha * log_probs - new_values).mean(dim=(1, 2)).sum()
        step(self.policy_optimizer, policy_loss, self.max_grad_norm)  # no critic gradients

        metrics = {
            "critic_loss": critic_loss.detach() / (2 * self.num_members),
            "policy_loss": policy_loss.detach() / self.num_members,
            "q_value": q_values.detach().mean(),
            "log_prob": log_probs.detach().mean(),
        }
        if self.alpha_optimizer is not None:
            alpha_loss = -(self.log_alpha * (log_probs.detach() + self.target_entropy)).mean(
                dim=(1, 2)).sum()
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            metrics["alpha_loss"] = alpha_loss.detach() / self.num_members
        metrics["alpha"] = self.alpha.mean()
        if cql_penalty is not None:
            metrics["cql_penalty"] = cql_penalty.detach().mean()
        self.num_updates += 1
        return metrics

    def cql_penalty(self, observations: torch.Tensor, next_observations: torch.Tensor,
                    q_values: torch.Tensor) -> torch.Tensor:
        """The CQL(H) term of each critic and transition (2, K, B) (see the module docstring)."""
        count = self.cql_num_actions
        members, size = observations.shape[:2]

        def repeat(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.unsqueeze(2).expand(members, size, count, tensor.shape[-1]).reshape(
                members, size * count, tensor.shape[-1])

        states, next_states = repeat(observations), repeat(next_observations)
        with torch.no_grad():
            uniform = torch.rand(members, size * count, self.action_dim,
                                 device=observations.device) * 2 - 1
            current_actions, current_log_probs = self.policy.sample(states)
            next_actions, next_log_probs = self.policy.sample(next_states)
        uniform_log_density = -self.action_dim * math.log(2.0)
        proposals = [
            self.q_values(self.critic, states, uniform) - uniform_log_density,
            self.q_values(self.critic, states, current_actions) - current_log_probs,
            self.q_values(self.critic, states, next_actions) - next_log_probs,
        ]
        stacked = torch.cat([value.view(2, members, size, count) for value in proposals], dim=3)
        return torch.logsumexp(stacked, dim=3) - q_values[..., 0]

    def state_dict(self) -> dict[str, Any]:
        state = {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "num_updates": self.num_updates,
        }
        if self.alpha_optimizer is not None:
            state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optimizer is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.num_updates = int(state["num_updates"])
