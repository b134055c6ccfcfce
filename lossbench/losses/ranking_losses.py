"""Pairwise ranking losses: each builds the batch's ordered pairs from its float targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.losses.registry import Param, register_loss

# A loss over a variable number of pairs has no per-sample "none" reduction.
PAIR_REDUCTION = Param("mean", kind="str", choices=("mean", "sum"))


def batch_pairs(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Scores of both sides of every pair i < j and sign(y_i - y_j); 0 marks a tie.

    Ties are weighted out rather than indexed out, so no step waits on the host.
    """
    i, j = torch.triu_indices(len(scores), len(scores), 1, device=scores.device)
    return scores[i], scores[j], torch.sign(targets[i] - targets[j]).to(scores.dtype)


def reduce_pairs(losses: Tensor, signs: Tensor, reduction: str) -> Tensor:
    """Sum or mean over the non-tied pairs; 0 (on the graph) when every pair ties."""
    kept = signs.abs()
    total = (losses * kept).sum()
    return total if reduction == "sum" else total / kept.sum().clamp_min(1)


class _PairLoss(nn.Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"loss.reduction must be mean or sum, got {reduction!r}")
        self.reduction = reduction


@register_loss(
    "margin_ranking", tasks="ranking", input="raw", target="float",
    params={"margin": Param(1.0, low=0.0), "reduction": PAIR_REDUCTION},
)
class PairwiseMarginRankingLoss(_PairLoss):
    """torch's MarginRankingLoss on the batch's pairs: max(0, -sign (s_i - s_j) + margin)."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = margin

    def forward(self, scores: Tensor, targets: Tensor) -> Tensor:
        first, second, signs = batch_pairs(scores, targets)
        losses = F.margin_ranking_loss(first, second, signs, margin=self.margin, reduction="none")
        return reduce_pairs(losses, signs, self.reduction)


@register_loss(
    "ranknet", tasks="ranking", input="raw", target="float", paper="Burges et al. 2005",
    params={"reduction": PAIR_REDUCTION},
)
class RankNetLoss(_PairLoss):
    """RankNet: logistic loss of P(i above j) = sigmoid(s_i - s_j), softplus(-sign (s_i - s_j))."""

    def forward(self, scores: Tensor, targets: Tensor) -> Tensor:
        first, second, signs = batch_pairs(scores, targets)
        return reduce_pairs(F.softplus(-signs * (first - second)), signs, self.reduction)
