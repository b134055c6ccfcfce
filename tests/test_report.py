"""lossbench.report on results.json trees written into tmp_path, and on a real regression sweep."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lossbench.report import build_report, detect_swept, main, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REG_SELECTION = {"metric": "val/mae", "mode": "min"}
BIN_SELECTION = {"metric": "val/auroc", "mode": "max"}


def write_run(folder: Path, *, task: str = "regression", loss: str, seed: int, score: float,
              status: str = "ok", extra: dict[str, object] | None = None,
              selection: dict[str, str] = REG_SELECTION, metrics: bool = True,
              dataset: str = "toy", perturb: dict[str, Any] | None = None,
              baselines: dict[str, float] | None = None) -> Path:
    """One results.json laid out like a Hydra multirun job folder; test = val + a small gap."""
    extra = extra or {}
    overrides = [f"loss={loss}", f"seed={seed}", *(f"{k}={v}" for k, v in extra.items())]
    run_dir = folder / f"{task}_{dataset}_{loss}_{seed}_{'_'.join(map(str, extra.values()))}"
    run_dir.mkdir(parents=True)
    val = selection["metric"].split("/")[1]
    if baselines is None:
        baselines = ({"mean_predictor": 100.0 + seed, "linear_regression": 50.0 + seed}
                     if selection["mode"] == "min" else
                     {"prior": 0.5, "logistic_regression": 0.8 + seed / 50})
    data: dict[str, object] = {
        "schema": 1, "status": status, "reason": None if status == "ok" else f"{status} run",
        "task": task, "kind": task, "dataset": dataset, "loss": loss, "seed": seed,
        "selection": selection, "overrides": overrides, "config": {}, "config_hash": "x",
        "perturb": perturb or {"name": "none"}, "epochs": 5, "diverged_epoch": None,
        "wall_s": 1.0 + seed, "output_dir": str(run_dir), "versions": {}, "git": None,
        "baselines": {k: {f"test/{val}": v} for k, v in baselines.items()},
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


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 losses x 3 seeds (huber better), one failed and one diverged run."""
    folder = tmp_path_factory.mktemp("tree") / "sweep"
    for seed in range(3):
        write_run(folder, loss="huber", seed=seed, score=10.0 + seed)
        write_run(folder, loss="mse", seed=seed, score=12.0 + seed * 1.5)
    write_run(folder, loss="huber", seed=3, score=0, status="failed", metrics=False)
    write_run(folder, loss="mse", seed=3, score=30.0, status="diverged")
    return folder


@pytest.fixture(scope="module")
def sweep_report(sweep: Path) -> dict[str, Any]:
    """The report of `sweep`, built once for the tests that read it."""
    return build_report([sweep])


@pytest.fixture
def swept(tmp_path: Path) -> Path:
    """Binary task under three imbalance settings; focal has two gammas."""
    folder = tmp_path / "frac_sweep"
    for frac in (1.0, 0.2, 0.05):
        pert = {"name": "imbalance", "positive_fraction": frac, "n_train_before": 300,
                "n_affected": int(300 * (1 - frac)), "n_train_after": 300}
        for seed in range(3):
            over = {"perturb.positive_fraction": frac}
            write_run(folder, task="binary", loss="bce", seed=seed, selection=BIN_SELECTION,
                      score=0.9 - (1 - frac) / 2 + seed / 100, extra=over, perturb=pert)
            for gamma in (1, 2):
                write_run(folder, task="binary", loss="focal", seed=seed, selection=BIN_SELECTION,
                          score=0.875 - (1 - frac) / 4 + gamma / 100 + seed / 100,
                          extra={**over, "loss.gamma": gamma}, perturb=pert)
    return folder


