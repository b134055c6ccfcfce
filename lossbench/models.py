"""Models: an MLP for tabular inputs, a CNN or ResNet-18 for images; the head sized by the task."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lossbench.data.tabular import TaskData

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
MODELS = ("mlp", "cnn", "resnet18")


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


def build_model(cfg: dict[str, Any], data: TaskData, out_features: int) -> nn.Module:
    """The model named by `cfg['name']`, fitted to the data's input shape."""
    name = cfg["name"]
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}' (choose from: {', '.join(MODELS)})")
    if not data.is_image:
        if name != "mlp":
            raise ValueError(f"model '{name}' needs image data; use model=mlp for {data.dataset}")
        return _mlp(cfg, data.num_features, out_features)
    channels = data.x_train.shape[1]
    normalize = NormalizeImages(data.input_mean, data.input_std, flatten=name == "mlp")
    if name == "mlp":
        return nn.Sequential(normalize, _mlp(cfg, data.x_train[0].numel(), out_features))
    from lossbench.vision_models import build_vision_model

    accepted = ("width", "dropout") if name == "cnn" else ("weights",)
    kwargs = {k: v for k, v in cfg.items() if k in accepted}
    return nn.Sequential(normalize, build_vision_model(name, channels, out_features, **kwargs))


def _mlp(cfg: dict[str, Any], in_features: int, out_features: int) -> MLP:
    return MLP(
        in_features, out_features, list(cfg["hidden_dims"]),
        float(cfg.get("dropout", 0.0)), cfg.get("activation", "relu"),
    )
