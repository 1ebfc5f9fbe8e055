"""The VAE's ELBO: vectorised all-pairs decoding against a loop over latents, at the semi-circle's
settings (T = 120 steps, 8 tasks x 8 trajectories per batch, GRU 128, reward decoder on (z, s')).

Two loop references compute the same loss (checked below), timed forward + backward:

- the pair loop (the tests' reference): one decoder call per (latent t, transition j), measured on
  2 trajectories and scaled linearly to the batch (its cost is linear in the number of pairs);
- the latent loop: for every latent t, decode all T transitions of the batch at once.

On a CPU the all-pairs tensors (B x (T+1) x T x hidden, 119 MB each here) are memory-bound, so
the latent loop comes close to the vectorised form; on a GPU the vectorised form is one kernel per
layer. The vectorised form and the latent loop are timed in alternating turns (medians).

Run: python -m bench.vae_loss [--device cpu] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse

import torch

from bench.common import Section, device_description, format_ratio, interleaved, ratio, table
from models.vae import VAE, gaussian_kl
from utils.seeding import keep_freed_memory, resolve_device

BATCH, HORIZON, OBSERVATION_DIM, ACTION_DIM = 64, 120, 3, 2


def loop_loss(vae: VAE, batch: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
    """The same ELBO (all trajectories full length) with one decoder call per latent."""
    means, log_variances = vae.encoder(batch["actions"], batch["rewards"],
                                       batch["next_observations"])
    latents = means + (0.5 * log_variances).exp() * noise
    horizon = batch["rewards"].shape[1]
    decoder = vae.reward_decoder.network
    weight = torch.cat([decoder.latent_layer.weight, decoder.feature_layer.weight], dim=1)
    features = vae.reward_decoder.state_embedding(batch["next_observations"])
    reward_loss = torch.zeros(batch["rewards"].shape[0], device=noise.device)
    for step in range(horizon + 1):
        latent = latents[:, step : step + 1].expand(-1, horizon, -1)
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
    size, horizon = batch["rewards"].shape[:2]
    reward_loss = torch.zeros(size, device=noise.device)
    for index in range(size):
        for step in range(horizon + 1):
            for transition in range(horizon):
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


def run(quick: bool, device: torch.device, repeats: int = 5) -> Section:
    """The three ELBO computations side by side; quick: 4 trajectories of 10 steps."""
    batch_size, horizon = (4, 10) if quick else (BATCH, HORIZON)
    repeats = 1 if quick else repeats
    torch.manual_seed(0)
    vae = VAE(OBSERVATION_DIM, ACTION_DIM, 5, 128, 16, 32, 16, "deterministic", ["next_state"],
              [32, 32]).to(device)
    batch = {
        "observations": torch.randn(batch_size, horizon, OBSERVATION_DIM, device=device),
        "actions": torch.rand(batch_size, horizon, ACTION_DIM, device=device) * 2 - 1,
        "rewards": (torch.rand(batch_size, horizon, 1, device=device) < 0.2).float(),
        "next_observations": torch.randn(batch_size, horizon, OBSERVATION_DIM, device=device),
        "lengths": torch.full((batch_size,), horizon, device=device),
    }
    noise = torch.randn(batch_size, horizon + 1, 5, device=device,
                        generator=torch.Generator(device=device).manual_seed(1))
    torch.testing.assert_close(vectorised_loss(vae, batch, 1), loop_loss(vae, batch, noise),
                               rtol=1e-4, atol=1e-3)
    few = {name: value[:2] for name, value in batch.items()}
    torch.testing.assert_close(pair_loop_loss(vae, few, noise[:2]),
                               loop_loss(vae, few, noise[:2]), rtol=1e-4, atol=1e-3)

    def backward(loss_of) -> None:
        vae.zero_grad()
        loss_of().backward()

    timings = interleaved({
        "vectorised": lambda: backward(lambda: vectorised_loss(vae, batch, 1)),
        "latent loop": lambda: backward(lambda: loop_loss(vae, batch, noise)),
    }, repeats, device)
    pairs = interleaved({"pair loop": lambda: backward(
        lambda: pair_loop_loss(vae, few, noise[:2]))}, 1, device, warmup=False)["pair loop"]
    scale = batch_size / 2
    pairs.wall, pairs.cpu = [pairs.wall[0] * scale], [pairs.cpu[0] * scale]
    vectorised = timings["vectorised"]
    pair_ratio = ratio(pairs, vectorised)
    loop_ratio = ratio(timings["latent loop"], vectorised)
    lines = [
        f"`python -m bench.vae_loss`: ELBO forward + backward, {batch_size} trajectories x T = "
        f"{horizon} ({batch_size * (horizon + 1) * horizon:,} latent-transition pairs), GRU 128, "
        f"reward decoder on (z, s'); median of {repeats} alternating round(s). The pair loop is "
        "timed on 2 trajectories and scaled to the batch.", "",
        *table(["", "ms (wall)"], [
            ["vectorised (all pairs broadcast)", f"{vectorised.wall_median * 1e3:,.1f}"],
            ["loop over latents", f"{timings['latent loop'].wall_median * 1e3:,.1f}"],
            ["loop over pairs (the tests' reference)", f"{pairs.wall_median * 1e3:,.1f}"],
        ]), "",
        f"**Vectorised vs pair loop: {format_ratio(pair_ratio, device)}**; vs the loop over "
        f"latents: {format_ratio(loop_ratio, device)}.",
    ]
    return Section("Stage 2: the VAE loss, vectorised vs loops", lines, {
        "VAE loss vectorised vs per-pair loop": f"{pair_ratio[0]:,.0f}x",
        "VAE loss vectorised vs loop over latents": f"{loop_ratio[0]:.2f}x"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    arguments = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(arguments.threads)
    device = resolve_device(arguments.device)
    print(device_description(device))
    print(run(arguments.quick, device, arguments.repeats).markdown())


if __name__ == "__main__":
    main()
