"""The ranking task: pairwise losses, ranking metrics and the linear baseline, by real training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import multirun_statuses

from lossbench.config import compose_config
from lossbench.data.tabular import make_task_data
from lossbench.losses import build_loss, list_losses
from lossbench.ranking import pair_accuracy, ranking_metrics
from lossbench.run import run

RANKING_LOSSES = list_losses("ranking")
FAST = ["logger=none", "trainer.progress_bar=false", "threads=1"]


def test_ranking_losses_registered() -> None:
    assert {"margin_ranking", "ranknet", "mse"} <= set(RANKING_LOSSES)


@pytest.mark.parametrize("name", ["margin_ranking", "ranknet"])
def test_all_ties_give_zero_loss_on_the_graph(name: str) -> None:
    scores = torch.randn(8, requires_grad=True)
    value = build_loss(name, "ranking")(scores, torch.ones(8))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(scores.grad).all()


def test_pairwise_losses_prefer_the_right_order() -> None:
    targets = torch.tensor([0.0, 1.0, 2.0])
    for name in ("margin_ranking", "ranknet"):
        loss = build_loss(name, "ranking")
        assert loss(targets * 3, targets) < loss(-targets * 3, targets)


def test_metrics_of_a_perfect_and_a_reversed_order() -> None:
    data = make_task_data("ranking", "diabetes", 0, options={"ndcg_k": 5})
    y = torch.tensor([0.1, 0.5, -1.0, 2.0, 0.7])
    right, wrong = ranking_metrics(y * 2, y, data), ranking_metrics(-y, y, data)
    assert right["kendall_tau"].item() == pytest.approx(1.0)
    assert right["ndcg"].item() == pytest.approx(1.0)
    assert wrong["spearman"].item() == pytest.approx(-1.0)
    assert pair_accuracy(-y, y).item() == 0.0


def test_margin_ranking_learns_to_rank(tmp_path: Path) -> None:
    cfg = compose_config(["task=ranking", "loss=margin_ranking", *FAST, "trainer.max_epochs=15",
                          f"output_dir={tmp_path}"])
    results = run(cfg)
    assert results["status"] == "ok", results["reason"]
    assert results["selection"]["metric"] == "val/kendall_tau"
    assert results["metrics"]["best"]["test/kendall_tau"] > 0.3
    linear = results["baselines"]["linear_regression"]
    assert set(linear) == {"test/kendall_tau", "test/spearman", "test/ndcg", "test/pair_acc"}


def test_bad_ndcg_k_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = compose_config(["task=ranking", "loss=ranknet", *FAST, "task.ndcg_k=0",
                          f"output_dir={tmp_path}"])
    results = run(cfg)
    assert results["status"] == "failed" and results["reason"].startswith("task.ndcg_k must be")


def test_every_ranking_loss_through_the_cli(tmp_path: Path) -> None:
    proc, found = multirun_statuses(
        tmp_path, "task=ranking", f"loss={','.join(RANKING_LOSSES)}", "trainer.max_epochs=2", *FAST
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert found == dict.fromkeys(RANKING_LOSSES, "ok")
