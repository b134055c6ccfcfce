"""The embedding task: retrieval and clustering metrics, m-per-class batches, and baselines."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.data.batches import OrderFn
from lossbench.data.tabular import TaskData
from lossbench.losses.registry import Param
from lossbench.tasks import TaskExtras, compute_metrics, metric_fn, register_extras
from lossbench.validation import ConfigError

M_PER_CLASS = Param(4, low=1, kind="int")
# pytorch-metric-learning's metric names -> lossbench's.
_PML_NAMES = {
    "precision_at_1": "precision_at_1", "r_precision": "r_precision",
    "mean_average_precision_at_r": "map_at_r", "NMI": "nmi", "AMI": "ami",
}


def _kmeans(x: Tensor, n_clusters: int) -> Tensor:
    """k-means cluster ids with a fixed seed (pml's default needs faiss, absent here).

    One thread: a few hundred points gain nothing from more, and OpenMP threads spinning on
    busy cores made each call 10x slower.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=0)
    with threadpool_limits(limits=1):
        ids = km.fit_predict(x.detach().cpu().numpy())
    return torch.as_tensor(ids, device=x.device)


@metric_fn("embedding")
def embedding_metrics(outputs: Tensor, targets: Tensor, data: TaskData) -> dict[str, Tensor]:
    """Retrieval within the split (each sample queries the rest) and k-means NMI/AMI.

    Embeddings are L2-normalised first, as in pml's tester and Musgrave et al. 2020 ("A Metric
    Learning Reality Check"), so losses on cosine and on euclidean distance are judged alike.
    k is the largest class's size, which MAP@R and R-precision need to be exact.
    """
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    emb = F.normalize(outputs.detach().float(), dim=1)
    if not bool(emb.isfinite().all()):  # pml reads the embeddings on the host anyway
        # A model gone NaN/inf: no retrieval to score. NaN metrics, and the epoch's
        # divergence check records the run as diverged (pml itself would raise).
        nan = torch.tensor(float("nan"), device=outputs.device)
        return {ours: nan for ours in _PML_NAMES.values()}
    calc = AccuracyCalculator(
        include=tuple(_PML_NAMES), k="max_bin_count", device=emb.device,
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)), kmeans_func=_kmeans,
    )
    scores = calc.get_accuracy(emb, targets)
    return {
        ours: torch.tensor(float(scores[pml]), device=outputs.device)
        for pml, ours in _PML_NAMES.items()
    }


def m_per_class_order(labels: Tensor, m: int, n: int) -> OrderFn:
    """An epoch order made of groups of `m` same-class samples in random group order.

    Each class is shuffled and cut into groups of m; a class whose size is no multiple of m
    tops its last group up with its own first samples. The groups are shuffled and the order
    cut to `n`, the training split's size, so an epoch has as many batches as plain shuffling.
    Unlike pml's MPerClassSampler (numpy's global RNG, batch <= m * classes), this draws from
    the TensorBatches generator only, so a seed fixes the batches.
    """
    cpu = labels.cpu()
    by_class = [torch.nonzero(cpu == c).flatten() for c in torch.unique(cpu)]

    def order(generator: torch.Generator) -> Tensor:
        groups = []
        for idx in by_class:
            perm = idx[torch.randperm(len(idx), generator=generator)]
            size = -(-len(perm) // m) * m
            groups.append(perm.repeat(-(-size // len(perm)))[:size].view(-1, m))
        stacked = torch.cat(groups)
        stacked = stacked[torch.randperm(len(stacked), generator=generator)]
        return stacked.flatten()[:n]

    return order


def embedding_batch_order(data: TaskData, batch_size: int) -> OrderFn:
    """Batches of whole m-per-class groups, so every anchor has positives and negatives."""
    try:
        m = M_PER_CLASS.check("task.m_per_class", data.options.get("m_per_class", 4))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if batch_size % m or batch_size < 2 * m:
        raise ConfigError(
            f"batch_size must be a multiple of task.m_per_class={m} and at least {2 * m}, "
            f"got {batch_size}"
        )
    return m_per_class_order(data.y_train, m, len(data.y_train))


def _test_scores(outputs: Tensor, data: TaskData) -> dict[str, float]:
    _, y_test = data.split("test")
    metrics = compute_metrics(outputs, y_test, data)
    values = torch.stack([v.float() for v in metrics.values()]).tolist()
    return {f"test/{k}": v for k, v in zip(metrics, values, strict=True)}


def embedding_baselines(data: TaskData, module: Any) -> dict[str, dict[str, float]]:
    """What retrieval gets without learning: the standardised inputs, and the untrained MLP."""
    x_test, _ = data.split("test")
    model = copy.deepcopy(module.model).to(x_test.device).eval()
    with torch.no_grad():
        untrained = torch.cat([model(x_test[i : i + 1024]) for i in range(0, len(x_test), 1024)])
    raw = x_test.flatten(1).float()  # images: their pixels, as one vector each
    return {
        "raw_features": _test_scores(raw, data),
        "untrained_network": _test_scores(untrained, data),
    }


register_extras(
    "embedding", TaskExtras(batch_order=embedding_batch_order, baselines=embedding_baselines)
)
