"""Multi-layer perceptrons with the initialisation the original code used (rlkit style).

Hidden layers use ReLU, weights uniform in +-1/sqrt(fan_in) and biases 0.1; the last layer's
weights and biases are uniform in +-``last_layer_init`` (3e-3). Spec: borel.md section 1.5 (the
original used the output size as "fan-in" by mistake; here it is the input size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

HIDDEN_BIAS = 0.1
LAST_LAYER_INIT = 3e-3


def init_hidden_layer(layer: nn.Linear) -> None:
    bound = 1.0 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.constant_(layer.bias, HIDDEN_BIAS)


def init_last_layer(layer: nn.Linear, bound: float = LAST_LAYER_INIT) -> None:
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.uniform_(layer.bias, -bound, bound)


class MLP(nn.Module):
    """``input_dim -> hidden_sizes (ReLU) -> output_dim``: (..., input_dim) -> (..., output_dim).

    With ``output_dim=None`` the network ends after the last hidden layer (a trunk).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_sizes: Sequence[int],
        output_dim: int | None,
        last_layer_init: float = LAST_LAYER_INIT,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden_sizes:
            linear = nn.Linear(width, size)
            init_hidden_layer(linear)
            layers += [linear, nn.ReLU()]
            width = size
        if output_dim is not None:
            head = nn.Linear(width, output_dim)
            init_last_layer(head, last_layer_init)
            layers.append(head)
            width = output_dim
        self.network = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)
