"""lossbench's own losses, written as torch writes its losses: a function for the math, a module."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.losses.registry import Param, register_loss


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class _Loss(nn.Module):
    """Holds `reduction`, the one knob every loss shares (as torch's `_Loss` does)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _reduce(torch.zeros(()), reduction)  # validate early, not at the first step
        self.reduction = reduction


GAMMA = Param(2.0, low=0.0)


def _check_alpha(alpha: float) -> None:
    if not (0.0 <= alpha <= 1.0 or alpha == -1):
        raise ValueError(f"loss.alpha must be in [0, 1] or -1 for none, got {alpha}")


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017, arXiv:1708.02002), the same as torchvision's.

    FL = -alpha_t (1 - p_t)^gamma log(p_t). `targets` are 0/1 floats of logits' shape;
    alpha=-1 disables class weighting. 1 - p_t is computed from sigmoids of ±logits, not as a
    difference, so logits of ±100 keep a finite value and gradient.
    """
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = ce
    if gamma != 0:
        one_minus_pt = torch.sigmoid(logits) * (1 - targets) + torch.sigmoid(-logits) * targets
        loss = ce * one_minus_pt**gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


@register_loss(
    "focal", tasks="binary", input="raw", target="float", paper="Lin et al. 2017",
    params={"alpha": Param(0.25, low=0.0, high=1.0, also=(-1.0,)), "gamma": GAMMA},
)
class SigmoidFocalLoss(_Loss):
    """Sigmoid focal loss on logits: down-weights easy examples so rare positives count."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        _check_alpha(alpha)
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, self.reduction)


def softmax_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float | Tensor = -1, gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    """Multiclass focal loss (Lin et al. 2017, arXiv:1708.02002): -alpha_t (1 - p_y)^gamma log p_y.

    Args:
        logits: (N, C) raw scores.
        targets: (N,) class indices.
        alpha: a (C,) tensor of per-class weights, alpha_t = alpha[y] (Lin et al.'s alpha_t, as
            cross_entropy's `weight=`); a number, one factor on every sample; or -1 for none.
        gamma: the focusing exponent; 0 gives cross entropy.
        reduction: 'none' (N,), 'sum', or 'mean': the plain mean over the N samples of
            alpha_t FL, as Lin et al. and torchvision normalise, not cross_entropy's weighted
            mean (which divides by the sum of alpha_t). At gamma=0, 'none' and 'sum' equal
            cross_entropy(weight=alpha), and 'mean' is its 'sum' / N.

    Returns:
        The loss, reduced as `reduction` says.
    """
    log_p = logits.log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
    loss = -log_p
    if gamma != 0:
        loss = loss * (-torch.expm1(log_p)).clamp_min(0) ** gamma
    if isinstance(alpha, Tensor):
        if alpha.shape != logits.shape[-1:]:
            raise ValueError(
                f"loss.alpha has {alpha.numel()} entries for {logits.shape[-1]} classes"
            )
        loss = alpha.to(loss.dtype)[targets] * loss
    elif alpha >= 0:
        loss = alpha * loss
    return _reduce(loss, reduction)


