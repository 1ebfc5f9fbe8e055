"""Stacks of K independent networks evaluated in one batched matrix product.

An :class:`EnsembleMLP` with K members maps inputs (K, ..., input_dim) to (K, ..., output_dim);
member k only ever sees slice k and owns its own weights, so K agents train as if separate. With
K = 1 it is an ordinary network. Initialisation per member matches :mod:`models.mlp`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from models.mlp import HIDDEN_BIAS, LAST_LAYER_INIT


class EnsembleLinear(nn.Module):
    """K affine maps (K, N, input_dim) -> (K, N, output_dim); weights (K, input_dim, output_dim)."""

    def __init__(self, num_members: int, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.num_members, self.input_dim, self.output_dim = num_members, input_dim, output_dim
        self.weight = nn.Parameter(torch.empty(num_members, input_dim, output_dim))
        self.bias = nn.Parameter(torch.empty(num_members, 1, output_dim))
        self.init_hidden()

    def init_hidden(self) -> None:
        """Uniform +-1/sqrt(input_dim) weights and biases 0.1 (a hidden layer)."""
        bound = 1.0 / math.sqrt(self.input_dim) if self.input_dim else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.constant_(self.bias, HIDDEN_BIAS)

    def init_uniform(self, bound: float) -> None:
        """Uniform +-bound weights and biases (an output layer)."""
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # Inputs already (K, N, input_dim) are used as they are: a reshape would return a view,
        # and the in-place ReLU that follows a hidden layer would then pay autograd's handling
        # of in-place changes to views (bench/results.md, "hot spots").
        flat = inputs if inputs.dim() == 3 else inputs.reshape(self.num_members, -1,
                                                                self.input_dim)
        if self.output_dim == 1 and self.num_members > 1 and flat.device.type == "cpu":
            # One output column: a dot product per row. On CPU a batched matrix-vector product
            # through bmm is several times slower (bench/results.md, "hot spots").
            weight = self.weight.view(self.num_members, 1, self.input_dim)
            outputs = torch.linalg.vecdot(flat, weight).unsqueeze(-1) + self.bias
        else:
            outputs = torch.baddbmm(self.bias, flat, self.weight)
        if inputs.dim() == 3:
            return outputs
        return outputs.reshape(self.num_members, *inputs.shape[1:-1], self.output_dim)


class EnsembleMLP(nn.Module):
    """K MLPs ``input_dim -> hidden_sizes (ReLU) -> output_dim`` stacked along dimension 0.

    With ``output_dim=None`` the stack ends after the last hidden layer (a trunk). The ReLUs
    work in place on the fresh outputs of the layers before them (one pass over each hidden
    activation fewer; autograd's ReLU backward needs only its output).
    """

    def __init__(
        self,
        num_members: int,
        input_dim: int,
        hidden_sizes: Sequence[int],
        output_dim: int | None,
        last_layer_init: float = LAST_LAYER_INIT,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden_sizes:
            layers += [EnsembleLinear(num_members, width, size), nn.ReLU(inplace=True)]
            width = size
        if output_dim is not None:
            head = EnsembleLinear(num_members, width, output_dim)
            head.init_uniform(last_layer_init)
            layers.append(head)
            width = output_dim
        self.network = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() == 3:
            return self.network(inputs)
        # Flattened once here, so that every layer sees (K, N, dim) and returns a fresh tensor.
        flat = inputs.reshape(self.num_members, -1, inputs.shape[-1])
        return self.network(flat).reshape(self.num_members, *inputs.shape[1:-1],
                                          self.output_dim)


def member_state(module: nn.Module, member: int) -> dict[str, torch.Tensor]:
    """The parameters of one member (slice ``member`` of every tensor), K kept as 1."""
    return {name: value[member : member + 1].clone() for name, value in module.state_dict().items()}
