"""Per task kind: the head size, the fixed selection metric, and the metrics that judge a loss."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.data.tabular import TaskData
from lossbench.task_kinds import KINDS

# The metric every loss on a task is judged and checkpoint-selected by (never its own value).
SELECTION: dict[str, tuple[str, str]] = {k: (v.selection, v.mode) for k, v in KINDS.items()}

MetricFn = Callable[[Tensor, Tensor, TaskData], dict[str, Tensor]]
_METRICS: dict[str, MetricFn] = {}


def metric_fn(kind: str) -> Callable[[MetricFn], MetricFn]:
    def register(fn: MetricFn) -> MetricFn:
        _METRICS[kind] = fn
        return fn

    return register


def head_size(data: TaskData, embedding_dim: int = 32) -> int:
    """How many outputs the model's head needs for this task."""
    head = KINDS[data.kind].head
    if head == "class":
        return int(data.num_classes)
    return embedding_dim if head == "embedding" else 1


def squeeze_head(kind: str) -> bool:
    """Tasks whose natural output is one number per sample, (N,) rather than (N, 1)."""
    return KINDS[kind].scalar_head


def compute_metrics(outputs: Tensor, targets: Tensor, data: TaskData) -> dict[str, Tensor]:
    """Task metrics as 0-dim tensors on the outputs' device; the caller reads them once."""
    if data.kind not in _METRICS:
        task_extras(data.kind)
    return _METRICS[data.kind](outputs, targets, data)


def stacked_metrics(outputs: Tensor, targets: Tensor, datas: list[TaskData]) -> dict[str, Tensor]:
    """`compute_metrics` of K members at once, as columns: {metric: (K,) tensor}, from outputs
    (K, N, ...) and targets (K, N), member k on its own data. Kinds with a vectorised form
    compute each metric for all K in one call of the same torchmetrics function (per output
    or per sample); the rest call `compute_metrics` per member."""
    kind = datas[0].kind
    if kind in _STACKED and len(datas) > 1:
        return _STACKED[kind](outputs, targets, datas)
    rows = [compute_metrics(o, t, d) for o, t, d in zip(outputs, targets, datas, strict=True)]
    return {name: torch.stack([row[name] for row in rows]) for name in rows[0]}


def _stacked_regression(outputs: Tensor, targets: Tensor, datas: list[TaskData]) -> dict:
    """MAE, RMSE and R² of each member (one output each, (N, K)), in its own target units."""
    from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

    k = len(datas)
    std = torch.tensor([float(d.target_std) for d in datas], device=outputs.device)
    mean = torch.tensor([float(d.target_mean) for d in datas], device=outputs.device)
    pred = outputs.float().reshape(k, -1).T * std + mean
    true = targets.float().reshape(k, -1).T * std + mean
    return {
        "mae": mean_absolute_error(pred, true, num_outputs=k),
        "rmse": mean_squared_error(pred, true, squared=False, num_outputs=k),
        "r2": r2_score(pred, true, multioutput="raw_values"),
    }


def _stacked_multiclass(outputs: Tensor, targets: Tensor, datas: list[TaskData]) -> dict:
    """Accuracy and macro F1 per member (torchmetrics' `samplewise`, the member axis as the
    sample axis), NLL per member; the calibration error has no such form: once per member."""
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_calibration_error,
        multiclass_f1_score,
    )

    n = int(datas[0].num_classes)
    logits, labels = outputs.float(), targets.long()
    by_class = logits.transpose(1, 2)  # (K, C, N): torchmetrics' (sample, class, extra dims)
    # Softmax as its composed ops: torch's CPU kernel over a last dim of ~10 classes takes
    # ~6x as long (4 ms a 75-member digits epoch); the values agree to float rounding.
    shifted = (logits - logits.amax(-1, keepdim=True)).exp()
    probs = shifted / shifted.sum(-1, keepdim=True)
    return {
        "acc": multiclass_accuracy(by_class, labels, num_classes=n, average="micro",
                                   multidim_average="samplewise"),
        "f1_macro": multiclass_f1_score(by_class, labels, num_classes=n, average="macro",
                                        multidim_average="samplewise"),
        "nll": F.cross_entropy(by_class, labels, reduction="none").mean(1),
        "ece": torch.stack([
            multiclass_calibration_error(p, y, num_classes=n, n_bins=15)
            for p, y in zip(probs, labels, strict=True)]),
    }