@register_loss(
    "focal", tasks="multiclass", input="raw", target="index", paper="Lin et al. 2017",
    params={"alpha": Param(
        -1.0, low=0.0, high=1.0, also=(-1.0,),
        alternative=Param(None, kind="floats", low=0.0),  # one weight per class
    ), "gamma": GAMMA},
)
class SoftmaxFocalLoss(_Loss):
    """Softmax focal loss on logits and class indices, with one weight per class if alpha is a
    list.

    alpha: a list of one weight per class (alpha_t, as cross_entropy's `weight=`); a number
    in [0, 1], one factor on every sample; or -1 (the default) for none. 'mean' is the plain
    mean over samples (see `softmax_focal_loss`).
    """

    def __init__(
        self, alpha: float | Sequence[float] = -1.0, gamma: float = 2.0, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        if isinstance(alpha, int | float):
            _check_alpha(alpha)
            self.alpha: float | None = alpha
            class_alpha = None
        else:
            weights = list(alpha)
            if not weights or not all(math.isfinite(w) and w >= 0 for w in weights):
                raise ValueError(
                    f"loss.alpha as a list must hold one number >= 0 per class, got {alpha!r}"
                )
            self.alpha, class_alpha = None, torch.tensor(weights, dtype=torch.float64)
        # A buffer follows the module's device; not persistent, so state_dicts stay the same.
        self.register_buffer("class_alpha", class_alpha, persistent=False)
        self.gamma = gamma

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        alpha = self.class_alpha if self.class_alpha is not None else self.alpha
        return softmax_focal_loss(logits, targets, alpha, self.gamma, self.reduction)


def focal_search_space(cfg: Any, trial: Any) -> None:
    """conf/tune/focal.yaml's Optuna search beyond gamma and lr: alpha for binary tasks only.

    Binary alpha weighs the positive class against the negative one. Multiclass alpha is a
    list of per-class weights that Optuna cannot draw, and a scalar there is one factor on the
    whole loss, close to a no-op under Adam, so no trial is spent on it.
    """
    given = "loss.alpha" in trial.params or "loss.alpha" in trial.user_attrs  # by the user
    if cfg.task.kind == "binary" and not given:
        trial.suggest_float("loss.alpha", 0.05, 0.95)


def mae_loss(probs: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """MAE for classification, 1 - p_y (Ghosh et al. 2017): bounded, so robust to label noise."""
    return _reduce(1 - probs.gather(1, targets[:, None]).squeeze(1), reduction)


@register_loss("mae", tasks="multiclass", input="probs", target="index", paper="Ghosh et al. 2017")
class MAELoss(_Loss):
    """Mean absolute error between softmax probabilities and the one-hot label, 1 - p_y."""

    def forward(self, probs: Tensor, targets: Tensor) -> Tensor:
        return mae_loss(probs, targets, self.reduction)


def generalized_cross_entropy(
    log_probs: Tensor, targets: Tensor, q: float = 0.7, reduction: str = "mean"
) -> Tensor:
    """GCE (Zhang & Sabuncu 2018): (1 - p_y^q) / q; tends to CE as q -> 0 and is MAE at q = 1.

    p_y^q is exp(q log p_y), so a vanishing p_y keeps a finite gradient.
    """
    log_p = log_probs.gather(1, targets[:, None]).squeeze(1)
    return _reduce(-torch.expm1(q * log_p) / q, reduction)


@register_loss(
    "gce", tasks="multiclass", input="log_probs", target="index", paper="Zhang & Sabuncu 2018",
    params={"q": Param(0.7, low=0.0, high=1.0, low_open=True)},
)
class GeneralizedCrossEntropy(_Loss):
    """Generalized cross entropy: between CE (q -> 0) and MAE (q = 1)."""

    def __init__(self, q: float = 0.7, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not 0 < q <= 1:
            raise ValueError(f"loss.q must be in (0, 1], got {q}")
        self.q = q

    def forward(self, log_probs: Tensor, targets: Tensor) -> Tensor:
        return generalized_cross_entropy(log_probs, targets, self.q, self.reduction)


def symmetric_cross_entropy(
    logits: Tensor, targets: Tensor, alpha: float = 0.1, beta: float = 1.0,
    reduction: str = "mean", log_zero: float = math.log(1e-4),
) -> Tensor:
    """SCE (Wang et al. 2019): alpha CE + beta RCE, RCE = -sum_k p_k log y_k with log 0 := -4 ln 10.

    For a one-hot y, RCE reduces to -log_zero (1 - p_y).
    """
    log_p = logits.log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
    rce = -log_zero * (-torch.expm1(log_p))
    return _reduce(alpha * -log_p + beta * rce, reduction)


@register_loss(
    "sce", tasks="multiclass", input="raw", target="index", paper="Wang et al. 2019",
    params={"alpha": Param(0.1, low=0.0), "beta": Param(1.0, low=0.0)},
)
class SymmetricCrossEntropy(_Loss):
    """Symmetric cross entropy: CE plus reverse CE, robust to noisy labels."""

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return symmetric_cross_entropy(logits, targets, self.alpha, self.beta, self.reduction)


def smooth(onehot: Tensor, label_smoothing: float) -> Tensor:
    """Mix a one-hot distribution with the uniform one, as CrossEntropyLoss's label_smoothing."""
    if label_smoothing == 0:
        return onehot
    return onehot * (1 - label_smoothing) + label_smoothing / onehot.shape[-1]


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross entropy against a target distribution, -sum_k y_k log p_k, written from scratch."""
    return _reduce(-(soft_targets * logits.log_softmax(-1)).sum(-1), reduction)


SMOOTHING = Param(0.0, low=0.0, high=1.0)


@register_loss(
    "soft_ce", tasks="multiclass", input="raw", target="onehot",
    params={"label_smoothing": SMOOTHING},
)
class SoftTargetCrossEntropy(_Loss):
    """Cross entropy against soft (one-hot or smoothed) target distributions."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, soft_targets: Tensor) -> Tensor:
        targets = smooth(soft_targets, self.label_smoothing)
        return soft_cross_entropy(logits, targets, self.reduction)


@register_loss(
    "kl_div", tasks="multiclass", input="log_probs", target="onehot",
    params={"label_smoothing": SMOOTHING},
)
class TargetKLDivLoss(_Loss):
    """KL(target || predicted) with KLDivLoss; 'mean' is 'batchmean', the true KL per sample."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.label_smoothing = label_smoothing

    def forward(self, log_probs: Tensor, onehot: Tensor) -> Tensor:
        target = smooth(onehot, self.label_smoothing)
        if self.reduction == "none":
            return F.kl_div(log_probs, target, reduction="none").sum(-1)
        reduction = "batchmean" if self.reduction == "mean" else "sum"
        return F.kl_div(log_probs, target, reduction=reduction)


def hinge_loss(
    scores: Tensor, signs: Tensor, margin: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Binary hinge loss max(0, margin - y s) on ±1 targets, the SVM loss."""
    return _reduce(F.relu(margin - signs * scores), reduction)


@register_loss(
    "hinge", tasks="binary", input="raw", target="pm1",
    params={"margin": Param(1.0, low=0.0, low_open=True)},
)
class HingeLoss(_Loss):
    """Hinge loss on raw scores with ±1 targets."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = margin

    def forward(self, scores: Tensor, signs: Tensor) -> Tensor:
        return hinge_loss(scores, signs, self.margin, self.reduction)


@register_loss("custom_mse", tasks="regression", input="raw", target="float")
class CustomMSE(nn.Module):
    """Squared error written the way a user writes a loss: a plain nn.Module subclass."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        squared = (prediction - target) ** 2
        if self.reduction == "none":
            return squared
        return squared.sum() if self.reduction == "sum" else squared.mean()
