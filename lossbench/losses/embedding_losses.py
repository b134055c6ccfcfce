"""Metric-learning losses on in-batch pairs and triplets, each built from three swappable pieces.

As in pytorch-metric-learning (PML): a distance (how embeddings are compared), a miner (which
pairs or triplets of the batch count) and a reducer (how the per-tuple losses become one
number). The config names each piece (`loss.distance`, `loss.miner`, `loss.reducer`); the tables
below turn a name into its object, and the loss only ever calls the objects. The defaults are
PML's, so a loss at its defaults gives the value of PML's class of the same name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.losses.registry import Param, register_loss

Pairs = tuple[Tensor, Tensor, Tensor, Tensor]
Triplets = tuple[Tensor, Tensor, Tensor]


# --- Reducers: per-tuple losses -> one number, PML's semantics in plain torch. ---


class MeanReducer(nn.Module):
    """PML's MeanReducer: the mean over every tuple, those with a zero loss included."""

    def forward(self, losses: Tensor) -> Tensor:
        return losses.mean()


class AvgNonZeroReducer(nn.Module):
    """PML's AvgNonZeroReducer: the mean over the tuples whose loss is > 0, or 0 if none is.

    Counted with a mask rather than by indexing, so a step never waits on the device.
    """

    def forward(self, losses: Tensor) -> Tensor:
        active = losses > 0
        return torch.where(active, losses, 0).sum() / active.sum().clamp_min(1)


class SumReducer(nn.Module):
    """PML's SumReducer, used for `reduction=sum`: either reducer above gives the same sum."""

    def forward(self, losses: Tensor) -> Tensor:
        return losses.sum()


REDUCERS: dict[str, Callable[[], nn.Module]] = {
    "mean": MeanReducer, "avg_nonzero": AvgNonZeroReducer,
}


def _chosen(table: dict, key: str, value: str) -> Callable:
    """`table[value]`, or a one-line ValueError naming what `loss.<key>` may be."""
    if value not in table:
        raise ValueError(f"loss.{key} must be one of {', '.join(table)}, got {value!r}")
    return table[value]


def make_reducer(name: str, reduction: str = "mean") -> nn.Module:
    """The reducer `loss.reducer` names; `reduction=sum` sums whichever is named."""
    reducer = _chosen(REDUCERS, "reducer", name)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"loss.reduction must be mean or sum, got {reduction!r}")
    return SumReducer() if reduction == "sum" else reducer()


# --- Distances: PML's distance objects, shared by a loss and its miner. ---

DISTANCES = ("euclidean", "cosine")


def make_distance(name: str, p: float = 2.0) -> nn.Module:
    """PML's LpDistance: on the raw embeddings ("euclidean") or on unit-norm ones ("cosine").

    "cosine" is PML's default distance, LpDistance(): embeddings scaled to unit Lp norm, then
    the Lp distance; at p=2 that is sqrt(2 - 2 cos), monotone in the cosine similarity, and a
    margin keeps one meaning whatever the embeddings' scale.
    """
    from pytorch_metric_learning.distances import LpDistance

    on_sphere = _chosen(dict(zip(DISTANCES, (False, True), strict=True)), "distance", name)
    return LpDistance(p=p, normalize_embeddings=on_sphere)


def cosine_similarity() -> nn.Module:
    from pytorch_metric_learning.distances import CosineSimilarity

    return CosineSimilarity()


# --- Miners: (embeddings, labels) -> the batch's pairs (a1, p, a2, n) or triplets (a, p, n). ---


