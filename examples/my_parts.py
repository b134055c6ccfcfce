"""A user's own model, LR schedule and callback, importable as `my_parts` (run from examples/).

    python -m lossbench model._target_=my_parts.ResidualMLP +model.width=32
    python -m lossbench scheduler._target_=my_parts.warmup_then_constant +scheduler.warmup=5
    python -m lossbench +callbacks.grad_norm._target_=my_parts.PrintGradNorm
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn


class ResidualMLP(nn.Module):
    """Two residual blocks on tabular features; lossbench passes in_features and out_features."""

    def __init__(self, in_features: int, out_features: int, width: int = 64) -> None:
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
            for _ in range(2)
        )
        self.out = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def warmup_then_constant(
    optimizer: torch.optim.Optimizer, warmup: int = 5,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over `warmup` epochs, then the optimizer's learning rate."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: min(1.0, (epoch + 1) / warmup))


class PrintGradNorm(pl.Callback):
    """Prints the gradient norm of the first step of each epoch (a per-batch hook, so lossbench
    gives it one Lightning step per batch)."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.fit_loop.epoch_loop.batch_idx == 0:
            grads = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
            print(f"epoch {trainer.current_epoch}: grad norm {torch.stack(grads).norm():.3g}")
