"""run(cfg) from Python: what results.json holds for a regression run, and which knobs matter."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

METRICS = ("val/mae", "val/rmse", "val/r2", "test/mae", "test/rmse", "test/r2")


@pytest.fixture(scope="module")
def huber(tmp_path_factory: pytest.TempPathFactory, run_in) -> dict:
    """`task=regression loss=huber` for 3 epochs; the file it wrote, read back."""
    folder = tmp_path_factory.mktemp("huber")
    returned = run_in(folder, "task=regression", "loss=huber", "trainer.max_epochs=3")
    written = json.loads((folder / "results.json").read_text())
    assert written == json.loads(json.dumps({"schema": 1, **returned}))
    return written


def test_results_json_has_the_documented_keys(huber: dict) -> None:
    for key in ("status", "task", "loss", "seed", "config", "metrics", "history", "epochs",
                "wall_s", "versions", "git", "baselines", "selection", "threads"):
        assert key in huber, key
    assert (huber["status"], huber["task"], huber["loss"], huber["seed"]) == (
        "ok", "regression", "huber", 0
    )
    assert huber["selection"] == {"metric": "val/mae", "mode": "min"}
    assert set(huber["versions"]) >= {"python", "torch", "lightning"}
    assert huber["git"] is None or len(huber["git"]) == 40
    assert huber["wall_s"] > 0


def test_config_is_stored_resolved(huber: dict) -> None:
    config = huber["config"]
    assert "${" not in json.dumps(config)
    assert config["loss"] == {"name": "huber", "delta": 1.0}
    assert config["name"] == "regression-huber-s0"
    assert config["trainer"]["max_epochs"] == 3


def test_best_and_last_metrics_are_lower_case_val_and_test(huber: dict) -> None:
    for which in ("best", "last"):
        metrics = huber["metrics"][which]
        assert set(metrics) == {"epoch", *METRICS}
        assert all(math.isfinite(metrics[m]) for m in METRICS)
    assert huber["metrics"]["last"]["epoch"] == 2


def test_history_has_one_row_per_epoch(huber: dict) -> None:
    assert huber["epochs"] == len(huber["history"]) == 3
    assert [row["epoch"] for row in huber["history"]] == [0, 1, 2]
    for row in huber["history"]:
        assert {"train/loss", "val/mae", "val/rmse", "val/r2"} <= set(row)


def test_metrics_are_in_original_target_units(huber: dict) -> None:
    # Diabetes progression spans 25..346; a standardised-unit MAE would be below 1.
    assert 30 < huber["metrics"]["best"]["test/mae"] < 80
    assert huber["metrics"]["best"]["test/rmse"] >= huber["metrics"]["best"]["test/mae"]
    assert 30 < huber["baselines"]["linear_regression"]["test/mae"] < 80


def test_same_seed_same_numbers(huber: dict, tmp_path: Path, run_in) -> None:
    again = run_in(tmp_path, "task=regression", "loss=huber", "trainer.max_epochs=3")
    assert again["metrics"] == huber["metrics"]
    assert again["history"] == huber["history"]


def test_seed_changes_the_split(huber: dict, tmp_path: Path, run_in) -> None:
    other = run_in(tmp_path, "task=regression", "loss=huber", "trainer.max_epochs=3", "seed=1")
    # The linear baseline sees only the split: a different figure means a different split.
    assert other["baselines"] != huber["baselines"]
    assert other["metrics"]["best"]["test/mae"] != huber["metrics"]["best"]["test/mae"]


def test_best_epoch_is_selected_by_val_mae(tmp_path: Path, run_in) -> None:
    results = run_in(tmp_path, "loss=mse", "trainer.max_epochs=25", "optimizer.lr=0.03")
    val_mae = [row["val/mae"] for row in results["history"]]
    best = results["metrics"]["best"]
    assert best["epoch"] == val_mae.index(min(val_mae))
    assert best["val/mae"] == pytest.approx(min(val_mae), rel=1e-5)
    # Overfitting makes the last epoch worse than the best one: selection is not "last".
    assert best["epoch"] < results["metrics"]["last"]["epoch"]
    assert best["val/mae"] < results["metrics"]["last"]["val/mae"]


def regression_losses() -> list[str]:
    from lossbench.__main__ import group_options
    from lossbench.losses import list_losses

    return [name for name in group_options("loss") if name in list_losses("regression")]


def test_regression_losses_are_listed() -> None:
    assert {"mse", "l1", "huber", "smooth_l1", "custom_mse"} <= set(regression_losses())


@pytest.mark.parametrize("loss", regression_losses())
def test_every_regression_loss_trains(loss: str, tmp_path: Path, run_in) -> None:
    results = run_in(tmp_path, "task=regression", f"loss={loss}")
    assert results["status"] == "ok", results["reason"]
    assert results["loss"] == loss
    assert 30 < results["metrics"]["best"]["test/mae"] < 200


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory: pytest.TempPathFactory, run_in) -> dict:
    return run_in(tmp_path_factory.mktemp("one_epoch"), "loss=huber", "trainer.max_epochs=1")


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("seed=3", "seed", 3),
        ("batch_size=16", "batch_size", 16),
        ("trainer.max_epochs=2", "trainer.max_epochs", 2),
        ("optimizer.lr=0.02", "optimizer.lr", 0.02),
        ("optimizer.weight_decay=0.5", "optimizer.weight_decay", 0.5),
        ("model.hidden_dims=[16]", "model.hidden_dims", [16]),
        ("model.dropout=0.5", "model.dropout", 0.5),
        ("loss.delta=0.1", "loss.delta", 0.1),
    ],
)
def test_override_is_honoured(
    override: str, key: str, value: object, one_epoch: dict, tmp_path: Path, run_in
) -> None:
    results = run_in(tmp_path, "loss=huber", "trainer.max_epochs=1", override)
    assert results["status"] == "ok", results["reason"]
    node = results["config"]
    for part in key.split("."):
        node = node[part]
    assert node == value
    # ...and it changed what was trained, not just what was recorded.
    assert results["history"] != one_epoch["history"]
    assert results["metrics"]["best"]["test/mae"] != one_epoch["metrics"]["best"]["test/mae"]


def test_csv_logger_writes_metrics_csv(tmp_path: Path, run_in) -> None:
    results = run_in(tmp_path, "logger=csv")
    assert results["status"] == "ok"
    found = list(tmp_path.rglob("metrics.csv"))
    assert len(found) == 1
    with open(found[0]) as f:
        rows = list(csv.DictReader(f))
    logged = [row for row in rows if row.get("val/mae")]
    assert len(logged) == 2
    assert float(logged[-1]["val/mae"]) == pytest.approx(results["history"][-1]["val/mae"])


def test_logger_none_writes_nothing_of_wandb(tmp_path: Path, run_in) -> None:
    results = run_in(tmp_path / "out", "logger=none")
    assert results["status"] == "ok"
    assert [p for p in tmp_path.rglob("*") if "wandb" in p.name.lower()] == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json"]
