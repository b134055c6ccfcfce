"""The torch.nn losses that fit lossbench's tasks, each with its input/target contract."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.losses.registry import LossSpec, Param, add_spec

POSITIVE = Param(1.0, low=0.0, low_open=True)
NONNEGATIVE = Param(1.0, low=0.0)


def _torch(
    name: str, cls: type[nn.Module], tasks: str | tuple[str, ...], input: str, target: str,
    params: dict[str, Param] | None = None, convert: Callable[[dict], dict] | None = None,
    summary: str = "",
) -> None:
    """Register torch.nn loss `cls`; `convert` maps config values (lists) to what it takes."""

    def factory(**kwargs: Any) -> nn.Module:
        return cls(**(convert(kwargs) if convert else kwargs))

    tasks = (tasks,) if isinstance(tasks, str) else tasks
    add_spec(LossSpec(name, factory, tasks, input, target, params or {},
                      summary=summary or f"torch.nn.{cls.__name__}"))


def _pos_weight(kwargs: dict) -> dict:
    if kwargs.get("pos_weight") is not None:
        kwargs["pos_weight"] = torch.tensor([kwargs["pos_weight"]])
    return kwargs


def _class_weight(kwargs: dict) -> dict:
    if kwargs.get("weight") is not None:
        weight = kwargs["weight"]
        if not weight or not all(math.isfinite(w) and w >= 0 for w in weight):
            raise ValueError(f"loss.weight must be a list of numbers >= 0, got {weight!r}")
        kwargs["weight"] = torch.tensor(weight)
    return kwargs


class _CrossEntropyLoss(nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss whose class weights follow the logits' dtype and must fit C."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        weight = self.weight
        if weight is not None:
            if weight.numel() != input.shape[-1]:
                raise ValueError(
                    f"loss.weight has {weight.numel()} entries for {input.shape[-1]} classes"
                )
            weight = weight.to(input.dtype)
        return F.cross_entropy(input, target, weight=weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


# Regression: raw predictions against float targets.
_torch("l1", nn.L1Loss, "regression", "raw", "float")
_torch("mse", nn.MSELoss, ("regression", "ranking"), "raw", "float")
_torch("huber", nn.HuberLoss, "regression", "raw", "float", {"delta": POSITIVE})
_torch("smooth_l1", nn.SmoothL1Loss, "regression", "raw", "float",
       {"beta": Param(1.0, low=0.0)})

# Binary: one logit per sample, 0/1 labels.
_torch("bce", nn.BCELoss, "binary", "probs", "float", summary="torch.nn.BCELoss on sigmoid")
_torch("bce_logits", nn.BCEWithLogitsLoss, "binary", "raw", "float",
       {"pos_weight": Param(None, low=0.0, low_open=True, allow_none=True)}, _pos_weight)
class StableSoftMarginLoss(nn.SoftMarginLoss):
    """SoftMarginLoss computed as softplus(-y x): torch's log(1 + exp(-y x)) overflows past 88."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.softplus(-target * input)
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.mean()


_torch("soft_margin", StableSoftMarginLoss, "binary", "raw", "pm1",
       summary="torch.nn.SoftMarginLoss, computed stably as softplus(-y x)")
_torch("mse", nn.MSELoss, "binary", "probs", "float", summary="torch.nn.MSELoss on sigmoid")

# Multiclass: (N, C) logits, class indices.
_torch("ce", _CrossEntropyLoss, "multiclass", "raw", "index",
       {"weight": Param(None, kind="floats", allow_none=True),
        "label_smoothing": Param(0.0, low=0.0, high=1.0)}, _class_weight,
       summary="torch.nn.CrossEntropyLoss")
_torch("nll", nn.NLLLoss, "multiclass", "log_probs", "index",
       summary="torch.nn.NLLLoss on log_softmax")
_torch("bce_onehot", nn.BCELoss, "multiclass", "probs", "onehot",
       summary="torch.nn.BCELoss on softmax, one-hot targets")
_torch("mse_onehot", nn.MSELoss, "multiclass", "raw", "onehot",
       summary="torch.nn.MSELoss on logits, one-hot targets (Hui & Belkin 2021)")
_torch("multi_margin", nn.MultiMarginLoss, "multiclass", "raw", "index",
       {"p": Param(1, kind="int", choices=(1, 2)), "margin": POSITIVE})
_torch("multilabel_soft_margin", nn.MultiLabelSoftMarginLoss, "multiclass", "raw", "onehot")
