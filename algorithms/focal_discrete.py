"""FOCAL for Discrete action spaces: a categorical policy and an exact KL to a behaviour model.

FOCAL's actor-critic is SAC with a V network and a BRAC regulariser for Box actions
(:mod:`algorithms.focal`). For A discrete actions (the gridworld) every expectation over actions is
a finite sum, so nothing is sampled and the KL dual critic is not needed. With pi(. | s, z) a
categorical policy, Q_j(s, ., z) critics with one head per action, beta(. | s, z) a
behaviour-cloning model of the task's data, z-bar the detached embedding, w = 1 (0 when
``max_entropy`` is off), R = reward scale, gamma = discount, d = termination and a_b the dataset
action (one-hot), one :meth:`DiscreteFOCAL.update` does:

1. z and the distance-metric loss L_z, exactly as the Box variant.
2. Behaviour model (if ``use_brac``): ``c_iter`` Adam steps (lr ``c_lr``) on the cross-entropy
       L_beta = -mean sum_a a_b(a) log beta(a | s, z-bar)
   the first on this batch and the others on the batch's extra (s, a_b) samples.
3. Critics: with D(s) = KL(pi || beta)(s) = sum_a pi(a|s, z-bar) (log pi(a|s, z-bar)
   - log beta(a|s, z-bar)), exact,
       V-bar' = V_target(s', z-bar) - [value penalty] alpha D(s')   (D(s) with
                value_penalty_state = current; no gradient)
       y = R r + (1 - d) gamma V-bar'
       L_Q = sum_j mean_{T,B} (Q_j(s, a_b, z) - y)^2,   Q_j(s, a_b, z) = sum_a a_b(a) Q_j(s, a, z)
   One backward of z_weight L_z + L_Q updates the encoder and both Q networks.
4. Value and policy against the updated critics, Q-min(s, a) = min_j Q_j(s, a, z-bar):
       L_V  = mean (V(s, z-bar) - sum_a pi(a|s) [Q-min(s, a) - w log pi(a|s)])^2   (target detached)
       L_pi = mean (sum_a pi(a|s) [w log pi(a|s) - Q-min(s, a)] + [policy reg.] alpha D(s))
   The entropy term is exact (-sum_a pi log pi); beta receives no gradient from L_pi. The Box
   variant's L2 terms on the Gaussian's mean and log std have no counterpart here.
5. alpha <- clip(alpha + alpha_lr (mean D(s) - D_target), 0, alpha_max).

Shapes: T tasks, B transitions per task, A actions, L latent size; Q heads (2, T, B, A), pi and
beta logits (T, B, A), D (T, B, 1). The deterministic action is argmax_a pi(a | s, z).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from algorithms.common import polyak_update
from algorithms.focal import Batch, FocalBase
from models.focal_networks import StateValueNetwork, TaskConditionedLogits, TwinQHeads


def categorical_kl(log_probabilities: torch.Tensor, reference_log_probabilities: torch.Tensor
                   ) -> torch.Tensor:
    """KL(p || q) = sum_a p(a) (log p(a) - log q(a)) over the last dimension: (..., A) -> (..., 1).

    Both arguments are normalised log-probabilities (log_softmax of logits).
    """
    return (log_probabilities.exp() * (log_probabilities - reference_log_probabilities)).sum(
        dim=-1, keepdim=True)


class DiscreteFOCAL(FocalBase):
    """FOCAL's encoder with a behaviour-regularised categorical SAC (module docstring)."""

    def _build_actor_critic(self, observation_dim: int, action_dim: int, latent_size: int,
                            hidden_sizes: list[int]) -> None:
        self.policy = TaskConditionedLogits(observation_dim, latent_size, action_dim,
                                            hidden_sizes)
        self.q_networks = TwinQHeads(observation_dim, latent_size, action_dim, hidden_sizes)
        self.value = StateValueNetwork(observation_dim, latent_size, hidden_sizes)
        self.behaviour = TaskConditionedLogits(observation_dim, latent_size, action_dim,
                                               hidden_sizes)

    def networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "policy": self.policy, "q_networks": self.q_networks,
                "value": self.value, "behaviour": self.behaviour}

    def learning_rates(self) -> dict[str, float]:
        settings = self.settings
        return {"encoder": settings.context_lr, "policy": settings.policy_lr,
                "q_networks": settings.qf_lr, "value": settings.vf_lr,
                "behaviour": settings.c_lr}

    @torch.no_grad()
    def act(self, observations: torch.Tensor, latents: torch.Tensor, deterministic: bool = True
            ) -> torch.Tensor:
        """Action indices (...,) for states (..., o) and embeddings (..., L): argmax pi, or a
        sample from pi when not ``deterministic``."""
        logits = self.policy(observations, latents)
        if deterministic:
            return logits.argmax(dim=-1)
        return torch.distributions.Categorical(logits=logits).sample()

    # ------------------------------------------------------------------------------- training
    def behaviour_loss(self, observations: torch.Tensor, data_actions: torch.Tensor,
                       latents: torch.Tensor) -> torch.Tensor:
        """L_beta = -mean sum_a a_b(a) log beta(a | s, z) for one-hot ``data_actions``."""
        log_behaviour = functional.log_softmax(self.behaviour(observations, latents), dim=-1)
        return -(data_actions * log_behaviour).sum(dim=-1).mean()

    def divergence(self, observations: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """D(s) = KL(pi || beta)(s) exactly, (..., 1); gradients reach pi only."""
        log_policy = functional.log_softmax(self.policy(observations, latents), dim=-1)
        with torch.no_grad():
            log_behaviour = functional.log_softmax(self.behaviour(observations, latents), dim=-1)
        return categorical_kl(log_policy, log_behaviour)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on a meta-batch; returns the mean metrics as detached scalar tensors
        on the device (no host synchronisation).

        ``batch`` as for :meth:`FOCAL.update`, with ``actions`` and ``extra_actions`` one-hot
        over the A actions; ``next_actions`` and ``next_action_valid`` are not used.
        """
        settings = self.settings
        observations, actions = batch["observations"], batch["actions"]
        alpha = self.alpha.value

        # 1. Task embeddings and the distance-metric loss.
        latents, z_loss = self._task_embeddings(batch)
        detached, q_latents = self._per_transition(batch, latents)

        # 2. The behaviour-cloning model.
        behaviour_loss = self._regulariser_steps(batch, detached, "behaviour",
                                                 self.behaviour_loss)

        # 3. Twin Q heads (and, with the metric loss, the encoder).
        penalty_states = (batch["next_observations"] if settings.value_penalty_state == "next"
                          else observations)
        targets = self._td_targets(batch, detached,
                                   lambda: self.divergence(penalty_states, detached))
        q_values = (self.q_networks(observations, q_latents) * actions).sum(dim=-1, keepdim=True)
        q_loss = (q_values - targets).pow(2).mean(dim=(1, 2, 3)).sum()
        self._critic_step(z_loss, q_loss)

        # 4. V and the policy, exact expectations over the actions.
        entropy_weight = 1.0 if settings.max_entropy else 0.0
        log_policy = functional.log_softmax(self.policy(observations, detached), dim=-1)
        policy = log_policy.exp()
        with torch.no_grad():
            minimum_q = self.q_networks(observations, detached).min(dim=0).values
            soft_values = (policy * (minimum_q - entropy_weight * log_policy)).sum(
                dim=-1, keepdim=True)
        values = self.value(observations, detached)
        value_loss = (values - soft_values).pow(2).mean()
        policy_objective = (policy * (entropy_weight * log_policy - minimum_q)).sum(
            dim=-1, keepdim=True)
        divergence = torch.zeros((), device=self.device)
        if settings.use_brac:
            with torch.no_grad():
                log_behaviour = functional.log_softmax(self.behaviour(observations, detached),
                                                       dim=-1)
            divergence = categorical_kl(log_policy, log_behaviour)
            if settings.use_policy_regularisation:
                policy_objective = policy_objective + alpha * divergence
        policy_loss = policy_objective.mean()
        self._step(("value", "policy"), value_loss + policy_loss)
        polyak_update(self.target_value, self.value, settings.soft_target_tau)

        # 5. alpha toward the target divergence.
        mean_divergence = divergence.detach().mean()
        if settings.use_brac:
            self.alpha.update(mean_divergence)
        self.num_updates += 1

        metrics = {
            "z_loss": z_loss.detach(),
            "q_loss": q_loss.detach() / 2.0,
            "v_loss": value_loss.detach(),
            "policy_loss": policy_loss.detach(),
            "behaviour_loss": behaviour_loss.detach(),
            "alpha": self.alpha.value.clone(),
            "divergence": mean_divergence,
            "q_prediction": q_values.detach().mean(),
            "v_prediction": values.detach().mean(),
            "log_prob": (policy * log_policy).detach().sum(dim=-1).mean(),
            "latent_spread": latents.detach().std(dim=0, unbiased=False).mean(),
        }
        return metrics
