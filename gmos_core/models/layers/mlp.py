"""MLPs: the SAM-style ``layers.{i}`` MLP of the heads and the ViT ``fc1/fc2`` MLP of DINOv2/Pi3."""
from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Linear stack with an activation after every layer except the last (keys ``layers.{i}.*``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 activation: type[nn.Module] = nn.ReLU, sigmoid_output: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs at least one layer, got num_layers={num_layers}")
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = self.act(layer(x)) if i < self.num_layers - 1 else layer(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class ViTMlp(nn.Module):
    """fc1 -> exact GELU -> fc2 (DINOv2 / Pi3 ``Mlp``; dropout 0 at inference)."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
