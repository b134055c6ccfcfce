"""Embedding losses give pytorch-metric-learning's values: PML's own classes are the reference.

Batches are random embeddings (not unit-norm, so the distance's normalisation matters) with
shuffled labels that each appear several times, as in the embedding task's m-per-class
batches. PML is called as its users call it: its loss, optionally its miner, its reducer.
"""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances, losses, miners, reducers

from lossbench.losses import build_loss
from lossbench.losses.embedding_losses import AvgNonZeroReducer, MeanReducer

PML_REDUCERS = {"avg_nonzero": reducers.AvgNonZeroReducer, "mean": reducers.MeanReducer}
SEEDS = (0, 1, 2)


def batch(seed: int, n: int = 32, dim: int = 16, m: int = 4, dtype=torch.float64):
    """Embeddings at scale 3 and labels of n // m classes, m of each, in a random order."""
    gen = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(n, dim, generator=gen, dtype=dtype)
    labels = (torch.arange(n) // m)[torch.randperm(n, generator=gen)]
    return x, labels


def both(name: str, pml_loss, seed: int, pml_miner=None, **hparams) -> tuple[float, float]:
    """lossbench's `name` with `hparams` and PML's loss (after PML's miner, if any) on one batch."""
    x, labels = batch(seed)
    ours = build_loss(name, "embedding", **hparams)(x, labels).item()
    tuples = pml_miner(x, labels) if pml_miner is not None else None
    return ours, pml_loss(x, labels, tuples).item()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("name", "pml_class"),
    [("contrastive", losses.ContrastiveLoss), ("triplet", losses.TripletMarginLoss),
     ("ntxent", losses.NTXentLoss), ("multi_similarity", losses.MultiSimilarityLoss)],
)
def test_defaults_are_pmls_defaults(name: str, pml_class: type, seed: int) -> None:
    """`loss=<name>` with nothing set gives PML's class with nothing set."""
    ours, pml = both(name, pml_class(), seed)
    assert ours == pytest.approx(pml, rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("reducer", ["avg_nonzero", "mean"])
@pytest.mark.parametrize(
    ("name", "pml_class", "hparams"),
    [
        ("contrastive", losses.ContrastiveLoss, {"pos_margin": 0.3, "neg_margin": 1.2}),
        ("triplet", losses.TripletMarginLoss, {"margin": 0.2}),
        ("triplet", losses.TripletMarginLoss, {"margin": 0.5, "swap": True}),
        ("ntxent", losses.NTXentLoss, {"temperature": 0.1}),
        ("multi_similarity", losses.MultiSimilarityLoss, {"alpha": 1.0, "beta": 20.0,
                                                           "base": 0.3}),
    ],
)
def test_each_reducer_is_pmls(name, pml_class, hparams, reducer, seed) -> None:
    ours, pml = both(name, pml_class(**hparams, reducer=PML_REDUCERS[reducer]()), seed,
                     reducer=reducer, **hparams)
    assert ours == pytest.approx(pml, rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("reducer", ["avg_nonzero", "mean"])
@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("name", ["contrastive", "triplet"])
def test_euclidean_is_pmls_lp_distance_on_raw_embeddings(name, p, reducer, seed) -> None:
    raw = distances.LpDistance(p=p, normalize_embeddings=False)
    pml_class = losses.ContrastiveLoss if name == "contrastive" else losses.TripletMarginLoss
    margin = {"neg_margin": 6.0} if name == "contrastive" else {"margin": 1.0}
    pml = pml_class(**margin, distance=raw, reducer=PML_REDUCERS[reducer]())
    ours, theirs = both(name, pml, seed, distance="euclidean", p=p, reducer=reducer, **margin)
    assert ours == pytest.approx(theirs, rel=1e-9)


def miner_of_pml(name: str, margin: float):
    """PML's miner as a PML user builds it, at PML's default distance."""
    if name == "batch_hard":
        return miners.BatchHardMiner()
    return miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("reducer", ["avg_nonzero", "mean"])
@pytest.mark.parametrize("miner", ["batch_hard", "semi_hard"])
def test_triplet_with_a_miner_is_pmls(miner: str, reducer: str, seed: int) -> None:
    margin = 0.3
    pml = losses.TripletMarginLoss(margin=margin, reducer=PML_REDUCERS[reducer]())
    ours, theirs = both("triplet", pml, seed, miner_of_pml(miner, margin), miner=miner,
                        margin=margin, reducer=reducer)
    assert ours == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_contrastive_with_batch_hard_is_pmls(seed: int) -> None:
    """A pair loss takes the miner's triplets as pairs, as PML's pair losses do."""
    ours, theirs = both("contrastive", losses.ContrastiveLoss(), seed, miners.BatchHardMiner(),
                        miner="batch_hard")
    assert ours == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("name", ["contrastive", "triplet"])
def test_gradients_are_pmls(name: str) -> None:
    x, labels = batch(7)
    ours_x, pml_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    build_loss(name, "embedding")(ours_x, labels).backward()
    pml = losses.ContrastiveLoss() if name == "contrastive" else losses.TripletMarginLoss()
    pml(pml_x, labels).backward()
    torch.testing.assert_close(ours_x.grad, pml_x.grad, rtol=1e-9, atol=1e-12)


def test_float32_batches_agree_within_float_tolerance() -> None:
    x, labels = batch(3, dtype=torch.float32)
    for name, pml in (("contrastive", losses.ContrastiveLoss()),
                      ("triplet", losses.TripletMarginLoss())):
        ours = build_loss(name, "embedding")(x, labels).item()
        assert ours == pytest.approx(pml(x, labels).item(), rel=1e-5), name


def pml_reduced(pml_reducer, values: torch.Tensor) -> float:
    """PML's reducer on per-element losses, as a PML loss hands them over."""
    loss_dict = {"loss": {"losses": values, "indices": torch.arange(len(values)),
                          "reduction_type": "element"}}
    return pml_reducer(loss_dict, torch.zeros(len(values), 2), None).item()


@pytest.mark.parametrize(
    "values",
    [[0.0, 0.5, 0.0, 2.0, 1.5], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0], [3.0]],
)
def test_reducers_give_pmls_reducer_values(values: list[float]) -> None:
    losses_ = torch.tensor(values)
    assert MeanReducer()(losses_).item() == pytest.approx(
        pml_reduced(reducers.MeanReducer(), losses_))
    assert AvgNonZeroReducer()(losses_).item() == pytest.approx(
        pml_reduced(reducers.AvgNonZeroReducer(), losses_))


def test_mean_and_avg_nonzero_differ_where_some_tuples_have_zero_loss() -> None:
    """The choice is real: where some negatives are already past the margin, the two reducers
    (and PML's two) give different values."""
    x, labels = batch(0)
    values = {r: build_loss("contrastive", "embedding", reducer=r)(x, labels).item()
              for r in ("mean", "avg_nonzero")}
    pml = {r: losses.ContrastiveLoss(reducer=cls())(x, labels).item()
           for r, cls in PML_REDUCERS.items()}
    assert values == pytest.approx(pml, rel=1e-9)
    assert values["avg_nonzero"] > values["mean"] * (1 + 1e-3)


def test_reduction_sum_adds_the_tuple_losses() -> None:
    x, labels = batch(1)
    pml = losses.TripletMarginLoss(reducer=reducers.SumReducer())(x, labels).item()
    for reducer in ("mean", "avg_nonzero"):
        ours = build_loss("triplet", "embedding", reducer=reducer, reduction="sum")(x, labels)
        assert ours.item() == pytest.approx(pml, rel=1e-9)


def all_pairs(labels: torch.Tensor) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Every ordered (i, j), i != j, split into same-label and different-label pairs."""
    n = len(labels)
    pos = [(i, j) for i in range(n) for j in range(n) if i != j and labels[i] == labels[j]]
    neg = [(i, j) for i in range(n) for j in range(n) if labels[i] != labels[j]]
    return pos, neg


@pytest.mark.parametrize("reducer", ["mean", "avg_nonzero"])
def test_cosine_embedding_is_torchs_on_every_pair(reducer: str) -> None:
    x, labels = batch(4)
    pos, neg = all_pairs(labels)
    first = x[[i for i, _ in pos + neg]]
    second = x[[j for _, j in pos + neg]]
    signs = torch.tensor([1.0] * len(pos) + [-1.0] * len(neg), dtype=x.dtype)
    each = torch.nn.functional.cosine_embedding_loss(first, second, signs, margin=0.2,
                                                     reduction="none")
    expected = each.mean() if reducer == "mean" else each[each > 0].mean()
    ours = build_loss("cosine_embedding", "embedding", margin=0.2, reducer=reducer)(x, labels)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-9)


def test_hinge_embedding_is_torchs_on_unit_norm_distances() -> None:
    x, labels = batch(5)
    pos, neg = all_pairs(labels)
    unit = x / x.norm(dim=1, keepdim=True)
    d = torch.tensor([(unit[i] - unit[j]).norm() for i, j in pos + neg], dtype=x.dtype)
    signs = torch.tensor([1.0] * len(pos) + [-1.0] * len(neg), dtype=x.dtype)
    expected = torch.nn.functional.hinge_embedding_loss(d, signs, margin=1.0)
    assert build_loss("hinge_embedding", "embedding")(x, labels).item() == pytest.approx(
        expected.item(), rel=1e-9)


@pytest.mark.parametrize("name", ["contrastive", "triplet", "ntxent", "multi_similarity",
                                  "cosine_embedding", "hinge_embedding"])
def test_bad_reducer_is_a_one_line_error_naming_the_choices(name: str) -> None:
    with pytest.raises(ValueError) as err:
        build_loss(name, "embedding", reducer="median")
    assert str(err.value) == "loss.reducer must be one of mean, avg_nonzero, got 'median'"
