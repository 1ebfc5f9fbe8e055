"""Training of the VariBAD belief model: one Adam over the encoder and every decoder.

``update(batch)`` takes one gradient step on

    loss = mean_b (w_rew R_b + w_state S_b + w_kl K_b + w_task Tk_b)

(the terms of :meth:`models.vae.VAE.loss_terms`) and returns the batch means of the terms as
scalar tensors on the device.
"""

from __future__ import annotations

from typing import Any

import torch

from models.vae import VAE
from utils.config import load_saved_config
from utils.errors import UserError
from utils.runs import RunDirectory
from utils.stage_configs import VAEArchitectureConfig, VAEConfig

Batch = dict[str, torch.Tensor]


class VAETrainer:
    """Optimiser and loss weights of a :class:`VAE`."""

    def __init__(
        self,
        vae: VAE,
        lr: float = 3e-4,
        kl_weight: float = 0.05,
        reward_loss_weight: float = 1.0,
        state_loss_weight: float = 1.0,
        task_loss_weight: float = 1.0,
        kl_to_gauss_prior: bool = False,
        max_grad_norm: float | None = None,
    ) -> None:
        self.vae = vae
        self.optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
        self.weights = {"reward": reward_loss_weight, "state": state_loss_weight,
                        "kl": kl_weight, "task": task_loss_weight}
        self.kl_to_gauss_prior = kl_to_gauss_prior
        self.max_grad_norm = max_grad_norm
        self.num_updates = 0

    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self.vae.loss_terms(batch, self.kl_to_gauss_prior, generator)
        total = sum(self.weights[name] * value for name, value in terms.items()).mean()
        return total, terms

    def update(self, batch: Batch, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """One gradient step; returns ``loss`` and the mean per-trajectory terms as detached
        scalar tensors on the device (no host synchronisation)."""
        total, terms = self.loss(batch, generator)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.vae.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.num_updates += 1
        metrics = {"loss": total.detach()}
        metrics.update({f"{name}_loss" if name != "kl" else "kl": value.detach().mean()
                        for name, value in terms.items()})
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"vae": self.vae.state_dict(), "optimizer": self.optimizer.state_dict(),
                "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vae.load_state_dict(state["vae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])


def build_vae(config: VAEArchitectureConfig, observation_dim: int, action_dim: int,
              task_dim: int, num_states: int | None) -> VAE:
    """The belief model described by the architecture fields of a stage config."""
    return VAE(
        observation_dim, action_dim, config.latent_dim, config.gru_hidden_size,
        config.action_embedding_size, config.state_embedding_size, config.reward_embedding_size,
        config.reward_decoder, config.reward_decoder_inputs, config.reward_decoder_hidden_sizes,
        decode_state=config.decode_state,
        state_decoder_hidden_sizes=config.state_decoder_hidden_sizes,
        task_dim=task_dim if config.decode_task else None, num_states=num_states,
    )


def load_vae_run(run: RunDirectory, env_type: str, device: torch.device
                 ) -> tuple[VAE, VAEConfig, dict[str, Any]]:
    """The frozen belief model of a stage-2 run trained on ``env_type`` (latest checkpoint,
    evaluation mode, no gradients), the run's config and its ``model.json`` (the data
    dimensions)."""
    config = load_saved_config(VAEConfig, run.config_path)
    if config.env_type != env_type:
        raise UserError(f"VAE run {run.path} was trained on {config.env_type!r}, not "
                        f"{env_type!r}")
    dimensions = run.read_json("model.json")
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        raise UserError(f"VAE run {run.path} has no checkpoint yet")
    vae = build_vae(config, dimensions["observation_dim"], dimensions["action_dim"],
                    dimensions["task_dim"], dimensions["num_states"]).to(device)
    vae.load_state_dict(checkpoint["trainer"]["vae"])
    vae.eval()
    vae.requires_grad_(False)
    return vae, config, dimensions


@torch.no_grad()
def reward_predictions(vae: VAE, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Beliefs along trajectories and the expected reward of each transition j under the belief
    held before it (mean latent t = j): returns means (B, T + 1, L) and predictions (B, T)."""
    means, _ = vae.encoder(batch["actions"], batch["rewards"], batch["next_observations"])
    predictions = vae.reward_decoder.aligned(
        means[:, :-1], batch["observations"], batch["actions"], batch["next_observations"],
        batch.get("cells"))
    return means, vae.reward_decoder.mean_reward(predictions)
