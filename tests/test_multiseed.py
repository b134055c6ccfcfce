"""Several seeds in one process: the same results, folders and files as separate runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lossbench.config import compose_config
from lossbench.results import RESULTS_NAME, read_results
from lossbench.run import run
from lossbench.stack import SeedStackModule, run_seeds

SEEDS = [0, 1, 2]
FAST = [
    "logger=none", "trainer.progress_bar=false", "threads=1", "model.hidden_dims=[32]",
    "trainer.max_epochs=5",
]
CASES = {
    # SGD with momentum and a small clip: per-seed gradient clipping must engage and agree.
    "regression-mse": ["task=regression", "loss=mse", "optimizer=sgd",
                       "trainer.gradient_clip_val=0.1"],
    "multiclass-ce": ["task=multiclass", "loss=ce", "task.dataset=wine"],
}


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """The baselines' scikit-learn fits crawl with several BLAS threads on a busy CPU."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _config(tmp_path: Path, *overrides: str):
    return compose_config([*FAST, f"output_dir={tmp_path}", *overrides])


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b))


def _assert_rows_close(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert _close(value, actual[key]), (key, value, actual[key])


@pytest.mark.parametrize("case", list(CASES))
def test_matches_separate_runs(tmp_path: Path, case: str) -> None:
    overrides = CASES[case]
    together = run_seeds(_config(tmp_path / "multi", *overrides), SEEDS)
    for seed, multi in zip(SEEDS, together, strict=True):
        alone = run(_config(tmp_path / f"s{seed}", *overrides, f"seed={seed}"))
        assert alone["status"] == multi["status"] == "ok", multi["reason"]
        assert list(multi) == [*alone, "stack"]  # same keys, same order
        assert multi["config_hash"] == alone["config_hash"]
        assert multi["seed"] == multi["config"]["seed"] == seed
        assert multi["baselines"] == alone["baselines"]  # same split
        for which in ("best", "last"):
            _assert_rows_close(alone["metrics"][which], multi["metrics"][which])
        assert len(multi["history"]) == len(alone["history"]) == 5
        for row_alone, row_multi in zip(alone["history"], multi["history"], strict=True):
            _assert_rows_close(row_alone, row_multi)


def test_writes_one_results_file_per_seed(tmp_path: Path) -> None:
    together = run_seeds(_config(tmp_path, *CASES["regression-mse"]), SEEDS)
    folders = sorted(p.parent for p in tmp_path.rglob(RESULTS_NAME))
    assert [p.name for p in folders] == [f"regression-mse-s{s}" for s in SEEDS]
    for seed, results in zip(SEEDS, together, strict=True):
        on_disk = read_results(Path(results["output_dir"]) / RESULTS_NAME)
        assert on_disk is not None and on_disk["schema"] == 1
        assert {k: v for k, v in on_disk.items() if k != "schema"} == json.loads(
            json.dumps(results))
        assert results["stack"]["members"] == len(SEEDS) and results["stack"]["wall_s_is_share"]
        assert results["wall_s"] == pytest.approx(
            results["stack"]["wall_s_total"] / len(SEEDS), abs=1e-3)
        # The recorded config reruns this seed alone in its own folder (found complete there).
        again = run(results["config"])
        assert again["resumed_from"] == str(Path(results["output_dir"]) / RESULTS_NAME)
        assert again["seed"] == seed


def test_finished_seeds_are_reused(tmp_path: Path) -> None:
    cfg = _config(tmp_path, *CASES["regression-mse"], "trainer.max_epochs=2")
    first = run_seeds(cfg, [0, 1])
    second = run_seeds(cfg, [0, 1, 2])
    assert [r.get("resumed_from") is not None for r in second] == [True, True, False]
    assert second[0]["history"] == first[0]["history"]
    # The one seed left trains alone: a one-member stack is a single run.
    assert second[2]["status"] == "ok" and "stack" not in second[2]


def test_diverged_seed_leaves_the_others_alone(tmp_path: Path, monkeypatch) -> None:
    """Seed 1's weights turn NaN after epoch 1: it is diverged there, the others unchanged."""
    overrides = CASES["multiclass-ce"]
    clean = run_seeds(_config(tmp_path / "clean", *overrides), SEEDS)
    epoch_end = SeedStackModule.on_train_epoch_end

    def poison(self: SeedStackModule) -> None:
        if self.current_epoch == 1:
            with torch.no_grad():
                self.weights[0][1].fill_(float("nan"))
        epoch_end(self)

    monkeypatch.setattr(SeedStackModule, "on_train_epoch_end", poison)
    poisoned = run_seeds(_config(tmp_path / "poisoned", *overrides), SEEDS)
    sick = poisoned[1]
    assert sick["status"] == "diverged" and sick["diverged_epoch"] == 1
    assert "epoch 1" in sick["reason"]
    assert sick["history"] == clean[1]["history"][:1] and sick["epochs"] == 2
    assert "last" not in sick["metrics"] and sick["metrics"]["best"]["epoch"] == 0
    for k in (0, 2):
        assert poisoned[k]["status"] == "ok"
        assert poisoned[k]["history"] == clean[k]["history"]
        assert poisoned[k]["metrics"] == clean[k]["metrics"]


def test_bad_config_fails_every_seed_in_one_line(tmp_path: Path) -> None:
    together = run_seeds(_config(tmp_path, "optimizer.lr=-1"), [0, 1])
    for results in together:
        assert results["status"] == "failed"
        assert "optimizer.lr" in results["reason"] and "\n" not in results["reason"]
        assert read_results(Path(results["output_dir"]) / RESULTS_NAME)["status"] == "failed"


@pytest.mark.parametrize("task", ["embedding", "ranking"])
def test_refuses_other_tasks(tmp_path: Path, task: str) -> None:
    with pytest.raises(ValueError, match="tabular tasks") as err:
        run_seeds(_config(tmp_path, f"task={task}"), SEEDS)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.rglob(RESULTS_NAME))


def test_refuses_repeated_seeds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct seeds"):
        run_seeds(_config(tmp_path), [1, 1])


def test_plain_dict_config_names_each_seed(tmp_path: Path) -> None:
    from lossbench.run import to_plain

    config = to_plain(_config(tmp_path, *CASES["regression-mse"], "trainer.max_epochs=1"))
    together = run_seeds(config, [3, 4])
    assert [r["config"]["name"] for r in together] == ["regression-mse-s3", "regression-mse-s4"]
    assert [Path(r["output_dir"]).name for r in together] == [r["config"]["name"] for r in together]


def test_seeds_option_in_a_cli_sweep(tmp_path: Path) -> None:
    """`seeds=2` on the command line: each sweep job trains two seeds, one results.json each."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CI": "1", "LOSSBENCH_OUT": str(tmp_path / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "lossbench", "-m", "task=multiclass", "task.dataset=wine",
         "loss=ce,mae", "seeds=2", *FAST],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sweep done: 2 of 2 jobs, 4 runs (4 ran: 4 ok)" in proc.stdout
    found = [read_results(p) for p in sorted((tmp_path / "outputs").rglob(RESULTS_NAME))]
    assert sorted((r["loss"], r["seed"]) for r in found) == [
        ("ce", 0), ("ce", 1), ("mae", 0), ("mae", 1)
    ]