def assert_png(path: Path) -> None:
    """Valid PNG: right magic bytes and matplotlib reads it back as an image array."""
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def test_leaderboard_columns_counts_and_ranks(sweep: Path, sweep_report: dict) -> None:
    result = sweep_report
    out = sweep / "report"
    lb = pd.read_csv(out / "leaderboard.csv")
    assert list(lb.columns[:8]) == ["task", "kind", "problem", "entry", "loss", "dataset", "rank",
                                    "normalised"]
    for when in ("best", "last"):
        for metric in ("mae", "rmse"):
            for stat in ("mean", "lo", "hi"):
                assert f"{when}/test/{metric}_{stat}" in lb.columns
    rows = lb.set_index("entry")
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
    # Normalised: trivial baseline (mean predictor, 101.5 on average over 4 seeds) is 0, the
    # best loss (huber, 12) is 1; mse closes (101.5 - 14.5) / (101.5 - 12) of the gap.
    assert rows.loc["huber", "normalised"] == pytest.approx(1.0)
    assert rows.loc["mse", "normalised"] == pytest.approx((101.5 - 14.5) / (101.5 - 12.0))
    assert rows.loc["baseline:mean_predictor", "normalised"] == pytest.approx(0.0)
    assert set(result["leaderboard"]["entry"]) == {"huber", "mse", "baseline:linear_regression",
                                                   "baseline:mean_predictor"}


def test_a_loss_that_diverged_on_a_seed_ranks_last(tmp_path: Path) -> None:
    folder = tmp_path / "div"
    for seed in range(3):
        write_run(folder, loss="huber", seed=seed, score=10.0 + seed)
        write_run(folder, loss="mse", seed=seed, score=12.0 + seed)
        write_run(folder, loss="l1", seed=seed, score=11.0 + seed)
    write_run(folder, loss="huber", seed=3, score=0, status="diverged", metrics=False)
    lb = build_report([folder])["leaderboard"].set_index("entry")
    # huber's ok seeds are the best, but a blow-up on one seed puts it behind the others.
    assert (lb.loc["l1", "rank"], lb.loc["mse", "rank"], lb.loc["huber", "rank"]) == (1, 2, 3)
    md = (folder / "report" / "across.md").read_text()
    assert "diverged 1x" in md


def test_all_pairs_per_problem(sweep: Path, sweep_report: dict) -> None:
    out = sweep / "report"
    paired = pd.read_csv(out / "paired.csv")
    assert {"a", "b", "n_pairs", "mean_diff", "diff_lo", "diff_hi", "p_wilcoxon", "p_holm",
            "separated", "note"} <= set(paired.columns)
    assert len(paired) == 1  # huber-mse, once
    pair = paired.iloc[0]
    assert (pair["a"], pair["b"]) == ("huber", "mse")  # the better ranked first
    assert pair["n_pairs"] == 3 and pair["mean_diff"] == pytest.approx(-2.5)  # -2, -2.5, -3
    assert pair["diff_lo"] <= pair["mean_diff"] <= pair["diff_hi"] < 0
    assert not pair["separated"]  # 3 pairs cannot reach significance ...
    assert "needs 6" in pair["note"] and "excludes 0" in pair["note"]  # ... and it says why
    md = (out / "leaderboard.md").read_text()
    assert "## regression" in md and "### toy" in md and "All pairs" in md
    assert "huber is not separated from mse." in md
    assert "With fewer than 6 shared seeds no pair can be separated" in md
    assert "regression_toy_selection.png" in md