def _masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Positive (same label, not self) and negative masks of anchors having both."""
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    neg = ~same
    usable = (pos.any(1) & neg.any(1))[:, None]
    return pos & usable, neg & usable


def anchored_pairs(labels: Tensor) -> Pairs:
    """All positive and negative pairs of anchors that have both in the batch.

    An anchor without a positive (or a negative) adds nothing, to any loss: every loss then
    sees the anchors a triplet loss sees, and a batch with no valid triplet gives 0. PML's
    default takes every pair instead; the two agree when each label of the batch appears at
    least twice, as in the embedding task's m-per-class batches.
    """
    pos, neg = _masks(labels)
    a1, p = torch.where(pos)
    a2, n = torch.where(neg)
    return a1, p, a2, n


def all_triplets(labels: Tensor) -> Triplets:
    """Every (anchor, positive, negative) of the batch, as PML takes them by default."""
    pos, neg = _masks(labels)
    a, p, n = torch.where(pos[:, :, None] & neg[:, None, :])
    return a, p, n


def random_triplets(labels: Tensor) -> Triplets:
    """Each positive pair with one negative drawn uniformly (torch's RNG, seeded per run)."""
    pos, neg = _masks(labels)
    a, p = torch.where(pos)
    noise = torch.rand(len(a), len(labels), device=labels.device)
    n = noise.masked_fill(~neg[a], -1.0).argmax(1)
    return a, p, n


class AllPairs(nn.Module):
    """Every positive and negative pair of the anchors having both (`anchored_pairs`)."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Pairs:
        return anchored_pairs(labels)


class AllTriplets(nn.Module):
    """Every valid triplet of the batch (`all_triplets`)."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        return all_triplets(labels)


class RandomTriplets(nn.Module):
    """Each positive pair with one uniformly drawn negative (`random_triplets`)."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        return random_triplets(labels)


TRIPLET_MINERS = ("all", "random", "batch_hard", "semi_hard")
PAIR_MINERS = TRIPLET_MINERS[:3]  # semi_hard needs a triplet margin, which only `triplet` has


def make_miner(name: str, distance: nn.Module, margin: float | None = None) -> nn.Module:
    """The miner `loss.miner` names, measuring hardness with the loss's own `distance`.

    batch_hard is PML's BatchHardMiner (Hermans et al. 2017) and semi_hard its
    TripletMarginMiner(type_of_triplets="semihard") at the loss's `margin` (Schroff et al.
    2015). A pair loss (no `margin`) gets pairs from "all" and a triplet miner's triplets
    (a, p, n) as the pairs (a, p) and (a, n).
    """
    from pytorch_metric_learning.miners import BatchHardMiner, TripletMarginMiner

    miners: dict[str, Callable[[], nn.Module]] = {
        "all": AllTriplets if margin is not None else AllPairs,
        "random": RandomTriplets,
        "batch_hard": lambda: BatchHardMiner(distance=distance),
    }
    if margin is not None:
        miners["semi_hard"] = lambda: TripletMarginMiner(
            margin=margin, type_of_triplets="semihard", distance=distance
        )
    return _chosen(miners, "miner", name)()


def as_pairs(tuples: Pairs | Triplets) -> Pairs:
    """A miner's output as pairs: triplets (a, p, n) become (a, p) and (a, n)."""
    if len(tuples) == 3:
        a, p, n = tuples
        return a, p, a, n
    return tuples


# --- The losses. ---

MINER = Param("all", kind="str", choices=TRIPLET_MINERS)
PAIR_MINER = Param("all", kind="str", choices=PAIR_MINERS)
DISTANCE = Param("cosine", kind="str", choices=DISTANCES)
P_NORM = Param(2.0, low=1.0)
# Each loss's default reducer is PML's for the class of that name.
AVG_NONZERO = Param("avg_nonzero", kind="str", choices=tuple(REDUCERS))
MEAN = Param("mean", kind="str", choices=tuple(REDUCERS))
# A loss over a variable number of tuples has no per-sample "none" reduction.
TUPLE_REDUCTION = Param("mean", kind="str", choices=("mean", "sum"))


