"""Metric-learning losses on in-batch pairs and triplets; the miner and distance are config."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.losses.registry import Param, register_loss

MINERS = ("all", "random", "batch_hard", "semi_hard")
PAIR_MINERS = MINERS[:3]  # semi_hard needs a triplet margin, which only `triplet` has
DISTANCES = ("euclidean", "cosine")
Pairs = tuple[Tensor, Tensor, Tensor, Tensor]
Triplets = tuple[Tensor, Tensor, Tensor]

MINER = Param("all", kind="str", choices=MINERS)
PAIR_MINER = Param("all", kind="str", choices=PAIR_MINERS)
DISTANCE = Param("euclidean", kind="str", choices=DISTANCES)
P_NORM = Param(2.0, low=1.0)
# A loss over a variable number of tuples has no per-sample "none" reduction.
TUPLE_REDUCTION = Param("mean", kind="str", choices=("mean", "sum"))


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
    sees the anchors a triplet loss sees, and a batch with no valid triplet gives 0.
    """
    pos, neg = _masks(labels)
    a1, p = torch.where(pos)
    a2, n = torch.where(neg)
    return a1, p, a2, n


def all_triplets(labels: Tensor) -> Triplets:
    """Every (anchor, positive, negative) of the batch."""
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


class Miner:
    """Picks a batch's tuples: all, random, batch_hard (Hermans et al. 2017), semi_hard
    (Schroff et al. 2015); the hard ones measured with the loss's own `distance`."""

    def __init__(self, name: str, distance: nn.Module, margin: float = 0.2) -> None:
        from pytorch_metric_learning.miners import BatchHardMiner, TripletMarginMiner

        if name not in MINERS:
            raise ValueError(f"loss.miner must be one of {', '.join(MINERS)}, got {name!r}")
        self.name = name
        self.pml = {
            "batch_hard": lambda: BatchHardMiner(distance=distance),
            "semi_hard": lambda: TripletMarginMiner(
                margin=margin, type_of_triplets="semihard", distance=distance
            ),
        }.get(name, lambda: None)()

    def triplets(self, embeddings: Tensor, labels: Tensor) -> Triplets:
        if self.name == "all":
            return all_triplets(labels)
        if self.name == "random":
            return random_triplets(labels)
        return self.pml(embeddings.detach(), labels)

    def pairs(self, embeddings: Tensor, labels: Tensor) -> Pairs:
        """Pairs from the mined triplets: (anchor, positive) and (anchor, negative)."""
        if self.name == "all":
            return anchored_pairs(labels)
        a, p, n = self.triplets(embeddings, labels)
        return a, p, a, n


def lp_distance(p: float) -> nn.Module:
    from pytorch_metric_learning.distances import LpDistance

    return LpDistance(p=p, normalize_embeddings=False)


def cosine_similarity() -> nn.Module:
    from pytorch_metric_learning.distances import CosineSimilarity

    return CosineSimilarity()


