"""FOCAL: a context encoder trained by distance metric learning, and a BRAC SAC conditioned on z.

Spec focal.md 3.1-3.11. One :meth:`FOCAL.update` takes a meta-batch of T tasks (drawn with
replacement) with, per task, a context of N transitions and an RL batch of B transitions, and does:

1. Encode z_t = mean_n q_phi(context_t,n) for all T tasks at once: (T, N, D) -> (T, L), and the
   distance-metric loss L_z on the T embeddings (:func:`metric_loss`). Everything else sees the
   detached z-bar, so only L_z trains the encoder, unless ``allow_backward_z`` ("FOCAL, coupled")
   also lets the Q loss reach it.
2. BRAC dual critic (if ``use_brac``): ``c_iter`` steps on L_c = -mean D(s) + lambda penalty, the
   first on this batch and the others on the batch's extra (s, a_b) samples (algorithms/brac.py).
3. Critics, SAC v1 with a V network, R = reward scale, gamma = discount, d = termination:
       V-bar' = V_target(s', z-bar) - [value penalty] alpha D(s')            (no gradient)
       y = R r + (1 - d) gamma V-bar'
       L_Q = sum_j mean_{T,B} (Q_j(s, a, z) - y)^2                           shapes (T, B, 1)
   One backward of z_weight L_z + L_Q updates the encoder and both Q networks.
4. Value and policy, with a~ ~ pi(. | s, z-bar) reparameterised and the updated critics:
       L_V = mean (V(s, z-bar) - [min_j Q_j(s, a~, z-bar) - log pi(a~|s, z-bar)])^2
       L_pi = mean (log pi(a~|s, z-bar) - min_j Q_j(s, a~, z-bar) + [policy reg.] alpha D(s))
              + w_mu mean(mu^2) + w_sigma mean(log sigma^2)
   (log pi is dropped from both when ``max_entropy`` is off), then V_target <- Polyak(V, tau).
5. alpha <- clip(alpha + alpha_lr (mean D(s) - D_target), 0, alpha_max), with the D(s) of step 4.

Every loss is computed from fresh forward passes, so the code runs on current PyTorch (spec 8.1.3).

:class:`FocalBase` holds what this Box variant shares with the Discrete one
(``algorithms/focal_discrete.py``): the encoder and step 1, alpha, optimisers and checkpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from torch import nn

from algorithms.brac import LagrangeWeight, dual_critic_penalty, kl_dual_estimate
from algorithms.common import polyak_update
from models.context_encoder import ContextEncoder
from models.focal_networks import DualCritic, StateValueNetwork, TaskConditionedPolicy, TwinQNetwork
from models.policies import tanh_gaussian_log_prob

Batch = dict[str, torch.Tensor]
MetricNegative = Literal["inverse_square", "inverse", "linear", "square"]
DISTANCE_FLOOR = 1e-3
PAIR_COUNT_FLOOR = 1e-3
NUM_HIDDEN_LAYERS = 3


def pairwise_squared_distances(latents: torch.Tensor, average_dimensions: bool) -> torch.Tensor:
    """d^2_ij = mean (or sum) over the L dimensions of (z_i - z_j)^2: (T, L) -> (T, T)."""
    differences = latents.unsqueeze(1) - latents.unsqueeze(0)
    squared = differences.pow(2)
    return squared.mean(dim=-1) if average_dimensions else squared.sum(dim=-1)


def metric_loss(
    latents: torch.Tensor,
    task_ids: torch.Tensor,
    negative: MetricNegative = "inverse_square",
    beta: float = 1.0,
    epsilon: float = 0.1,
    positive: Literal["rms", "square"] = "rms",
    distance: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """FOCAL's distance-metric loss over the unordered pairs i < j of a meta-batch.

    With d^2_ij from :func:`pairwise_squared_distances` and d_ij = sqrt(d^2_ij + 1e-3):

        P = sum_{i<j, y_i = y_j} p(d_ij)        p = d_ij ("rms") or d^2_ij ("square")
        N = sum_{i<j, y_i != y_j} n(d_ij)       n = beta/(d^2 + eps), beta/(d + eps), -beta d,
                                                    or -beta d^2 (inverse_square ... square)
        L_z = P / (n_P + 1e-3) + N / (n_N + 1e-3),   n_P, n_N the numbers of such pairs

    ``latents`` (T, L), ``task_ids`` (T,) -> a scalar. The defaults are the original code's
    (dimension-averaged distance, RMS positive term, inverse-square negative term with beta = 1 and
    eps = 0.1; spec focal.md 3.4); the paper's formula is positive="square", distance="sum".
    """
    squared = pairwise_squared_distances(latents, average_dimensions=distance == "mean")
    distances = (squared + DISTANCE_FLOOR).sqrt()
    count = latents.shape[0]
    upper = torch.ones(count, count, dtype=torch.bool, device=latents.device).triu(diagonal=1)
    same_task = task_ids.unsqueeze(1) == task_ids.unsqueeze(0)
    positive_pairs = (upper & same_task).to(latents.dtype)
    negative_pairs = (upper & ~same_task).to(latents.dtype)
    positive_terms = distances if positive == "rms" else squared
    if negative == "inverse_square":
        negative_terms = beta / (squared + epsilon)
    elif negative == "inverse":
        negative_terms = beta / (distances + epsilon)
    elif negative == "linear":
        negative_terms = -beta * distances
    elif negative == "square":
        negative_terms = -beta * squared
    else:
        raise ValueError(f"unknown metric loss {negative!r}")
    positive_part = (positive_terms * positive_pairs).sum() / (positive_pairs.sum()
                                                               + PAIR_COUNT_FLOOR)
    negative_part = (negative_terms * negative_pairs).sum() / (negative_pairs.sum()
                                                               + PAIR_COUNT_FLOOR)
    return positive_part + negative_part


@dataclass(frozen=True)
class FocalHyperparameters:
    """FOCAL's settings (the fields of the same name in ``FocalConfig``; defaults spec 3.10)."""

    latent_size: int = 20
    net_size: int = 256
    context_hidden_sizes: list[int] = field(default_factory=lambda: [200, 200, 200])
    use_task_embedding: bool = True
    discount: float = 0.99
    reward_scale: float = 5.0
    soft_target_tau: float = 0.005
    policy_lr: float = 3e-4
    qf_lr: float = 3e-4
    vf_lr: float = 3e-4
    context_lr: float = 3e-4
    c_lr: float = 1e-4
    max_entropy: bool = True
    policy_mean_reg_weight: float = 1e-3
    policy_std_reg_weight: float = 1e-3
    z_loss_weight: float = 10.0
    metric_loss: MetricNegative = "inverse_square"
    metric_beta: float = 1.0
    metric_epsilon: float = 0.1
    metric_positive: Literal["rms", "square"] = "rms"
    metric_distance: Literal["mean", "sum"] = "mean"
    allow_backward_z: bool = False
    use_brac: bool = True
    use_value_penalty: bool = False
    use_policy_regularisation: bool = True
    value_penalty_state: Literal["next", "current"] = "next"
    dual_critic_penalty: Literal["gradient", "magnitude", "none"] = "gradient"
    gradient_penalty_weight: float = 5.0
    alpha_lr: float = 1.0
    alpha_init: float = 500.0
    alpha_max: float = 2000.0
    target_divergence: float = 0.05
    train_alpha: bool = True

    @classmethod
    def from_config(cls, config: Any) -> FocalHyperparameters:
        """Take every field of the same name from ``config`` (a ``FocalConfig``)."""
        return cls(**{item.name: getattr(config, item.name) for item in fields(cls)})