_STACKED = {"regression": _stacked_regression, "multiclass": _stacked_multiclass}


@metric_fn("regression")
def regression_metrics(outputs: Tensor, targets: Tensor, data: TaskData) -> dict[str, Tensor]:
    """MAE, RMSE and R² in the original target units."""
    from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

    pred = outputs.float() * data.target_std + data.target_mean
    true = targets.float() * data.target_std + data.target_mean
    return {
        "mae": mean_absolute_error(pred, true),
        "rmse": mean_squared_error(pred, true, squared=False),
        "r2": r2_score(pred, true),
    }


@metric_fn("binary")
def binary_metrics(outputs: Tensor, targets: Tensor, data: TaskData) -> dict[str, Tensor]:
    from torchmetrics.functional.classification import (
        binary_accuracy,
        binary_auroc,
        binary_average_precision,
        binary_calibration_error,
        binary_f1_score,
    )

    probs = torch.sigmoid(outputs.float())
    labels = targets.long()
    return {
        "acc": binary_accuracy(probs, labels),
        "auroc": binary_auroc(probs, labels),
        "ap": binary_average_precision(probs, labels),
        "f1": binary_f1_score(probs, labels),
        "brier": ((probs - targets.float()) ** 2).mean(),
        "ece": binary_calibration_error(probs, labels, n_bins=15),
    }


@metric_fn("multiclass")
def multiclass_metrics(outputs: Tensor, targets: Tensor, data: TaskData) -> dict[str, Tensor]:
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_calibration_error,
        multiclass_f1_score,
    )

    n = int(data.num_classes)
    logits, labels = outputs.float(), targets.long()
    probs = logits.softmax(-1)
    return {
        "acc": multiclass_accuracy(logits, labels, num_classes=n, average="micro"),
        "f1_macro": multiclass_f1_score(logits, labels, num_classes=n, average="macro"),
        "nll": F.cross_entropy(logits, labels),
        "ece": multiclass_calibration_error(probs, labels, num_classes=n, n_bins=15),
    }


@dataclass(frozen=True)
class TaskExtras:
    """What a task kind adds to the shared training loop (all optional).

    - batch_order(data, batch_size) -> an order function for TensorBatches (e.g. m per class);
    - baselines(data, untrained_model) -> {name: {"test/<metric>": value}};
    - model_outputs(data, cfg) -> head size when it is not the task's default.
    """

    batch_order: Callable[[TaskData, int], Any] | None = None
    baselines: Callable[[TaskData, Any], dict[str, dict[str, float]]] | None = None


_EXTRAS: dict[str, TaskExtras] = {}
# Modules that register metrics and extras for further task kinds, imported on first use.
_PLUGINS = {k: v.plugin for k, v in KINDS.items() if v.plugin}


def register_extras(kind: str, extras: TaskExtras) -> None:
    _EXTRAS[kind] = extras


def task_extras(kind: str) -> TaskExtras:
    """The extras of `kind`, importing the module that defines the kind when needed."""
    if kind in _PLUGINS and kind not in _METRICS:
        importlib.import_module(_PLUGINS[kind])
    if kind not in _EXTRAS:
        from lossbench.baselines import tabular_baselines

        return TaskExtras(baselines=lambda data, model: tabular_baselines(data))
    return _EXTRAS[kind]


def is_better(kind: str, value: float, best: float | None) -> bool:
    """Whether `value` of the selection metric beats `best` (NaN never does)."""
    if value != value:
        return False
    if best is None:
        return True
    return value < best if SELECTION[kind][1] == "min" else value > best