class TupleLoss(nn.Module):
    """Shared by the embedding losses: mining, the distance's normalisation, reduction, and
    per-epoch diagnostics (fraction of tuples with a non-zero loss, mean embedding norm)."""

    def __init__(self, normalize: bool = False, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"loss.reduction must be mean or sum, got {reduction!r}")
        self.normalize, self.reduction = normalize, reduction
        self._sums: Tensor | None = None
        self._steps = 0

    def tuple_losses(self, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
        """One loss per mined tuple, in one or more groups (each group is reduced apart)."""
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        measured = F.normalize(embeddings, dim=1) if self.normalize else embeddings
        groups = [g for g in self.tuple_losses(measured, labels) if g.numel() > 0]
        self._record(embeddings, groups)
        total = embeddings.sum() * 0.0  # no tuple: 0, still on the graph so backward works
        for group in groups:
            total = total + (group.mean() if self.reduction == "mean" else group.sum())
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


def on_sphere(distance: str) -> bool:
    """Whether `distance` measures L2-normalised embeddings.

    "cosine" is the Lp distance between L2-normalised embeddings (for p=2, sqrt(2 - 2 cos),
    monotone in cosine similarity), so margins keep the meaning they have for "euclidean".
    """
    if distance not in DISTANCES:
        raise ValueError(f"loss.distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
    return distance == "cosine"


def pml_losses(loss_dict: dict) -> list[Tensor]:
    """The per-tuple losses of a pml loss run with DoNothingReducer (empty sub-losses are 0)."""
    return [
        info["losses"] for info in loss_dict.values()
        if torch.is_tensor(info["losses"]) and info["losses"].dim() > 0
    ]


@register_loss(
    "triplet", tasks="embedding", input="raw", target="labels", paper="Schroff et al. 2015",
    params={
        "margin": Param(1.0, low=0.0, low_open=True), "p": P_NORM,
        "swap": Param(False, kind="bool"), "miner": MINER, "distance": DISTANCE,
        "reduction": TUPLE_REDUCTION,
    },
)
class TripletLoss(TupleLoss):
    """Triplet margin loss, max(0, d(a,p) - d(a,n) + margin), on in-batch mined triplets.

    torch's TripletMarginLoss semantics (margin, p, swap), computed by pml's TripletMarginLoss
    from one distance matrix: gathering thousands of triplets' vectors is far slower on a CPU.
    """

    def __init__(
        self, margin: float = 1.0, p: float = 2.0, swap: bool = False, miner: str = "all",
        distance: str = "euclidean", reduction: str = "mean",
    ) -> None:
        from pytorch_metric_learning.losses import TripletMarginLoss as PMLTripletMargin
        from pytorch_metric_learning.reducers import DoNothingReducer

        super().__init__(on_sphere(distance), reduction)
        self.pml = PMLTripletMargin(
            margin=margin, swap=swap, distance=lp_distance(p), reducer=DoNothingReducer()
        )
        self.miner = Miner(miner, lp_distance(p), margin)

    def tuple_losses(self, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
        triplets = self.miner.triplets(embeddings, labels)
        return pml_losses(self.pml(embeddings, labels, triplets))


def _pair_miner(name: str, distance: nn.Module) -> Miner:
    if name not in PAIR_MINERS:
        raise ValueError(f"loss.miner must be one of {', '.join(PAIR_MINERS)}, got {name!r}")
    return Miner(name, distance)


def _pm1_pairs(embeddings: Tensor, pairs: Pairs) -> tuple[Tensor, Tensor, Tensor]:
    """Both sides of every pair and its target: +1 for a positive pair, -1 for a negative."""
    a1, p, a2, n = pairs
    first, second = embeddings[torch.cat([a1, a2])], embeddings[torch.cat([p, n])]
    signs = torch.cat([first.new_ones(len(a1)), -first.new_ones(len(a2))])
    return first, second, signs


@register_loss(
    "contrastive", tasks="embedding", input="raw", target="labels", paper="Hadsell et al. 2006",
    params={
        "pos_margin": Param(0.0, low=0.0), "neg_margin": Param(1.0, low=0.0, low_open=True),
        "p": P_NORM, "miner": PAIR_MINER, "distance": DISTANCE, "reduction": TUPLE_REDUCTION,
    },
)
class ContrastiveLoss(TupleLoss):
    """pml's ContrastiveLoss: positives pulled within pos_margin, negatives pushed past
    neg_margin; the two groups are averaged apart and added."""

    def __init__(
        self, pos_margin: float = 0.0, neg_margin: float = 1.0, p: float = 2.0,
        miner: str = "all", distance: str = "euclidean", reduction: str = "mean",
    ) -> None:
        from pytorch_metric_learning.losses import ContrastiveLoss as PMLContrastive
        from pytorch_metric_learning.reducers import DoNothingReducer

        super().__init__(on_sphere(distance), reduction)
        if not pos_margin < neg_margin:
            raise ValueError(
                f"loss.pos_margin must be < loss.neg_margin, got {pos_margin} and {neg_margin}"
            )
        self.pml = PMLContrastive(
            pos_margin=pos_margin, neg_margin=neg_margin, distance=lp_distance(p),
            reducer=DoNothingReducer(),
        )
        self.miner = _pair_miner(miner, lp_distance(p))

    def tuple_losses(self, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
        pairs = self.miner.pairs(embeddings, labels)
        return pml_losses(self.pml(embeddings, labels, pairs))


@register_loss(
    "cosine_embedding", tasks="embedding", input="raw", target="labels",
    params={
        "margin": Param(0.0, low=-1.0, high=1.0), "miner": PAIR_MINER,
        "reduction": TUPLE_REDUCTION,
    },
)
class CosineEmbeddingPairLoss(TupleLoss):
    """torch's CosineEmbeddingLoss on in-batch pairs: 1 - cos for positives,
    max(0, cos - margin) for negatives."""

    def __init__(self, margin: float = 0.0, miner: str = "all", reduction: str = "mean") -> None:
        super().__init__(False, reduction)  # cosine by definition
        self.criterion = nn.CosineEmbeddingLoss(margin=margin, reduction="none")
        self.miner = _pair_miner(miner, cosine_similarity())

    def tuple_losses(self, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
        first, second, signs = _pm1_pairs(embeddings, self.miner.pairs(embeddings, labels))
        return [self.criterion(first, second, signs)]


@register_loss(
    "hinge_embedding", tasks="embedding", input="raw", target="labels",
    params={
        "margin": Param(1.0, low=0.0, low_open=True), "p": P_NORM, "miner": PAIR_MINER,
        "distance": DISTANCE, "reduction": TUPLE_REDUCTION,
    },
)
class HingeEmbeddingPairLoss(TupleLoss):
    """torch's HingeEmbeddingLoss on in-batch pair distances: d for positives,
    max(0, margin - d) for negatives."""

    def __init__(
        self, margin: float = 1.0, p: float = 2.0, miner: str = "all",
        distance: str = "euclidean", reduction: str = "mean",
    ) -> None:
        super().__init__(on_sphere(distance), reduction)
        self.criterion = nn.HingeEmbeddingLoss(margin=margin, reduction="none")
        self.distance = lp_distance(p)
        self.miner = _pair_miner(miner, self.distance)

    def tuple_losses(self, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
        a1, p, a2, n = self.miner.pairs(embeddings, labels)
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
        "reduction": TUPLE_REDUCTION,
    },
)
class NTXentLoss(TupleLoss):
    """NT-Xent (InfoNCE) with labels: each positive pair's cosine similarity against its
    anchor's negatives, softmax at `temperature` (pml's NTXentLoss semantics)."""

    def __init__(
        self, temperature: float = 0.07, miner: str = "all", reduction: str = "mean"
    ) -> None:
        super().__init__(False, reduction)  # cosine similarity by definition
        self.temperature = temperature
        self.miner = _pair_miner(miner, cosine_similarity())

    def tuple_losses(self, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
        pairs = self.miner.pairs(embeddings, labels)
        return [ntxent_losses(embeddings, pairs, self.temperature)]


@register_loss(
    "multi_similarity", tasks="embedding", input="raw", target="labels",
    paper="Wang et al. 2019",
    params={
        "alpha": Param(2.0, low=0.0, low_open=True), "beta": Param(50.0, low=0.0, low_open=True),
        "base": Param(0.5, low=-1.0, high=1.0), "miner": PAIR_MINER,
        "reduction": TUPLE_REDUCTION,
    },
)
class MultiSimilarityLoss(TupleLoss):
    """pml's multi-similarity loss: soft-weighted positive and negative cosine similarities
    around `base`, per anchor."""

    def __init__(
        self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, miner: str = "all",
        reduction: str = "mean",
    ) -> None:
        from pytorch_metric_learning.losses import MultiSimilarityLoss as PMLMultiSimilarity
        from pytorch_metric_learning.reducers import DoNothingReducer

        super().__init__(False, reduction)  # cosine similarity by definition
        self.pml = PMLMultiSimilarity(alpha=alpha, beta=beta, base=base, reducer=DoNothingReducer())
        self.miner = _pair_miner(miner, cosine_similarity())

    def tuple_losses(self, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
        pairs = self.miner.pairs(embeddings, labels)
        return pml_losses(self.pml(embeddings, labels, pairs))
