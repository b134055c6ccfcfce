"""Tests for lossbench.report on realistic results.json trees written into tmp_path."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lossbench.report import build_report, detect_swept, main, parse_overrides
from lossbench.stats import bootstrap_mean_ci, holm, t_interval, wilcoxon_p

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REG_SELECTION = {"metric": "val/mae", "mode": "min"}
BIN_SELECTION = {"metric": "val/auroc", "mode": "max"}


def write_run(folder: Path, *, task: str = "regression", loss: str, seed: int, score: float,
              status: str = "ok", extra: dict[str, object] | None = None,
              selection: dict[str, str] = REG_SELECTION, metrics: bool = True) -> Path:
    """One results.json laid out like a Hydra multirun job folder."""
    extra = extra or {}
    overrides = [f"loss={loss}", f"seed={seed}", *(f"{k}={v}" for k, v in extra.items())]
    run_dir = folder / f"{task}_{loss}_{seed}_{'_'.join(map(str, extra.values()))}"
    run_dir.mkdir(parents=True)
    val = selection["metric"].split("/")[1]
    data: dict[str, object] = {
        "schema": 1, "status": status, "reason": None if status == "ok" else f"{status} run",
        "task": task, "kind": task, "dataset": "toy", "loss": loss, "seed": seed,
        "selection": selection, "overrides": overrides, "config": {}, "config_hash": "x",
        "perturb": {"name": "none"}, "epochs": 5, "diverged_epoch": None,
        "wall_s": 1.0 + seed, "output_dir": str(run_dir), "versions": {}, "git": None,
        "baselines": {"mean_predictor": {f"test/{val}": 100.0 + seed},
                      "linear_regression": {f"test/{val}": 50.0 + seed}}
        if selection["mode"] == "min"
        else {"prior": {f"test/{val}": 0.5}, "logistic": {f"test/{val}": 0.8 + seed / 50}},
    }
    gap = 1.0 if selection["mode"] == "min" else -0.01  # test a bit worse than val
    if metrics:
        data["metrics"] = {
            "best": {"epoch": 3, f"val/{val}": score, f"test/{val}": score + gap,
                     "test/rmse": 2 * score},
            "last": {"epoch": 4, f"val/{val}": score + 0.5, f"test/{val}": score + gap + 0.5,
                     "test/rmse": 2 * score + 1},
        }
        data["history"] = [{"epoch": e, "train/loss": 1.0 / (e + 1), f"val/{val}": score + 5 - e}
                           for e in range(5)]
    path = run_dir / "results.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 losses x 3 seeds (huber better), one failed and one diverged run."""
    folder = tmp_path / "sweep"
    for seed in range(3):
        write_run(folder, loss="huber", seed=seed, score=10.0 + seed)
        write_run(folder, loss="mse", seed=seed, score=12.0 + seed * 1.5)
    write_run(folder, loss="huber", seed=3, score=0, status="failed", metrics=False)
    write_run(folder, loss="mse", seed=3, score=30.0, status="diverged")
    return folder


@pytest.fixture
def swept(tmp_path: Path) -> Path:
    """Binary task sweeping perturb.fraction for both losses and loss.gamma for focal."""
    folder = tmp_path / "frac_sweep"
    for frac in (0.0, 0.2, 0.4):
        for seed in range(3):
            write_run(folder, task="binary", loss="bce", seed=seed, selection=BIN_SELECTION,
                      score=0.9 - frac / 2 + seed / 100, extra={"perturb.fraction": frac})
            for gamma in (1, 2):
                write_run(folder, task="binary", loss="focal", seed=seed, selection=BIN_SELECTION,
                          score=0.875 - frac / 4 + gamma / 100 + seed / 100,
                          extra={"perturb.fraction": frac, "loss.gamma": gamma})
    return folder