class FocalBase:
    """What FOCAL's Box and Discrete variants share: the context encoder and its metric-loss step,
    the Lagrange weight alpha, one Adam optimiser per network, and checkpointing.

    A subclass builds its policy, critics (``q_networks``, ``value``) and behaviour-regulariser
    network in :meth:`_build_actor_critic`, names them in :meth:`networks` and
    :meth:`learning_rates`, and implements ``act`` and ``update``. ``observation_dim`` o,
    ``action_dim`` A (the stored action width: Box dimension or number of discrete actions) and
    ``transition_dim`` D (the width of one context transition) fix the network inputs.
    """

    def __init__(self, observation_dim: int, action_dim: int, transition_dim: int,
                 hyperparameters: FocalHyperparameters, device: torch.device | str = "cpu"
                 ) -> None:
        settings = self.settings = hyperparameters
        self.device = torch.device(device)
        latent, hidden = settings.latent_size, [settings.net_size] * NUM_HIDDEN_LAYERS
        self.encoder = ContextEncoder(transition_dim, settings.context_hidden_sizes, latent)
        self._build_actor_critic(observation_dim, action_dim, latent, hidden)
        for network in self.networks().values():
            network.to(self.device)
        self.target_value = copy.deepcopy(self.value).requires_grad_(False)
        learning_rates = self.learning_rates()
        self.optimizers = {name: self._adam(network, learning_rates[name])
                           for name, network in self.networks().items()}
        self.alpha = LagrangeWeight(settings.alpha_init, settings.alpha_max, settings.alpha_lr,
                                    settings.target_divergence, settings.train_alpha, self.device)
        self.num_updates = 0

    def _build_actor_critic(self, observation_dim: int, action_dim: int, latent_size: int,
                            hidden_sizes: list[int]) -> None:
        raise NotImplementedError

    def networks(self) -> dict[str, nn.Module]:
        """The trained networks by name (the target V is a copy of ``value``)."""
        raise NotImplementedError

    def learning_rates(self) -> dict[str, float]:
        """Adam learning rate of each network of :meth:`networks`."""
        raise NotImplementedError

    def _adam(self, network: nn.Module, learning_rate: float) -> torch.optim.Adam:
        return torch.optim.Adam(network.parameters(), lr=learning_rate,
                                fused=self.device.type in ("cpu", "cuda"))

    # ------------------------------------------------------------------------------- inference
    def task_latents(self, context: torch.Tensor, mask: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """z for contexts (T, N, D) with an optional validity mask (T, N): (T, L), no gradient.

        Without a task embedding (``use_task_embedding`` off) z is always 0.
        """
        with torch.no_grad():
            if not self.settings.use_task_embedding:
                return torch.zeros(context.shape[0], self.settings.latent_size,
                                   device=context.device)
            return self.encoder(context, mask)

    # ------------------------------------------------------------------------------- training
    def _step(self, names: tuple[str, ...], loss: torch.Tensor) -> None:
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        for name in names:
            self.optimizers[name].step()

    def _task_embeddings(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 1 of an update: z (T, L) of the batch's contexts (T, N, D), with gradient, and
        the distance-metric loss L_z on them (z = 0 and L_z = 0 without a task embedding)."""
        settings = self.settings
        if not settings.use_task_embedding:
            num_tasks = batch["observations"].shape[0]
            return (torch.zeros(num_tasks, settings.latent_size, device=self.device),
                    torch.zeros((), device=self.device))
        latents = self.encoder(batch["context"])
        z_loss = metric_loss(latents, batch["task_ids"], settings.metric_loss,
                             settings.metric_beta, settings.metric_epsilon,
                             settings.metric_positive, settings.metric_distance)
        return latents, z_loss

    def _per_transition(self, batch: Batch, latents: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """z (T, L) repeated over the batch's transitions (T, B, L): detached (for the
        regulariser, V and the policy), and the Q networks' copy, which carries L_Q's gradient to
        the encoder when ``allow_backward_z`` (detached otherwise)."""
        num_tasks, batch_size = batch["observations"].shape[:2]
        repeated = latents.unsqueeze(1).expand(num_tasks, batch_size, latents.shape[-1])
        detached = repeated.detach()
        return detached, repeated if self.settings.allow_backward_z else detached

    @torch.no_grad()
    def _td_targets(self, batch: Batch, latents: torch.Tensor,
                    penalty: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Step 3's targets for Q: reward_scale r + (1 - done) discount (V'(s', z) - alpha D),
        with D = ``penalty()`` under BRAC's value penalty and 0 otherwise."""
        settings = self.settings
        next_values = self.target_value(batch["next_observations"], latents)
        if settings.use_brac and settings.use_value_penalty:
            next_values = next_values - self.alpha.value * penalty()
        return (settings.reward_scale * batch["rewards"]
                + (1.0 - batch["terminations"]) * settings.discount * next_values)

    def _regulariser_steps(self, batch: Batch, latents: torch.Tensor, name: str,
                           loss_of: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                             torch.Tensor]) -> torch.Tensor:
        """Step 2 of an update: the behaviour regulariser's optimiser ``name`` (FOCAL's dual
        critic, Discrete FOCAL's behaviour model) takes one step on the batch's (s, a) and one on
        each extra sample (``c_iter`` steps in all), on ``loss_of(s, a, z)``; returns the last
        loss (zero without BRAC)."""
        loss = torch.zeros((), device=self.device)
        if not self.settings.use_brac:
            return loss
        samples = [(batch["observations"], batch["actions"])]
        if "extra_observations" in batch:
            samples += list(zip(batch["extra_observations"], batch["extra_actions"],
                                strict=True))
        for sample_observations, sample_actions in samples:
            loss = loss_of(sample_observations, sample_actions, latents)
            self._step((name,), loss)
        return loss

    def _critic_step(self, z_loss: torch.Tensor, q_loss: torch.Tensor) -> None:
        """One backward of z_weight L_z + L_Q through the encoder and the Q networks (the Q
        networks alone without a task embedding)."""
        if self.settings.use_task_embedding:
            self._step(("encoder", "q_networks"), self.settings.z_loss_weight * z_loss + q_loss)
        else:
            self._step(("q_networks",), q_loss)

    # ------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Networks, target V, optimisers, alpha and the update counter (weights_only-loadable)."""
        state: dict[str, Any] = {name: network.state_dict()
                                 for name, network in self.networks().items()}
        state["target_value"] = self.target_value.state_dict()
        state["optimizers"] = {name: optimizer.state_dict()
                               for name, optimizer in self.optimizers.items()}
        state["alpha"] = self.alpha.state_dict()
        state["num_updates"] = self.num_updates
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, network in self.networks().items():
            network.load_state_dict(state[name])
        self.target_value.load_state_dict(state["target_value"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.alpha.load_state_dict(state["alpha"])
        self.num_updates = int(state["num_updates"])


class FOCAL(FocalBase):
    """The encoder, the task-conditioned SAC (twin Q, V, target V) and the BRAC dual critic, for
    Box actions in [-1, 1]^A. Batches (see :meth:`update`) hold T tasks.
    """

    def _build_actor_critic(self, observation_dim: int, action_dim: int, latent_size: int,
                            hidden_sizes: list[int]) -> None:
        self.policy = TaskConditionedPolicy(observation_dim, latent_size, action_dim,
                                            hidden_sizes)
        self.q_networks = TwinQNetwork(observation_dim, action_dim, latent_size, hidden_sizes)
        self.value = StateValueNetwork(observation_dim, latent_size, hidden_sizes)
        self.dual_critic = DualCritic(observation_dim, action_dim, latent_size, hidden_sizes)

    def networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "policy": self.policy, "q_networks": self.q_networks,
                "value": self.value, "dual_critic": self.dual_critic}

    def learning_rates(self) -> dict[str, float]:
        settings = self.settings
        return {"encoder": settings.context_lr, "policy": settings.policy_lr,
                "q_networks": settings.qf_lr, "value": settings.vf_lr,
                "dual_critic": settings.c_lr}

    @torch.no_grad()
    def act(self, observations: torch.Tensor, latents: torch.Tensor, deterministic: bool = True
            ) -> torch.Tensor:
        """Actions (..., A) in [-1, 1] for states (..., o) and embeddings (..., L)."""
        return self.policy.sample(observations, latents, deterministic)[0]

    # ------------------------------------------------------------------------------- training
    def divergence(self, observations: torch.Tensor, policy_actions: torch.Tensor,
                   data_actions: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """D(s) per sample (T, B, 1), with c evaluated on a_p and a_b in one pass."""
        logits = self.dual_critic(observations.expand(2, *observations.shape),
                                  torch.stack([policy_actions, data_actions]),
                                  latents.expand(2, *latents.shape))
        return kl_dual_estimate(logits[0], logits[1])

    def dual_critic_loss(self, observations: torch.Tensor, data_actions: torch.Tensor,
                         latents: torch.Tensor) -> torch.Tensor:
        """L_c = -mean D(s) + lambda penalty for (T, B, .) inputs and detached z (T, B, L)."""
        with torch.no_grad():
            policy_actions = self.policy.sample(observations, latents)[0]
        divergence = self.divergence(observations, policy_actions, data_actions, latents)
        penalty = dual_critic_penalty(self.settings.dual_critic_penalty, self.dual_critic,
                                      observations, policy_actions, data_actions, latents)
        return -divergence.mean() + self.settings.gradient_penalty_weight * penalty

    def _value_penalty(self, batch: Batch, latents: torch.Tensor) -> torch.Tensor:
        """D at s' with the dataset's next action (falling back to D at s for a transition whose
        trajectory ends there), or D at s: (T, B, 1), no gradient."""
        observations, actions = batch["observations"], batch["actions"]
        current = self.divergence(observations, self.policy.sample(observations, latents)[0],
                                  actions, latents)
        if self.settings.value_penalty_state == "current":
            return current
        next_observations = batch["next_observations"]
        following = self.divergence(
            next_observations, self.policy.sample(next_observations, latents)[0],
            batch["next_actions"], latents)
        return torch.where(batch["next_action_valid"] > 0, following, current)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One FOCAL gradient step on a meta-batch; returns the mean metrics as detached scalar
        tensors on the device (no host synchronisation).

        ``batch``: ``task_ids`` (T,) long; ``context`` (T, N, D); ``observations``,
        ``next_observations`` (T, B, o); ``actions``, ``next_actions`` (T, B, A) in [-1, 1];
        ``rewards``, ``terminations``, ``next_action_valid`` (T, B, 1); and optionally
        ``extra_observations`` (C - 1, T, B, o) and ``extra_actions`` (C - 1, T, B, A) for the
        further dual-critic steps.
        """
        settings = self.settings
        observations, actions = batch["observations"], batch["actions"]
        alpha = self.alpha.value

        # 1. Task embeddings and the distance-metric loss.
        latents, z_loss = self._task_embeddings(batch)
        detached, q_latents = self._per_transition(batch, latents)

        # 2. The dual critic.
        dual_critic_loss = self._regulariser_steps(batch, detached, "dual_critic",
                                                   self.dual_critic_loss)

        # 3. Twin Q (and, with the metric loss, the encoder).
        targets = self._td_targets(batch, detached, lambda: self._value_penalty(batch, detached))
        q_values = self.q_networks(observations, actions, q_latents)
        q_loss = (q_values - targets).pow(2).mean(dim=(1, 2, 3)).sum()
        self._critic_step(z_loss, q_loss)

        # 4. V and the policy, against the updated critics.
        mean, log_std = self.policy(observations, detached)
        noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        new_actions = torch.tanh(pre_tanh)
        log_probs = tanh_gaussian_log_prob(pre_tanh, mean, log_std, noise)
        entropy_terms = log_probs if settings.max_entropy else torch.zeros_like(log_probs)
        self.q_networks.requires_grad_(False)
        self.dual_critic.requires_grad_(False)
        new_q_values = self.q_networks(observations, new_actions, detached).min(dim=0).values
        values = self.value(observations, detached)
        value_loss = (values - (new_q_values - entropy_terms).detach()).pow(2).mean()
        policy_objective = entropy_terms - new_q_values
        divergence = torch.zeros((), device=self.device)
        if settings.use_brac:
            divergence = self.divergence(observations, new_actions, actions, detached)
            if settings.use_policy_regularisation:
                policy_objective = policy_objective + alpha * divergence
        policy_loss = (policy_objective.mean()
                       + settings.policy_mean_reg_weight * mean.pow(2).mean()
                       + settings.policy_std_reg_weight * log_std.pow(2).mean())
        self._step(("value", "policy"), value_loss + policy_loss)
        self.q_networks.requires_grad_(True)
        self.dual_critic.requires_grad_(True)
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
            "dual_critic_loss": dual_critic_loss.detach(),
            "alpha": self.alpha.value.clone(),
            "divergence": mean_divergence,
            "q_prediction": q_values.detach().mean(),
            "v_prediction": values.detach().mean(),
            "log_prob": log_probs.detach().mean(),
            "policy_mean": mean.detach().mean(),
            "policy_log_std": log_std.detach().mean(),
            "latent_spread": latents.detach().std(dim=0, unbiased=False).mean(),
        }
        return metrics
