"""The VAE's ELBO: vectorised all-pairs decoding against a loop over latents, at the semi-circle's
settings (T = 120 steps, 8 tasks x 8 trajectories per batch, GRU 128, reward decoder on (z, s')).

Two loop references compute the same loss (checked below), timed forward + backward:

- the pair loop (the tests' reference): one decoder call per (latent t, transition j), measured on
  2 trajectories and scaled linearly to the batch (its cost is linear in the number of pairs);
- the latent loop: for every latent t, decode all T transitions of the batch at once.

On a CPU the all-pairs tensors (B x (T+1) x T x hidden) are memory-bound, so the latent loop is
about as fast as the vectorised form; on a GPU the vectorised form is one kernel per layer.

Run: python -m bench.vae_loss [--device cpu] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from models.vae import VAE, gaussian_kl
from utils.seeding import resolve_device

BATCH, HORIZON, OBSERVATION_DIM, ACTION_DIM = 64, 120, 3, 2


def loop_loss(vae: VAE, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
    """The same ELBO (all trajectories full length) with one decoder call per latent."""
    means, log_variances = vae.encoder(batch["actions"], batch["rewards"],
                                       batch["next_observations"])
    latents = means + (0.5 * log_variances).exp() * noise
    decoder = vae.reward_decoder.network
    weight = torch.cat([decoder.latent_layer.weight, decoder.feature_layer.weight], dim=1)
    features = vae.reward_decoder.state_embedding(batch["next_observations"])
    reward_loss = torch.zeros(batch["rewards"].shape[0], device=noise.device)
    for step in range(HORIZON + 1):
        latent = latents[:, step : step + 1].expand(-1, HORIZON, -1)
        hidden = torch.relu(torch.nn.functional.linear(torch.cat([latent, features], -1), weight,
                                                       decoder.latent_layer.bias))
        prediction = decoder.rest(hidden)
        reward_loss = reward_loss + ((prediction - batch["rewards"]) ** 2).sum(dim=(1, 2))
    start = torch.zeros_like(means[:, :1])
    kl = gaussian_kl(means, log_variances, torch.cat([start, means[:, :-1]], 1),
                     torch.cat([start, log_variances[:, :-1]], 1)).sum(1)
    return (reward_loss + 0.05 * kl).mean()


def pair_loop_loss(vae: VAE, batch: dict[str, torch.Tensor], noise: torch.Tensor
                   ) -> torch.Tensor:
    """The same ELBO with one decoder call per (latent, transition) pair."""
    means, log_variances = vae.encoder(batch["actions"], batch["rewards"],
                                       batch["next_observations"])
    latents = means + (0.5 * log_variances).exp() * noise
    decoder = vae.reward_decoder
    size = batch["rewards"].shape[0]
    reward_loss = torch.zeros(size, device=noise.device)
    for index in range(size):
        for step in range(HORIZON + 1):
            for transition in range(HORIZON):
                prediction = decoder.aligned(
                    latents[index, step], batch["observations"][index, transition],
                    batch["actions"][index, transition],
                    batch["next_observations"][index, transition])
                error = (prediction - batch["rewards"][index, transition, 0]) ** 2
                reward_loss = reward_loss + torch.nn.functional.one_hot(
                    torch.tensor(index), size).float() * error
    start = torch.zeros_like(means[:, :1])
    kl = gaussian_kl(means, log_variances, torch.cat([start, means[:, :-1]], 1),
                     torch.cat([start, log_variances[:, :-1]], 1)).sum(1)
    return (reward_loss + 0.05 * kl).mean()


def vectorised_loss(vae: VAE, batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
    terms = vae.loss_terms(batch, generator=torch.Generator(device=batch["rewards"].device
                                                            ).manual_seed(seed))
    return (terms["reward"] + 0.05 * terms["kl"]).mean()


def timed(function, repeats: int, device: torch.device) -> float:
    function()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    arguments = parser.parse_args()
    device = resolve_device(arguments.device)
    torch.set_num_threads(arguments.threads)
    torch.manual_seed(0)
    vae = VAE(OBSERVATION_DIM, ACTION_DIM, 5, 128, 16, 32, 16, "deterministic", ["next_state"],
              [32, 32]).to(device)
    batch = {
        "observations": torch.randn(BATCH, HORIZON, OBSERVATION_DIM, device=device),
        "actions": torch.rand(BATCH, HORIZON, ACTION_DIM, device=device) * 2 - 1,
        "rewards": (torch.rand(BATCH, HORIZON, 1, device=device) < 0.2).float(),
        "next_observations": torch.randn(BATCH, HORIZON, OBSERVATION_DIM, device=device),
        "lengths": torch.full((BATCH,), HORIZON, device=device),
    }
    noise = torch.randn(BATCH, HORIZON + 1, 5, generator=torch.Generator(device=device
                                                                        ).manual_seed(1),
                        device=device)
    vectorised_value = vectorised_loss(vae, batch, 1)
    loop_value = loop_loss(vae, batch, noise)
    torch.testing.assert_close(vectorised_value, loop_value, rtol=1e-4, atol=1e-3)

    def run_vectorised() -> None:
        vae.zero_grad()
        vectorised_loss(vae, batch, 1).backward()

    def run_loop() -> None:
        vae.zero_grad()
        loop_loss(vae, batch, noise).backward()

    vectorised_time = timed(run_vectorised, arguments.repeats, device)
    loop_time = timed(run_loop, arguments.repeats, device)
    few = {name: value[:2] for name, value in batch.items()}
    torch.testing.assert_close(pair_loop_loss(vae, few, noise[:2]), loop_loss(vae, few,
                                                                                 noise[:2]),
                               rtol=1e-4, atol=1e-3)

    def run_pairs() -> None:
        vae.zero_grad()
        pair_loop_loss(vae, few, noise[:2]).backward()

    pair_time = timed(run_pairs, 1, device) * BATCH / 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} thread(s)")
    print(f"device: {name}; batch {BATCH} trajectories x T = {HORIZON}, "
          f"{BATCH * (HORIZON + 1) * HORIZON:,} latent-transition pairs")
    print(f"vectorised ELBO (forward + backward):   {vectorised_time * 1e3:8.1f} ms")
    print(f"pair loop, one decoder call per pair:   {pair_time * 1e3:8.1f} ms "
          "(measured on 2 trajectories, scaled to the batch)")
    print(f"loop over latents:                      {loop_time * 1e3:8.1f} ms")
    print(f"ratio vectorised vs pair loop:   {pair_time / vectorised_time:7.1f}x")
    print(f"ratio vectorised vs latent loop: {loop_time / vectorised_time:7.1f}x")


if __name__ == "__main__":
    main()