class TupleLoss(nn.Module):
    """Shared by the embedding losses: mine, compute one loss per tuple, reduce, and record
    per-epoch diagnostics (fraction of tuples with a non-zero loss, mean embedding norm).

    A loss gives its per-tuple losses in one or more groups (contrastive: positive pairs and
    negative pairs); the reducer reduces each group apart and the results are added, as PML's
    MultipleReducers does.
    """

    def __init__(self, miner: nn.Module, reducer: nn.Module) -> None:
        super().__init__()
        self.miner, self.reducer = miner, reducer
        self._sums: Tensor | None = None
        self._steps = 0

    def tuple_losses(self, embeddings: Tensor, labels: Tensor, tuples: tuple) -> list[Tensor]:
        """One loss per mined tuple, in one or more groups."""
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        tuples = self.miner(embeddings.detach(), labels)  # mining never back-propagates
        groups = [g for g in self.tuple_losses(embeddings, labels, tuples) if g.numel() > 0]
        self._record(embeddings, groups)
        total = embeddings.sum() * 0.0  # no tuple: 0, still on the graph so backward works
        for group in groups:
            total = total + self.reducer(group)
        return total

    @torch.no_grad()
    def _record(self, embeddings: Tensor, groups: list[Tensor]) -> None:
        count = sum(g.numel() for g in groups)
        active = sum((g > 0).sum() for g in groups) if groups else embeddings.new_zeros(())
        step = torch.stack([active.float() / max(count, 1), embeddings.norm(dim=1).mean()])
        self._sums = step if self._sums is None else self._sums + step
        self._steps += 1

    def epoch_diagnostics(self) -> dict[str, Tensor]:
        """Means over the steps since the last call, as device tensors; resets the sums."""
        sums = self._sums if self._sums is not None else torch.full((2,), float("nan"))
        means = sums / max(self._steps, 1)
        self._sums, self._steps = None, 0
        return {"active_fraction": means[0], "embedding_norm": means[1]}


def pml_losses(loss_dict: dict) -> list[Tensor]:
    """The per-tuple losses of a pml loss run with DoNothingReducer (empty sub-losses are 0)."""
    return [
        info["losses"] for info in loss_dict.values()
        if torch.is_tensor(info["losses"]) and info["losses"].dim() > 0
    ]


@register_loss(
    "triplet", tasks="embedding", input="raw", target="labels", paper="Schroff et al. 2015",
    params={
        "margin": Param(0.05, low=0.0, low_open=True), "p": P_NORM,
        "swap": Param(False, kind="bool"), "miner": MINER, "distance": DISTANCE,
        "reducer": AVG_NONZERO, "reduction": TUPLE_REDUCTION,
    },
)
class TripletLoss(TupleLoss):
    """Triplet margin loss, max(0, d(a,p) - d(a,n) + margin), on the batch's mined triplets.

    At its defaults, PML's TripletMarginLoss at its defaults: margin 0.05, distance "cosine"
    (LpDistance on unit-norm embeddings), every triplet, reducer "avg_nonzero" (the mean over
    triplets with a non-zero loss). torch's TripletMarginLoss is margin=1.0 distance=euclidean
    reducer=mean. The loss is PML's class, run on one distance matrix.
    """

    def __init__(
        self, margin: float = 0.05, p: float = 2.0, swap: bool = False, miner: str = "all",
        distance: str = "cosine", reducer: str = "avg_nonzero", reduction: str = "mean",
    ) -> None:
        from pytorch_metric_learning.losses import TripletMarginLoss as PMLTripletMargin
        from pytorch_metric_learning.reducers import DoNothingReducer

        measure = make_distance(distance, p)
        super().__init__(make_miner(miner, measure, margin), make_reducer(reducer, reduction))
        self.pml = PMLTripletMargin(
            margin=margin, swap=swap, distance=measure, reducer=DoNothingReducer()
        )

    def tuple_losses(self, embeddings: Tensor, labels: Tensor, tuples: tuple) -> list[Tensor]:
        return pml_losses(self.pml(embeddings, labels, tuples))


