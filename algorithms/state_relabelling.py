"""State Relabelling: stored trajectories become BAMDP data on hyper-states [s, mu, log sigma^2].

The frozen encoder runs over each whole trajectory from the prior, never resetting the GRU inside
a meta-episode (spec borel.md 5.2, with the no-reset fix of 9.7). With beliefs b_t = (mu_t,
log sigma_t^2), t = 0..T (b_0 the prior, b_{t+1} after transition t):

    hyper_observations[t]      = [s_t,     mu_t,     log sigma_t^2]
    hyper_next_observations[t] = [s'_t,    mu_{t+1}, log sigma_{t+1}^2]

so the agent at step t acts on its observation and the belief after the t transitions before it,
exactly as in evaluation. Optionally the reward becomes the belief reward
R+_t = E_{z ~ b_t}[r-hat(z, s_t, a_t, s'_t)], estimated from samples of the belief held before
the transition.

The result is cached beside the VAE run (``<vae-run>/hyperstates/``) with a manifest naming its
sources (dataset files with sizes and modification times, the VAE checkpoint, the options); the
cache is reused while the manifest matches and rebuilt otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.vae import VAE
from utils.datasets import TaskDataset, load_task_dataset, save_task_dataset, task_file
from utils.errors import UserError
from utils.io import atomic_write_text, remove_stale_temporaries

MANIFEST = "manifest.json"
CACHE_VERSION = 1


def hyperstates_from_beliefs(observations: torch.Tensor, next_observations: torch.Tensor,
                             beliefs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hyper-observations [s_t, b_t] and hyper-next-observations [s'_t, b_{t+1}] (N, T,
    obs_dim + 2L) from transitions (N, T, obs_dim) and beliefs b_0..b_T (N, T + 1, 2L)."""
    return (torch.cat([observations, beliefs[:, :-1]], dim=-1),
            torch.cat([next_observations, beliefs[:, 1:]], dim=-1))


@torch.no_grad()
def sampled_belief_rewards(vae: VAE, beliefs: torch.Tensor, observations: torch.Tensor,
                           actions: torch.Tensor, next_observations: torch.Tensor,
                           cells: torch.Tensor | None, num_samples: int,
                           generator: torch.Generator) -> torch.Tensor:
    """R+_t = E_{z ~ b_t}[r-hat(z, s_t, a_t, s'_t)] (N, T, 1), estimated from ``num_samples``
    samples of the belief held before each transition (``beliefs`` (N, T + 1, 2L))."""
    latent_dim = vae.latent_dim
    means, log_variances = beliefs[:, :-1, :latent_dim], beliefs[:, :-1, latent_dim:]
    noise = torch.randn((num_samples, *means.shape), generator=generator,
                        device=means.device)
    latents = means + (0.5 * log_variances).exp() * noise
    predictions = vae.reward_decoder.aligned(latents, observations, actions, next_observations,
                                             cells)
    return vae.reward_decoder.mean_reward(predictions).mean(0)[..., None]


@torch.no_grad()
def encoder_beliefs(vae: VAE, actions: torch.Tensor, rewards: torch.Tensor,
                    next_observations: torch.Tensor) -> torch.Tensor:
    """Beliefs b_0..b_T (N, T + 1, 2L) of the encoder over whole trajectories, from the prior."""
    means, log_variances = vae.encoder(actions, rewards, next_observations)
    return torch.cat([means, log_variances], dim=-1)


