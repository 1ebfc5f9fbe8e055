"""Pieces shared by the RL algorithms: target updates, per-member gradient clipping, and the
averaging of update metrics at log time."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """theta_target <- (1 - tau) theta_target + tau theta_source, for every parameter (one
    multi-tensor operation)."""
    targets, sources = list(target.parameters()), list(source.parameters())
    if len(targets) != len(sources):
        raise ValueError("polyak_update needs networks with the same parameters")
    torch._foreach_lerp_(targets, sources, tau)


@torch.no_grad()
def clip_member_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip the gradient of each ensemble member (slice 0 of every parameter) to ``max_norm``
    separately, so that K stacked agents clip exactly as K separate ones. Returns the norms (K,)."""
    parameters = [parameter for parameter in parameters if parameter.grad is not None]
    squared = sum(parameter.grad.flatten(1).pow(2).sum(dim=1) for parameter in parameters)
    norms = squared.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for parameter in parameters:
        parameter.grad.mul_(scale.view(-1, *([1] * (parameter.grad.dim() - 1))))
    return norms


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None
         ) -> None:
    """Zero the gradients, back-propagate ``loss`` into the optimiser's parameters only (no
    gradient is computed for any other network the loss passes through), clip per member if
    asked, and step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=[parameter for group in optimizer.param_groups
                          for parameter in group["params"]])
    if max_grad_norm is not None:
        for group in optimizer.param_groups:
            clip_member_grad_norm(group["params"], max_grad_norm)
    optimizer.step()


def mean_metrics(updates: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """The mean over ``updates`` of each metric (the keys of the first update; every update
    reports the same keys), as floats; the metrics are scalar tensors on the training device,
    averaged there and copied to the host at once (an empty list gives an empty dict)."""
    if not updates:
        return {}
    keys = list(updates[0])
    values = torch.stack([metrics[key] for metrics in updates for key in keys])
    means = values.view(len(updates), len(keys)).double().mean(dim=0)
    return dict(zip(keys, means.tolist(), strict=True))