def test_all_pairs_with_enough_seeds(tmp_path: Path) -> None:
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    folder = tmp_path / "many_seeds"
    good = [10.0 + s for s in range(8)]
    bad = [12.0 + s + s / 10 for s in range(8)]
    same = [10.0 + s + (0.01 if s % 2 else -0.01) for s in range(8)]
    for seed in range(8):
        write_run(folder, loss="good", seed=seed, score=good[seed])
        write_run(folder, loss="bad", seed=seed, score=bad[seed])
        write_run(folder, loss="same", seed=seed, score=same[seed])
        write_run(folder, loss="twin", seed=seed, score=good[seed])
    paired = build_report([folder])["paired"]
    assert len(paired) == 6  # 4 losses: every pair once
    got = {frozenset((r.a, r.b)): r for r in paired.itertuples()}
    scores: dict[str, list[float]] = {}  # test MAE per seed, read back from the files
    for path in sorted(folder.rglob("results.json"), key=lambda p: json.loads(p.read_text())
                       ["seed"]):
        run = json.loads(path.read_text())
        scores.setdefault(run["loss"], []).append(run["metrics"]["best"]["test/mae"])
    raw = {}
    for key, row in got.items():
        a, b = row.a, row.b
        diff = np.subtract(scores[a], scores[b])
        raw[key] = stats.wilcoxon(diff).pvalue if diff.any() else 1.0
        assert row.mean_diff == pytest.approx(diff.mean())
        assert row.p_wilcoxon == pytest.approx(raw[key])
    keys = list(raw)
    holm = multipletests([raw[k] for k in keys], method="holm")[1]
    for key, p in zip(keys, holm, strict=True):
        assert got[key].p_holm == pytest.approx(p)
    assert got[frozenset(("good", "bad"))].separated
    assert "better" in got[frozenset(("good", "bad"))].note
    assert not got[frozenset(("good", "same"))].separated
    assert got[frozenset(("good", "twin"))].note == "identical on every shared seed"
    md = (folder / "report" / "leaderboard.md").read_text()
    assert "Identical on every shared seed: good = twin." in md


def test_plots_are_valid_pngs(sweep: Path, sweep_report: dict) -> None:
    result = sweep_report
    names = {p.name for p in result["plots"]}
    assert {"regression_toy_selection.png", "regression_toy_curves.png"} <= names
    for path in result["plots"]:
        assert path.parent == sweep / "report"
        assert_png(path)


def test_perturbation_settings_are_problems(swept: Path) -> None:
    result = build_report([swept])
    lb = result["leaderboard"]
    assert {"perturb", "perturb.positive_fraction", "loss.gamma"} <= set(lb.columns)
    losses = lb[~lb["entry"].str.startswith("baseline:")]
    assert len(losses) == 9  # (bce + focal x 2 gammas) x 3 settings
    assert set(losses["entry"]) == {"bce", "focal (gamma=1)", "focal (gamma=2)"}
    assert (losses["n_seeds"] == 3).all()
    assert losses["problem"].nunique() == 3
    assert "toy, imbalance positive_fraction=0.2" in set(losses["problem"])
    for _, group in losses.groupby("problem"):
        assert sorted(group["rank"]) == [1, 2, 3]  # ranked within each problem
    at_one = losses[losses["perturb.positive_fraction"] == 1.0].sort_values("rank")
    assert at_one.iloc[0]["entry"] == "bce"  # max mode
    at_low = losses[losses["perturb.positive_fraction"] == 0.05].sort_values("rank")
    assert list(at_low["entry"]) == ["focal (gamma=2)", "focal (gamma=1)", "bce"]
    assert len(result["paired"]) == 9  # 3 pairs x 3 problems
    names = {p.name for p in result["plots"]}
    assert "binary_vs_perturb.positive_fraction.png" in names
    # focal's gamma: one line, one figure per imbalance setting
    assert "binary_perturb.positive_fraction=0.05_vs_loss.gamma.png" in names
    for path in result["plots"]:
        assert_png(path)
    across = json.loads((swept / "report" / "across.json").read_text())["kinds"]["binary"]
    assert len(across["problems"]) == 3 and across["losses"][0] == "focal (gamma=2)"


