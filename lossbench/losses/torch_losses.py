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
    summary: str, params: dict[str, Param] | None = None,
    convert: Callable[[dict], dict] | None = None, paper: str = "",
) -> None:
    """Register torch.nn loss `cls`, described by the sentence `summary`; `convert` maps config
    values (lists) to what it takes."""

    def factory(**kwargs: Any) -> nn.Module:
        return cls(**(convert(kwargs) if convert else kwargs))

    tasks = (tasks,) if isinstance(tasks, str) else tasks
    add_spec(LossSpec(name, factory, tasks, input, target, params or {}, paper=paper,
                      summary=summary))


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
_torch("l1", nn.L1Loss, "regression", "raw", "float",
       "torch.nn.L1Loss: the absolute error between prediction and target.")
_torch("mse", nn.MSELoss, ("regression", "ranking"), "raw", "float",
       "torch.nn.MSELoss: the squared error between prediction and target.")
_torch("huber", nn.HuberLoss, "regression", "raw", "float",
       "torch.nn.HuberLoss: squared error within delta of the target, linear beyond it.",
       {"delta": POSITIVE})
_torch("smooth_l1", nn.SmoothL1Loss, "regression", "raw", "float",
       "torch.nn.SmoothL1Loss: Huber loss divided by beta, squared within beta, linear beyond.",
       {"beta": Param(1.0, low=0.0)})

# Binary: one logit per sample, 0/1 labels.
_torch("bce", nn.BCELoss, "binary", "probs", "float",
       "torch.nn.BCELoss: binary cross entropy on the sigmoid probability.")
_torch("bce_logits", nn.BCEWithLogitsLoss, "binary", "raw", "float",
       "torch.nn.BCEWithLogitsLoss: binary cross entropy on the logit, positives weighted by "
       "pos_weight.",
       {"pos_weight": Param(None, low=0.0, low_open=True, allow_none=True)}, _pos_weight)
class StableSoftMarginLoss(nn.SoftMarginLoss):
    """SoftMarginLoss computed as softplus(-y x): torch's log(1 + exp(-y x)) overflows past 88."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.softplus(-target * input)
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.mean()


_torch("soft_margin", StableSoftMarginLoss, "binary", "raw", "pm1",
       "torch.nn.SoftMarginLoss: the logistic loss on ±1 targets, computed stably as "
       "softplus(-y x).")
_torch("mse", nn.MSELoss, "binary", "probs", "float",
       "torch.nn.MSELoss: the squared error between the sigmoid probability and the 0/1 label.")

# Multiclass: (N, C) logits, class indices.
_torch("ce", _CrossEntropyLoss, "multiclass", "raw", "index",
       "torch.nn.CrossEntropyLoss: cross entropy on logits, with optional class weights and "
       "label smoothing.",
       {"weight": Param(None, kind="floats", allow_none=True),
        "label_smoothing": Param(0.0, low=0.0, high=1.0)}, _class_weight)
_torch("nll", nn.NLLLoss, "multiclass", "log_probs", "index",
       "torch.nn.NLLLoss: the negative log-likelihood of the log_softmax output.")
_torch("bce_onehot", nn.BCELoss, "multiclass", "probs", "onehot",
       "torch.nn.BCELoss: binary cross entropy between softmax probabilities and one-hot "
       "targets.")
_torch("mse_onehot", nn.MSELoss, "multiclass", "raw", "onehot",
       "torch.nn.MSELoss: the squared error between logits and one-hot targets.",
       paper="Hui & Belkin 2021")
_torch("multi_margin", nn.MultiMarginLoss, "multiclass", "raw", "index",
       "torch.nn.MultiMarginLoss: the multiclass hinge loss on logits.",
       {"p": Param(1, kind="int", choices=(1, 2)), "margin": POSITIVE})
_torch("multilabel_soft_margin", nn.MultiLabelSoftMarginLoss, "multiclass", "raw", "onehot",
       "torch.nn.MultiLabelSoftMarginLoss: a logistic loss per class against one-hot targets.")
