"""lossbench's own models (conf/model/*.yaml name them by `_target_`; lossbench.parts builds
them like a user's): an MLP, and the layer that normalises uint8 images inside the model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class MLP(nn.Sequential):
    """Linear layers with an activation (and optional dropout) between them."""

    def __init__(
        self, in_features: int, out_features: int, hidden_dims: list[int],
        dropout: float = 0.0, activation: str = "relu",
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


class NormalizeImages(nn.Module):
    """uint8 images -> per-channel standardised floats, on the device, inside the model."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], flatten: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)
        self.flatten = flatten

    def forward(self, x: Tensor) -> Tensor:
        x = (x.float() - self.mean) / self.std
        return x.flatten(1) if self.flatten else x
