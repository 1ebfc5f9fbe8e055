"""BRAC's KL divergence in its dual form, the dual critic's loss, and the Lagrange weight alpha.

Spec focal.md 3.6 (a port of google-research BRAC's ``divergences.py``). With the dual critic
c(s, a, z) (a logit), a_p ~ pi(. | s, z) and a_b the dataset action at s, the per-sample estimate
of KL(pi || pi_b) at s is

    D(s) = -softplus(c(s, a_b, z)) + log(softplus(c(s, a_p, z)) + 1e-8) + 1,

a lower bound that c maximises: L_c = -mean D + penalty. The penalty is chosen deliberately:

- ``gradient`` (BRAC's): lambda mean(max(||grad_a c(s, a~, z)|| - 1, 0)^2) at
  a~ = a_b + u (a_p - a_b), u ~ U(0, 1), which keeps c near 1-Lipschitz in the action;
- ``magnitude`` (the original FOCAL code): lambda mean(max(|c(s, a~, z)| - 1, 0)^2), which bounds
  the critic's output instead of its slope;
- ``none``.

alpha follows alpha <- clip(alpha + alpha_lr (mean D - D_target), 0, alpha_max): the stored value
itself is clipped, so it never drifts outside [0, alpha_max] (the original clipped only its
read-out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch.nn import functional

KL_LOG_EPSILON = 1e-8
SLOPE_EPSILON = 1e-12
PenaltyKind = Literal["gradient", "magnitude", "none"]
Critic = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def kl_dual_estimate(critic_on_policy_actions: torch.Tensor, critic_on_data_actions: torch.Tensor
                     ) -> torch.Tensor:
    """D = -softplus(c(s, a_b)) + log(softplus(c(s, a_p)) + 1e-8) + 1, element-wise (..., 1)."""
    return (-functional.softplus(critic_on_data_actions)
            + torch.log(functional.softplus(critic_on_policy_actions) + KL_LOG_EPSILON) + 1.0)


def dual_critic_penalty(kind: PenaltyKind, critic: Critic, observations: torch.Tensor,
                        policy_actions: torch.Tensor, data_actions: torch.Tensor,
                        latents: torch.Tensor) -> torch.Tensor:
    """The unweighted penalty (a scalar) at actions interpolated between a_p and a_b.

    Inputs (..., o), (..., A), (..., A), (..., L); ``policy_actions`` should carry no gradient.
    """
    if kind == "none":
        return observations.new_zeros(())
    mixing = torch.rand(*data_actions.shape[:-1], 1, device=data_actions.device,
                        dtype=data_actions.dtype)
    interpolated = data_actions + mixing * (policy_actions - data_actions)
    if kind == "magnitude":
        values = critic(observations, interpolated, latents)
        return functional.relu(values.abs() - 1.0).pow(2).mean()
    interpolated = interpolated.detach().requires_grad_(True)
    values = critic(observations, interpolated, latents)
    (gradients,) = torch.autograd.grad(values.sum(), interpolated, create_graph=True)
    slopes = (gradients.pow(2).sum(dim=-1) + SLOPE_EPSILON).sqrt()
    return functional.relu(slopes - 1.0).pow(2).mean()


class LagrangeWeight:
    """BRAC's alpha: a scalar on the device, moved toward the target divergence and clipped."""

    def __init__(self, initial: float, maximum: float, learning_rate: float,
                 target_divergence: float, trainable: bool, device: torch.device | str) -> None:
        if not 0.0 <= initial <= maximum:
            raise ValueError(f"alpha-init {initial} must lie in [0, alpha-max = {maximum}]")
        self.maximum, self.learning_rate = maximum, learning_rate
        self.target_divergence, self.trainable = target_divergence, trainable
        self.value = torch.tensor(float(initial), device=device)

    @torch.no_grad()
    def update(self, mean_divergence: torch.Tensor) -> None:
        """alpha <- clip(alpha + alpha_lr (mean D - D_target), 0, alpha_max), if trainable."""
        if self.trainable:
            step = self.learning_rate * (mean_divergence - self.target_divergence)
            self.value.copy_((self.value + step).clamp(0.0, self.maximum))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"value": self.value.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.value.copy_(state["value"])