def test_multiple_folders_and_bad_json(sweep: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_run(other, loss="l1", seed=0, score=9.0)
    bad = other / "broken" / "results.json"
    bad.parent.mkdir()
    bad.write_text('{"schema": 1, "status": ')
    out = tmp_path / "custom_report"
    result = build_report([sweep, other], out_dir=out)
    assert (out / "leaderboard.csv").exists() and (out / "index.html").exists()
    rows = result["leaderboard"].set_index("entry")
    assert rows.loc["l1", "rank"] == 1 and rows.loc["l1", "n_seeds"] == 1
    assert rows.loc["l1", "best/test/mae_lo"] == rows.loc["l1", "best/test/mae_hi"] == 10.0


def test_override_parsing_and_swept_detection() -> None:
    assert parse_overrides(["+a.b=1", "++c=x", "~d", "loss=mse", "hydra.job.chdir=true"]) == {
        "a.b": "1", "c": "x", "loss": "mse"}
    runs = [{"loss": "focal", "_overrides": {"loss.gamma": "1", "lr": "0.1", "seed": "0"}},
            {"loss": "focal", "_overrides": {"loss.gamma": "2", "lr": "0.1", "seed": "1"}},
            {"loss": "mse", "_overrides": {"lr": "0.1", "loss.delta": "1", "seed": "0"}}]
    assert detect_swept(runs) == ["loss.gamma"]  # loss.delta only varies across losses


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lossbench.report", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_cli_writes_every_file_and_logs_to_wandb(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli_report"
    proc = run_cli(str(sweep), "--out", str(out), "--wandb",
                   env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr
    assert "huber" in proc.stdout and "test mean absolute error" in proc.stdout
    assert "Verdict, regression:" in proc.stdout
    for name in ("leaderboard.csv", "leaderboard.md", "paired.csv", "across.md", "across.json",
                 "index.html"):
        assert (out / name).exists()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log,) = runs[0].rglob("*.wandb")
    data = log.read_bytes()
    for key in (b"leaderboard", b"across/regression/mean_rank", b"across/regression/pairwise",
                b"plots/regression_toy_selection"):
        assert key in data


@pytest.mark.parametrize("make", ["empty", "missing", "file"])
def test_cli_no_results(tmp_path: Path, make: str) -> None:
    folder = tmp_path / "nothing"
    if make == "empty":
        (folder / "sub").mkdir(parents=True)
    elif make == "file":
        folder.write_text("not a folder")
    proc = run_cli(str(folder))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lossbench.report: ")
    assert str(folder) in lines[0] and "Traceback" not in proc.stderr
    assert main([str(folder)]) == 2


def test_dashboard_view_built_offline(swept: Path) -> None:
    """The workspace view a logged-in user gets, built and checked, never saved."""
    pytest.importorskip("wandb_workspaces", reason="the dashboard needs wandb-workspaces")
    import wandb_workspaces.reports.v2 as wr

    from lossbench.report_wandb import dashboard

    result = build_report([swept])
    view = dashboard("someone", "lossbench", "sweep-group", result["tasks"])
    (section,) = view.sections
    assert section.name == "binary"
    line, parallel = section.panels
    assert isinstance(line, wr.LinePlot) and line.y == ["val/auroc"] and line.x == "epoch"
    assert line.groupby == wr.Config("loss.name")
    assert isinstance(parallel, wr.ParallelCoordinatesPlot)
    axes = [c.metric for c in parallel.columns]
    assert axes[:3] == [wr.Config("loss.name"), wr.Config("task.dataset"),
                        wr.Config("perturb.name")]
    assert wr.Config("perturb.positive_fraction") in axes and wr.Config("loss.gamma") in axes
    assert axes[-1] == wr.SummaryMetric("best/test/auroc")
    pinned = view.runset_settings.pinned_columns
    assert {"summary:best/test/auroc", "summary:last/test/auroc", "config:loss.name"} <= set(pinned)
    assert "sweep-group" in str(view.runset_settings.filters)
    view._to_model()  # serialises as it would be sent, without a server


def test_every_run_failed(tmp_path: Path) -> None:
    folder = tmp_path / "failed"
    for seed in range(2):
        for loss in ("huber", "mse"):
            write_run(folder, loss=loss, seed=seed, score=0, status="failed", metrics=False)
    result = build_report([folder])
    assert "no cross-problem ranking" in result["verdicts"]["regression"]
    assert (folder / "report" / "index.html").exists()


def test_cli_bad_rope(sweep: Path) -> None:
    proc = run_cli(str(sweep), "--rope", "2")
    assert proc.returncode == 2 and proc.stderr.strip() == "lossbench.report: --rope must be in " \
        "[0, 1), got 2.0"


def test_cli_unwritable_out(sweep: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = run_cli(str(sweep), "--out", str(blocker / "report"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot write the report" in proc.stderr
