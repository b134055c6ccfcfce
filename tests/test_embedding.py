"""The embedding task: its losses, batches, split, metrics and baselines, by real training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import multirun_statuses

from lossbench.config import compose_config
from lossbench.data.tabular import make_task_data
from lossbench.embedding import embedding_metrics, m_per_class_order
from lossbench.losses import build_loss, list_losses
from lossbench.run import run

EMBEDDING_LOSSES = list_losses("embedding")
FAST = ["logger=none", "model.hidden_dims=[64]", "trainer.progress_bar=false", "threads=1"]


def _run(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose_config(["task=embedding", *FAST, f"output_dir={tmp_path}", *overrides])
    results = run(cfg)
    assert results["status"] == "ok", results["reason"]
    return results


def test_all_losses_registered() -> None:
    expected = {"triplet", "contrastive", "cosine_embedding", "hinge_embedding", "ntxent"}
    assert expected <= set(EMBEDDING_LOSSES)


@pytest.mark.parametrize("name", EMBEDDING_LOSSES)
def test_batch_without_valid_tuple_gives_zero_loss(name: str) -> None:
    """No positive (all labels differ) or no negative (one label): 0, and backward works."""
    loss = build_loss(name, "embedding")
    for labels in (torch.arange(12), torch.zeros(12, dtype=torch.long)):
        x = torch.randn(12, 8, requires_grad=True)
        value = loss(x, labels)
        value.backward()
        assert value.item() == 0.0
        assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("miner", ["all", "random", "batch_hard", "semi_hard"])
def test_triplet_miners_give_finite_gradients(miner: str) -> None:
    loss = build_loss("triplet", "embedding", miner=miner, distance="cosine", margin=0.2)
    x = torch.randn(16, 8, requires_grad=True)
    loss(x, torch.arange(16) // 4).backward()
    assert torch.isfinite(x.grad).all()
    diagnostics = loss.inner.epoch_diagnostics()
    assert set(diagnostics) == {"active_fraction", "embedding_norm"}
    assert 0 <= diagnostics["active_fraction"].item() <= 1


def test_ntxent_matches_pml() -> None:
    """lossbench's matrix form of NT-Xent gives pml's NTXentLoss value on all anchored pairs."""
    from pytorch_metric_learning.losses import NTXentLoss

    from lossbench.losses.embedding_losses import anchored_pairs

    x, labels = torch.randn(24, 8), torch.arange(24) // 3
    ours = build_loss("ntxent", "embedding", temperature=0.1)(x, labels)
    assert ours.item() == pytest.approx(NTXentLoss(0.1)(x, labels, anchored_pairs(labels)).item())


@pytest.mark.parametrize(
    "bad", [{"margin": 0}, {"miner": "hardest"}, {"distance": "l1"}, {"reducer": "median"}]
)
def test_bad_hyperparameters_are_one_line_errors(bad: dict) -> None:
    with pytest.raises(ValueError, match=f"loss.{next(iter(bad))} must be") as err:
        build_loss("triplet", "embedding", **bad)
    assert "\n" not in str(err.value)


def test_m_per_class_order_is_groups_of_m_and_seeded() -> None:
    labels = torch.arange(50) % 5
    order = m_per_class_order(labels, 4, len(labels))
    first = order(torch.Generator().manual_seed(3))
    assert len(first) == 50
    assert torch.equal(first, order(torch.Generator().manual_seed(3)))
    groups = labels[first[:48]].view(-1, 4)
    assert (groups == groups[:, :1]).all()


def test_class_disjoint_split_has_disjoint_classes() -> None:
    data = make_task_data("embedding", "digits", 0, split="class_disjoint")
    train = set(data.y_train.tolist())
    held_out = set(data.y_val.tolist()) | set(data.y_test.tolist())
    assert train == {0, 1, 2, 3, 4} and held_out == {5, 6, 7, 8, 9}
    assert set(data.y_val.tolist()) == set(data.y_test.tolist())


def test_metrics_are_perfect_for_label_embeddings() -> None:
    labels = torch.arange(40) % 4
    data = make_task_data("embedding", "iris", 0)
    metrics = embedding_metrics(torch.nn.functional.one_hot(labels).float(), labels, data)
    assert set(metrics) == {"precision_at_1", "r_precision", "map_at_r", "nmi", "ami"}
    assert all(v.dim() == 0 and v.item() == pytest.approx(1.0) for v in metrics.values())


def test_triplet_beats_untrained_network(tmp_path: Path) -> None:
    results = _run(tmp_path, "loss=triplet", "loss.miner=semi_hard", "trainer.max_epochs=4")
    untrained = results["baselines"]["untrained_network"]["test/map_at_r"]
    assert "test/map_at_r" in results["baselines"]["raw_features"]
    assert results["metrics"]["best"]["test/map_at_r"] > untrained + 0.1
    assert all("train/active_fraction" in row for row in results["history"])
    assert all("train/embedding_norm" in row for row in results["history"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["baselines"]) == {"raw_features", "untrained_network"}


def test_class_disjoint_run_and_batch_size_check(tmp_path: Path) -> None:
    results = _run(tmp_path, "loss=contrastive", "task.split=class_disjoint",
                   "trainer.max_epochs=1")
    assert results["metrics"]["best"]["test/map_at_r"] > 0
    cfg = compose_config(["task=embedding", "loss=triplet", *FAST, "batch_size=30",
                          f"output_dir={tmp_path / 'bad'}"])
    failed = run(cfg)
    assert failed["status"] == "failed" and "task.m_per_class" in failed["reason"]


def test_every_embedding_loss_through_the_cli(tmp_path: Path) -> None:
    """One multirun over all embedding losses: each job writes an ok results.json."""
    proc, found = multirun_statuses(
        tmp_path, "task=embedding", f"loss={','.join(EMBEDDING_LOSSES)}", "trainer.max_epochs=2",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert found == dict.fromkeys(EMBEDDING_LOSSES, "ok")
