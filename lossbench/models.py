"""Models for tabular inputs; the head is sized by the task."""

from __future__ import annotations

from torch import nn

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


def build_model(cfg: dict, in_features: int, out_features: int) -> nn.Module:
    """The model named by `cfg['name']` (validated beforehand)."""
    name = cfg["name"]
    if name == "mlp":
        return MLP(
            in_features, out_features, list(cfg["hidden_dims"]),
            float(cfg.get("dropout", 0.0)), cfg.get("activation", "relu"),
        )
    raise ValueError(f"unknown model '{name}' (choose from: mlp)")