def assert_png(path: Path) -> None:
    """Valid PNG: right magic bytes and matplotlib reads it back as an image array."""
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def test_leaderboard_columns_counts_and_ranks(sweep: Path) -> None:
    result = build_report([sweep])
    out = sweep / "report"
    lb = pd.read_csv(out / "leaderboard.csv")
    assert list(lb.columns[:11]) == ["task", "loss", "rank", "n_seeds", "n_diverged", "n_failed",
                                     "wall_s", "selection", "mode", "best/test/mae_mean",
                                     "best/test/mae_lo"]
    for when in ("best", "last"):
        for metric in ("mae", "rmse"):
            for stat in ("mean", "lo", "hi"):
                assert f"{when}/test/{metric}_{stat}" in lb.columns
    rows = lb.set_index("loss")
    assert rows.loc["huber", "n_seeds"] == 3 and rows.loc["huber", "n_failed"] == 1
    assert rows.loc["mse", "n_seeds"] == 3 and rows.loc["mse", "n_diverged"] == 1
    assert rows.loc["huber", "rank"] == 1 and rows.loc["mse", "rank"] == 2
    assert rows.loc["huber", "best/test/mae_mean"] == pytest.approx(12.0)  # 11, 12, 13
    assert rows.loc["mse", "best/test/mae_mean"] == pytest.approx(14.5)  # diverged excluded
    assert rows.loc["huber", "last/test/mae_mean"] == pytest.approx(12.5)
    assert rows.loc["huber", "wall_s"] == pytest.approx(2.0)
    for col in ("best/test/mae", "best/test/rmse", "last/test/mae"):
        have = lb[lb[f"{col}_mean"].notna()]  # baselines only report mae
        assert len(have) >= 2
        assert (have[f"{col}_lo"] <= have[f"{col}_mean"]).all()
        assert (have[f"{col}_mean"] <= have[f"{col}_hi"]).all()
        assert (have[f"{col}_lo"] < have[f"{col}_hi"]).all()
    base = rows.loc["baseline:linear_regression"]
    assert base["n_seeds"] == 4 and math.isnan(base["rank"])  # all 4 seeds carried baselines
    assert base["best/test/mae_mean"] == pytest.approx(51.5)
    assert set(result["leaderboard"]["loss"]) == {"huber", "mse", "baseline:linear_regression",
                                                  "baseline:mean_predictor"}


def test_paired_and_markdown(sweep: Path) -> None:
    build_report([sweep])
    out = sweep / "report"
    paired = pd.read_csv(out / "paired.csv").set_index("loss")
    assert {"best_loss", "n_pairs", "mean_diff", "diff_lo", "diff_hi", "p_wilcoxon", "p_holm",
            "indistinguishable_from_best"} <= set(paired.columns)
    assert (paired["best_loss"] == "huber").all()
    mse = paired.loc["mse"]
    assert mse["n_pairs"] == 3 and mse["mean_diff"] == pytest.approx(2.5)  # diffs 2, 2.5, 3
    assert mse["diff_lo"] <= mse["mean_diff"] <= mse["diff_hi"]
    assert bool(mse["indistinguishable_from_best"])  # 3 pairs cannot reach significance
    assert bool(paired.loc["huber", "is_best"]) and paired.loc["huber", "mean_diff"] == 0
    md = (out / "leaderboard.md").read_text()
    assert "## regression" in md and "Paired comparison" in md and "huber" in md
    assert "indistinguishable_from_best" in md and "regression_selection.png" in md


def test_paired_detects_clear_difference(tmp_path: Path) -> None:
    folder = tmp_path / "many_seeds"
    for seed in range(8):
        write_run(folder, loss="good", seed=seed, score=10.0 + seed)
        write_run(folder, loss="bad", seed=seed, score=12.0 + seed + seed / 10)
        write_run(folder, loss="same", seed=seed, score=10.0 + seed + (0.01 if seed % 2 else -0.01))
    paired = build_report([folder])["paired"].set_index("loss")
    assert paired.loc["bad", "n_pairs"] == 8 and paired.loc["bad", "p_holm"] < 0.05
    assert not paired.loc["bad", "indistinguishable_from_best"]
    assert paired.loc["same", "indistinguishable_from_best"]
    assert paired.loc["same", "p_holm"] >= paired.loc["same", "p_wilcoxon"]


def test_plots_are_valid_pngs(sweep: Path) -> None:
    result = build_report([sweep])
    names = {p.name for p in result["plots"]}
    assert {"regression_selection.png", "regression_curves.png"} <= names
    for path in result["plots"]:
        assert path.parent == sweep / "report"
        assert_png(path)


def test_swept_parameters(swept: Path) -> None:
    result = build_report([swept])
    lb = result["leaderboard"]
    assert {"perturb.fraction", "loss.gamma"} <= set(lb.columns)
    losses = lb[~lb["loss"].str.startswith("baseline:")]
    assert len(losses) == 9  # (bce + focal x 2 gammas) x 3 fractions
    assert (losses["n_seeds"] == 3).all()
    for _, group in losses.groupby("perturb.fraction"):
        assert sorted(group["rank"]) == [1, 2, 3]  # ranked within each fraction
    at_zero = losses[losses["perturb.fraction"] == 0.0].set_index(["loss", "loss.gamma"],
                                                                   drop=False)
    assert at_zero.iloc[0]["loss"] == "bce" and at_zero.iloc[0]["rank"] == 1  # max mode
    at_high = losses[losses["perturb.fraction"] == 0.4].sort_values("rank")
    assert list(at_high["loss.gamma"].fillna(0)) == [2, 1, 0]
    bases = lb[lb["loss"] == "baseline:prior"]
    assert len(bases) == 3 and bases["loss.gamma"].isna().all()
    paired = result["paired"]
    assert len(paired) == 9 and set(paired["perturb.fraction"]) == {0.0, 0.2, 0.4}
    names = {p.name for p in result["plots"]}
    assert {"binary_vs_perturb.fraction.png", "binary_vs_loss.gamma.png",
            "binary_perturb.fraction=0.2_selection.png"} <= names
    for path in result["plots"]:
        assert_png(path)
    csv = pd.read_csv(swept / "report" / "leaderboard.csv")
    assert list(csv.columns[:4]) == ["task", "loss", "perturb.fraction", "loss.gamma"]