@register_loss(
    "contrastive", tasks="embedding", input="raw", target="labels", paper="Hadsell et al. 2006",
    params={
        "pos_margin": Param(0.0, low=0.0), "neg_margin": Param(1.0, low=0.0, low_open=True),
        "p": P_NORM, "miner": PAIR_MINER, "distance": DISTANCE, "reducer": AVG_NONZERO,
        "reduction": TUPLE_REDUCTION,
    },
)
class ContrastiveLoss(TupleLoss):
    """Contrastive loss: positive pairs pulled within pos_margin, negatives pushed past neg_margin.

    At its defaults, PML's ContrastiveLoss at its defaults: margins 0 and 1, distance "cosine"
    (LpDistance on unit-norm embeddings), every pair, reducer "avg_nonzero" applied to the
    positive and the negative pairs apart, the two results added.
    """

    def __init__(
        self, pos_margin: float = 0.0, neg_margin: float = 1.0, p: float = 2.0,
        miner: str = "all", distance: str = "cosine", reducer: str = "avg_nonzero",
        reduction: str = "mean",
    ) -> None:
        from pytorch_metric_learning.losses import ContrastiveLoss as PMLContrastive
        from pytorch_metric_learning.reducers import DoNothingReducer

        if not pos_margin < neg_margin:
            raise ValueError(
                f"loss.pos_margin must be < loss.neg_margin, got {pos_margin} and {neg_margin}"
            )
        measure = make_distance(distance, p)
        super().__init__(make_miner(miner, measure), make_reducer(reducer, reduction))
        self.pml = PMLContrastive(
            pos_margin=pos_margin, neg_margin=neg_margin, distance=measure,
            reducer=DoNothingReducer(),
        )

    def tuple_losses(self, embeddings: Tensor, labels: Tensor, tuples: tuple) -> list[Tensor]:
        return pml_losses(self.pml(embeddings, labels, as_pairs(tuples)))


def _pm1_pairs(embeddings: Tensor, pairs: Pairs) -> tuple[Tensor, Tensor, Tensor]:
    """Both sides of every pair and its target: +1 for a positive pair, -1 for a negative."""
    a1, p, a2, n = pairs
    first, second = embeddings[torch.cat([a1, a2])], embeddings[torch.cat([p, n])]
    signs = torch.cat([first.new_ones(len(a1)), -first.new_ones(len(a2))])
    return first, second, signs


@register_loss(
    "cosine_embedding", tasks="embedding", input="raw", target="labels",
    params={
        "margin": Param(0.0, low=-1.0, high=1.0), "miner": PAIR_MINER, "reducer": MEAN,
        "reduction": TUPLE_REDUCTION,
    },
)
class CosineEmbeddingPairLoss(TupleLoss):
    """torch's CosineEmbeddingLoss on in-batch pairs: 1 - cos for positives, max(0, cos - margin)
    for negatives.

    The distance is the cosine similarity by definition; the default reducer is "mean" over
    every pair, as torch's.
    """

    def __init__(
        self, margin: float = 0.0, miner: str = "all", reducer: str = "mean",
        reduction: str = "mean",
    ) -> None:
        super().__init__(make_miner(miner, cosine_similarity()), make_reducer(reducer, reduction))
        self.criterion = nn.CosineEmbeddingLoss(margin=margin, reduction="none")

    def tuple_losses(self, embeddings: Tensor, labels: Tensor, tuples: tuple) -> list[Tensor]:
        first, second, signs = _pm1_pairs(embeddings, as_pairs(tuples))
        return [self.criterion(first, second, signs)]


@register_loss(
    "hinge_embedding", tasks="embedding", input="raw", target="labels",
    params={
        "margin": Param(1.0, low=0.0, low_open=True), "p": P_NORM, "miner": PAIR_MINER,
        "distance": DISTANCE, "reducer": MEAN, "reduction": TUPLE_REDUCTION,
    },
)
class HingeEmbeddingPairLoss(TupleLoss):
    """torch's HingeEmbeddingLoss on in-batch pair distances: d for positives, max(0, margin - d)
    for negatives.

    The distance defaults to "cosine" (LpDistance on unit-norm embeddings), as for the other
    embedding losses; the default reducer is "mean" over every pair, as torch's.
    """

    def __init__(
        self, margin: float = 1.0, p: float = 2.0, miner: str = "all",
        distance: str = "cosine", reducer: str = "mean", reduction: str = "mean",
    ) -> None:
        measure = make_distance(distance, p)
        super().__init__(make_miner(miner, measure), make_reducer(reducer, reduction))
        self.criterion = nn.HingeEmbeddingLoss(margin=margin, reduction="none")
        self.distance = measure

    def tuple_losses(self, embeddings: Tensor, labels: Tensor, tuples: tuple) -> list[Tensor]:
        a1, p, a2, n = as_pairs(tuples)
        matrix = self.distance(embeddings)  # one matrix, not a gather per pair (CPU speed)
        distances = torch.cat([matrix[a1, p], matrix[a2, n]])
        signs = torch.cat([distances.new_ones(len(a1)), -distances.new_ones(len(a2))])
        return [self.criterion(distances, signs)]


