"""Image models for lossbench: a small CNN and a CIFAR-sized ResNet-18."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

log = logging.getLogger(__name__)

VISION_MODELS = ("cnn", "resnet18")


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv-ReLU-pool: halves the spatial size, the usual small-image building block."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCNN(nn.Module):
    """Two conv blocks plus a linear head; adaptive pooling makes it work for any input size."""

    def __init__(
        self, in_channels: int, out_features: int, width: int = 32, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(in_channels, width),
            _conv_block(width, 2 * width),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width * 16, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a cached state_dict (or a checkpoint wrapping one) without executing pickled code."""
    if not path.is_file():
        raise FileNotFoundError(
            f"resnet18 weights file not found: {path}; "
            "pass weights=None to train from scratch or point weights at a saved state_dict"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"resnet18 weights file {path} does not hold a state_dict")
    return state


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load every tensor whose name and shape match; fc (and an ImageNet 7×7 conv1) are skipped."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"resnet18 weights file {path} has no tensors matching the model")
    skipped = sorted(k for k in own if k not in usable)
    model.load_state_dict(usable, strict=False)
    if skipped:
        log.info("resnet18 weights %s: kept fresh init for %s", path, ", ".join(skipped))


def resnet18_cifar(
    out_features: int, in_channels: int = 3, weights: str | Path | None = None
) -> nn.Module:
    """torchvision ResNet-18 for 32×32 inputs: 3×3 stride-1 stem and no max-pool keep resolution."""
    model = torchvision.models.resnet18(weights=None, num_classes=out_features)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    if weights is not None:
        path = Path(weights).expanduser()
        _load_matching(model, _read_state_dict(path), path)
    return model


def build_vision_model(name: str, in_channels: int, num_outputs: int, **kwargs: Any) -> nn.Module:
    """Build a model by config name, so Hydra configs only need a string."""
    key = name.strip().lower()
    if key == "cnn":
        return SmallCNN(in_channels, num_outputs, **kwargs)
    if key == "resnet18":
        return resnet18_cifar(num_outputs, in_channels=in_channels, **kwargs)
    raise ValueError(f"unknown vision model {name!r}; allowed: {', '.join(VISION_MODELS)}")
