"""The ranking task: rank-correlation, NDCG and pair-order metrics, and a linear baseline."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lossbench.data.tabular import TaskData
from lossbench.losses.registry import Param
from lossbench.tasks import TaskExtras, compute_metrics, metric_fn, register_extras
from lossbench.validation import ConfigError

NDCG_K = Param(10, low=1, kind="int")


def pair_accuracy(scores: Tensor, targets: Tensor) -> Tensor:
    """The fraction of non-tied target pairs the scores order correctly (score ties: half)."""
    i, j = torch.triu_indices(len(scores), len(scores), 1, device=scores.device)
    truth = torch.sign(targets[i] - targets[j])
    agree = torch.sign(scores[i] - scores[j]) * truth  # 1 right, -1 wrong, 0 score tie
    counted = truth.abs()
    return ((agree + 1) / 2 * counted).sum() / counted.sum().clamp_min(1)


def _ndcg_k(data: TaskData) -> int:
    try:
        return NDCG_K.check("task.ndcg_k", data.options.get("ndcg_k", 10))
    except ValueError as err:
        raise ConfigError(str(err)) from None


@metric_fn("ranking")
def ranking_metrics(outputs: Tensor, targets: Tensor, data: TaskData) -> dict[str, Tensor]:
    """How well scores order a split: Kendall's tau-b, Spearman, NDCG@k, pairwise accuracy.

    NDCG needs non-negative gains: the standardised targets are shifted so the split's lowest
    is 0 (the least relevant sample gains nothing).
    """
    from torchmetrics.functional import kendall_rank_corrcoef, spearman_corrcoef
    from torchmetrics.functional.retrieval import retrieval_normalized_dcg

    scores, y = outputs.detach().float(), targets.float()
    return {
        "kendall_tau": kendall_rank_corrcoef(scores, y),
        "spearman": spearman_corrcoef(scores, y),
        "ndcg": retrieval_normalized_dcg(scores, y - y.min(), top_k=_ndcg_k(data)),
        "pair_acc": pair_accuracy(scores, y),
    }


def ranking_baselines(data: TaskData, module: Any) -> dict[str, dict[str, float]]:
    """A least-squares linear model's predictions used as scores, on the test split."""
    from sklearn.linear_model import LinearRegression

    x_train, y_train = data.numpy("train")
    x_test, y_test = data.split("test")
    scores = LinearRegression().fit(x_train, y_train).predict(x_test.cpu().numpy())
    out = torch.as_tensor(np.asarray(scores, dtype=np.float32), device=y_test.device)
    metrics = compute_metrics(out, y_test, data)
    values = torch.stack([v.float() for v in metrics.values()]).tolist()
    return {"linear_regression": {f"test/{k}": v for k, v in zip(metrics, values, strict=True)}}


register_extras("ranking", TaskExtras(baselines=ranking_baselines))