def test_multiple_folders_and_bad_json(sweep: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_run(other, loss="l1", seed=0, score=9.0)
    bad = other / "broken" / "results.json"
    bad.parent.mkdir()
    bad.write_text('{"schema": 1, "status": ')
    out = tmp_path / "custom_report"
    result = build_report([sweep, other], out_dir=out)
    assert (out / "leaderboard.csv").exists() and not (sweep / "report").exists()
    rows = result["leaderboard"].set_index("loss")
    assert rows.loc["l1", "rank"] == 1 and rows.loc["l1", "n_seeds"] == 1
    assert rows.loc["l1", "best/test/mae_lo"] == rows.loc["l1", "best/test/mae_hi"] == 10.0


def test_override_parsing_and_swept_detection() -> None:
    assert parse_overrides(["+a.b=1", "++c=x", "~d", "loss=mse", "hydra.job.chdir=true"]) == {
        "a.b": "1", "c": "x", "loss": "mse"}
    runs = [{"loss": "focal", "_overrides": {"loss.gamma": "1", "lr": "0.1", "seed": "0"}},
            {"loss": "focal", "_overrides": {"loss.gamma": "2", "lr": "0.1", "seed": "1"}},
            {"loss": "mse", "_overrides": {"lr": "0.1", "loss.delta": "1", "seed": "0"}}]
    assert detect_swept(runs) == ["loss.gamma"]  # loss.delta only varies across losses


def test_stats_helpers() -> None:
    assert t_interval([3.0]) == (3.0, 3.0, 3.0)
    mean, lo, hi = t_interval([1.0, 2.0, 3.0, float("nan")])
    assert mean == 2.0 and lo == pytest.approx(2 - 4.302653 / math.sqrt(3), rel=1e-5)
    assert hi == pytest.approx(4 - lo)
    assert bootstrap_mean_ci([1.0, 1.0]) == (1.0, 1.0)
    lo, hi = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= lo < 2.5 < hi <= 4.0 and bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0]) == (lo, hi)
    assert wilcoxon_p([0.0, 0.0]) == 1.0
    assert wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(2 / 64)
    adjusted = holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lossbench.report", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_cli_ok(sweep: Path) -> None:
    proc = run_cli(str(sweep))
    assert proc.returncode == 0, proc.stderr
    assert "huber" in proc.stdout and "best/test/mae" in proc.stdout
    assert (sweep / "report" / "leaderboard.md").exists()


@pytest.mark.parametrize("make", [True, False], ids=["empty", "missing"])
def test_cli_no_results(tmp_path: Path, make: bool) -> None:
    folder = tmp_path / "nothing"
    if make:
        (folder / "sub").mkdir(parents=True)
    proc = run_cli(str(folder))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossbench.report: ")
    assert str(folder) in lines[0] and "Traceback" not in proc.stderr
    assert main([str(folder)]) == 2


def test_wandb_offline(sweep: Path) -> None:
    proc = run_cli(str(sweep), "--wandb", env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr
    runs = list((sweep / "report" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_report_of_a_real_two_loss_two_seed_sweep(tmp_path: Path) -> None:
    """Train for real (2 losses x 2 seeds, few epochs), then report what the sweep wrote."""
    env = {**os.environ, "CI": "1", "LOSSBENCH_OUT": str(tmp_path / "outputs")}
    sweep_cmd = [sys.executable, "-m", "lossbench", "-m", "loss=l1,mse", "seed=0,1",
                 "trainer.max_epochs=3", "logger=none"]
    proc = subprocess.run(sweep_cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    (folder,) = (tmp_path / "outputs" / "sweeps").glob("*/*")
    report = subprocess.run([sys.executable, "-m", "lossbench.report", str(folder)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    board = pd.read_csv(folder / "report" / "leaderboard.csv")
    losses = board[~board["loss"].str.startswith("baseline:")].set_index("loss")
    assert sorted(losses.index) == ["l1", "mse"]
    assert (losses["n_seeds"] == 2).all()
    for column in ("best/test/mae", "last/test/rmse"):
        assert (losses[f"{column}_lo"] <= losses[f"{column}_mean"]).all()
        assert (losses[f"{column}_mean"] <= losses[f"{column}_hi"]).all()
    assert "baseline:linear_regression" in set(board["loss"])
    for png in (folder / "report").glob("*.png"):
        assert_png(png)
    assert "l1" in report.stdout and "mse" in report.stdout
