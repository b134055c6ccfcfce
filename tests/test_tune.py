"""Tuning with Optuna: a study per loss over its own hyperparameters and the learning rate."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import multirun_statuses

from lossbench.__main__ import group_options


def test_a_study_tunes_the_loss_and_learning_rate_on_validation(tmp_path: Path) -> None:
    proc, _ = multirun_statuses(tmp_path, "+tune=huber", "tune_trials=3", "logger=none",
                                "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stderr
    results = [yaml.safe_load(p.read_text()) for p in tmp_path.rglob("results.json")]
    assert len(results) == 3 and all(r["status"] == "ok" for r in results)
    assert len({r["config"]["loss"]["delta"] for r in results}) == 3
    (best,) = tmp_path.rglob("optimization_results.yaml")
    summary = yaml.safe_load(best.read_text())
    assert set(summary["best_params"]) == {"optimizer.lr", "loss.delta"}
    # Selected on validation (the run's best val/mae), never on test.
    val = {round(r["metrics"]["best"]["val/mae"], 4) for r in results}
    assert round(summary["best_value"], 4) == min(val)


def test_diverging_trials_do_not_stop_the_study(tmp_path: Path) -> None:
    proc, found = multirun_statuses(
        tmp_path, "+tune=lr", "task=binary", "loss=bce_logits", "tune_trials=2",
        "optimizer.lr=tag(log, interval(1e20, 1e30))", "logger=none", "trainer.max_epochs=2",
    )
    assert proc.returncode == 0, proc.stderr
    assert found == {"bce_logits": "diverged"}
    assert len(list(tmp_path.rglob("results.json"))) == 2


def test_every_tune_file_uses_the_shared_budget() -> None:
    """Every study starts from tune/lr.yaml (one budget, one learning-rate range) and adds
    its loss's own hyperparameters."""
    from importlib import resources

    def load(name: str) -> dict:
        return yaml.safe_load(
            resources.files("lossbench.conf").joinpath(f"tune/{name}.yaml").read_text())

    base = load("lr")["hydra"]["sweeper"]
    assert base["n_trials"] == "${tune_trials}"
    assert "optimizer.lr" in base["params"]
    for name in group_options("tune"):
        if name == "lr":
            continue
        config = load(name)
        assert "lr" in config["defaults"], name
        sweeper = config["hydra"]["sweeper"]
        assert "n_trials" not in sweeper and "optimizer.lr" not in sweeper["params"], name
        assert all(key.startswith("loss.") for key in sweeper["params"]), name
