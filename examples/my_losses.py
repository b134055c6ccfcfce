"""Two ways to bring your own loss to lossbench, neither of which edits lossbench.

    python -m lossbench loss=custom loss._target_=my_losses.LogCosh               # plain class
    python -m lossbench task=binary loss=custom loss._target_=my_losses.PolyLoss  # registered
(run from this folder, or put it on PYTHONPATH).
"""

import torch
import torch.nn.functional as F
from torch import nn

from lossbench.losses import register_loss


class LogCosh(nn.Module):
    """log(cosh(prediction - target)): quadratic near zero, linear far away, smooth everywhere.

    A plain nn.Module: lossbench hands it the raw head output and the task's natural labels.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = prediction - target
        loss = diff + F.softplus(-2 * diff) - torch.log(torch.tensor(2.0))
        return loss.mean() if self.reduction == "mean" else loss.sum()


@register_loss("poly1", tasks="binary", input="raw", target="float", paper="Leng et al. 2022")
class PolyLoss(nn.Module):
    """Poly-1 loss: BCE on logits plus epsilon (1 - p_t); the decorator declares its contract."""

    def __init__(self, epsilon: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.epsilon, self.reduction = epsilon, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = torch.sigmoid(logits) * targets + torch.sigmoid(-logits) * (1 - targets)
        loss = bce + self.epsilon * (1 - p_t)
        return loss.mean() if self.reduction == "mean" else loss.sum()