def ntxent_losses(embeddings: Tensor, pairs: Pairs, temperature: float) -> Tensor:
    """NT-Xent per positive pair (a, p): -log(e^s_ap / (e^s_ap + sum over a's negatives e^s_an)),
    s = cosine similarity / temperature, from one N x N matrix.

    The same value as pml's NTXentLoss, which works on pair lists and was ~20x slower on a CPU.
    """
    a1, p, a2, n = pairs
    unit = F.normalize(embeddings, dim=1)
    sim = unit @ unit.T / temperature
    negatives = torch.zeros_like(sim, dtype=torch.bool)
    negatives[a2, n] = True
    # A finite fill, not -inf: a row without negatives must not give NaN gradients.
    neg_lse = sim.masked_fill(~negatives, torch.finfo(sim.dtype).min).logsumexp(1)
    return F.softplus(neg_lse[a1] - sim[a1, p])


@register_loss(
    "ntxent", tasks="embedding", input="raw", target="labels",
    paper="Oord et al. 2018; Chen et al. 2020",
    params={
        "temperature": Param(0.07, low=0.0, low_open=True), "miner": PAIR_MINER,
        "reducer": MEAN, "reduction": TUPLE_REDUCTION,
    },
)
class NTXentLoss(TupleLoss):
    """NT-Xent (InfoNCE) with labels: each positive pair's cosine similarity against its
    anchor's negatives, softmax at `temperature`.

    At its defaults, PML's NTXentLoss at its defaults: temperature 0.07, the cosine similarity
    (by definition), every pair, reducer "mean" over the positive pairs.
    """

    def __init__(
        self, temperature: float = 0.07, miner: str = "all", reducer: str = "mean",
        reduction: str = "mean",
    ) -> None:
        super().__init__(make_miner(miner, cosine_similarity()), make_reducer(reducer, reduction))
        self.temperature = temperature

    def tuple_losses(self, embeddings: Tensor, labels: Tensor, tuples: tuple) -> list[Tensor]:
        return [ntxent_losses(embeddings, as_pairs(tuples), self.temperature)]


@register_loss(
    "multi_similarity", tasks="embedding", input="raw", target="labels",
    paper="Wang et al. 2019",
    params={
        "alpha": Param(2.0, low=0.0, low_open=True), "beta": Param(50.0, low=0.0, low_open=True),
        "base": Param(0.5, low=-1.0, high=1.0), "miner": PAIR_MINER, "reducer": MEAN,
        "reduction": TUPLE_REDUCTION,
    },
)
class MultiSimilarityLoss(TupleLoss):
    """Multi-similarity loss: soft-weighted positive and negative cosine similarities around
    `base`, one loss per anchor.

    At its defaults, PML's MultiSimilarityLoss at its defaults: alpha 2, beta 50, base 0.5, the
    cosine similarity (by definition), every pair, reducer "mean" over the batch's anchors.
    """

    def __init__(
        self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, miner: str = "all",
        reducer: str = "mean", reduction: str = "mean",
    ) -> None:
        from pytorch_metric_learning.losses import MultiSimilarityLoss as PMLMultiSimilarity
        from pytorch_metric_learning.reducers import DoNothingReducer

        measure = cosine_similarity()
        super().__init__(make_miner(miner, measure), make_reducer(reducer, reduction))
        self.pml = PMLMultiSimilarity(
            alpha=alpha, beta=beta, base=base, distance=measure, reducer=DoNothingReducer()
        )

    def tuple_losses(self, embeddings: Tensor, labels: Tensor, tuples: tuple) -> list[Tensor]:
        return pml_losses(self.pml(embeddings, labels, as_pairs(tuples)))