@torch.no_grad()
def hyperstate_arrays(
    vae: VAE, dataset: TaskDataset, device: torch.device, belief_reward_samples: int = 0,
    cells: np.ndarray | None = None, chunk: int = 256, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Hyper-observations and hyper-next-observations (N, T, obs_dim + 2L) of one task's
    trajectories, and the belief rewards (N, T, 1) when ``belief_reward_samples`` > 0."""
    generator = torch.Generator(device=device).manual_seed(seed)
    observations, next_observations, rewards = [], [], []
    for start in range(0, dataset.num_trajectories, chunk):
        rows = slice(start, start + chunk)
        batch = {name: torch.as_tensor(getattr(dataset, name)[rows], device=device)
                 for name in ("observations", "actions", "rewards", "next_observations")}
        beliefs = encoder_beliefs(vae, batch["actions"], batch["rewards"],
                                  batch["next_observations"])
        hyper_observations, hyper_next_observations = hyperstates_from_beliefs(
            batch["observations"], batch["next_observations"], beliefs)
        observations.append(hyper_observations.cpu())
        next_observations.append(hyper_next_observations.cpu())
        if belief_reward_samples:
            row_cells = None if cells is None else torch.as_tensor(cells[rows], device=device)
            rewards.append(sampled_belief_rewards(
                vae, beliefs, batch["observations"], batch["actions"],
                batch["next_observations"], row_cells, belief_reward_samples, generator).cpu())
    mask = dataset.valid_mask()[..., None]
    hyper_observations = torch.cat(observations).numpy() * mask
    hyper_next_observations = torch.cat(next_observations).numpy() * mask
    belief_rewards = torch.cat(rewards).numpy() * mask if belief_reward_samples else None
    return (hyper_observations.astype(np.float32), hyper_next_observations.astype(np.float32),
            None if belief_rewards is None else belief_rewards.astype(np.float32))


@dataclass
class HyperstateCache:
    """The hyper-state datasets of one VAE run, keyed by the sources that produced them."""

    directory: Path

    @staticmethod
    def describe_sources(dataset_files: list[tuple[int, Path]], checkpoint: Path,
                         options: dict[str, Any]) -> dict[str, Any]:
        """What the cache depends on: every dataset file (seed, size, mtime), the VAE
        checkpoint (size, mtime) and the relabelling options."""
        def stamp(path: Path) -> dict[str, Any]:
            status = path.stat()
            return {"path": str(path.resolve()), "size": status.st_size,
                    "mtime_ns": status.st_mtime_ns}

        return {
            "version": CACHE_VERSION,
            "datasets": {str(seed): stamp(path) for seed, path in dataset_files},
            "vae_checkpoint": stamp(checkpoint),
            "options": options,
        }

    def is_valid(self, sources: dict[str, Any]) -> bool:
        manifest = self.directory / MANIFEST
        if not manifest.is_file():
            return False
        try:
            recorded = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            return False
        seeds = recorded.get("sources", {}).get("datasets", {})
        return recorded.get("sources") == sources and all(
            task_file(self.directory, int(seed)).is_file() for seed in seeds)

    def load(self, seeds: list[int], env_type: str) -> list[TaskDataset]:
        return [load_task_dataset(task_file(self.directory, seed), env_type) for seed in seeds]

    def store(self, seeds: list[int], datasets: list[TaskDataset], sources: dict[str, Any]
              ) -> None:
        """Write every task's hyper-state dataset, then the manifest (last, so that a crash in
        between leaves an invalid cache rather than a wrong one). Temporary files of a store
        that a kill interrupted are removed."""
        (self.directory / MANIFEST).unlink(missing_ok=True)
        remove_stale_temporaries(self.directory)
        for seed, dataset in zip(seeds, datasets, strict=True):
            save_task_dataset(task_file(self.directory, seed), dataset)
        atomic_write_text(self.directory / MANIFEST,
                          json.dumps({"sources": sources}, indent=2, sort_keys=True) + "\n")


def relabel_states(vae: VAE, datasets: list[TaskDataset], device: torch.device,
                   belief_reward_samples: int = 0, cell_index=None, seed: int = 0
                   ) -> list[TaskDataset]:
    """Every task's dataset with hyper-observations in place of observations (and belief rewards
    in place of rewards when asked)."""
    relabelled = []
    for index, dataset in enumerate(datasets):
        cells = None if cell_index is None else cell_index(dataset.next_observations)
        observations, next_observations, belief_rewards = hyperstate_arrays(
            vae, dataset, device, belief_reward_samples, cells, seed=seed + index)
        if not (np.all(np.isfinite(observations)) and np.all(np.isfinite(next_observations))):
            raise UserError("the VAE produced non-finite beliefs; it cannot relabel states")
        updates: dict[str, Any] = {"observations": observations,
                                   "next_observations": next_observations,
                                   "meta": {**dataset.meta, "hyperstates": True}}
        if belief_rewards is not None:
            updates["rewards"] = belief_rewards
        relabelled.append(replace(dataset, **updates))
    return relabelled
