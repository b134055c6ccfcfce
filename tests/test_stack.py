"""Stacked sweeps: jobs that differ only in seed, loss or perturbation train as one stack, and
each still gets the folder, results.json and progress line it gets alone."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lossbench.config import compose_config
from lossbench.environment import to_plain
from lossbench.results import RESULTS_NAME, read_results
from lossbench.run import run, run_jobs
from lossbench.stack import SeedStackModule

# MLP dropout is 0 by default: stacked and separate runs are then equal up to float rounding.
FAST = ["logger=none", "trainer.progress_bar=false", "threads=1", "model.hidden_dims=[32]",
        "trainer.max_epochs=4"]
# 2 learning rates x 2 losses x 2 noise rates x 2 seeds: two stacks of 8 (optimizer settings
# differ between them, so they cannot share one).
SWEEP = ("-m", "task=multiclass", "task.dataset=wine", "perturb=label_noise",
         "perturb.rate=0.0,0.3", "loss=ce,mae", "seed=0,1", "optimizer.lr=0.01,0.003", *FAST)


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b))


def _assert_same_run(alone: dict, stacked: dict) -> None:
    assert stacked["status"] == alone["status"] == "ok", stacked["reason"]
    assert stacked["config_hash"] == alone["config_hash"]
    assert (stacked["loss"], stacked["seed"]) == (alone["loss"], alone["seed"])
    assert stacked["baselines"] == alone["baselines"] and stacked["perturb"] == alone["perturb"]
    for which in ("best", "last"):
        row, other = alone["metrics"][which], stacked["metrics"][which]
        assert row.keys() == other.keys()
        assert all(_close(v, other[k]) for k, v in row.items()), (which, row, other)
    assert len(stacked["history"]) == len(alone["history"])
    for row, other in zip(alone["history"], stacked["history"], strict=True):
        assert all(_close(v, other[k]) for k, v in row.items()), (row, other)


def _jobs(sweep_dir: Path) -> dict[str, dict]:
    """Each job folder's results, by folder name."""
    return {p.parent.name: read_results(p) for p in sorted(sweep_dir.glob(f"*/{RESULTS_NAME}"))}


@pytest.fixture(scope="module")
def sweeps(new_cli):
    """The sweep run stacked (the default) and with stack=false, side by side."""
    stacked = new_cli("stacked").start(*SWEEP)
    apart = new_cli("apart").start(*SWEEP, "stack=false")
    return stacked.wait(600), apart.wait(600)


def test_a_sweep_stacks_its_compatible_jobs_with_the_results_of_separate_runs(sweeps) -> None:
    stacked, apart = sweeps
    for proc in sweeps:
        assert proc.returncode == 0, proc.stderr
        assert "sweep done: 16 of 16 jobs (16 ran: 16 ok)" in proc.stdout
        assert sum(line.startswith("[") for line in proc.stdout.splitlines()) == 16
    (dir_stacked,) = Path(stacked.cwd).glob("outputs/sweeps/*/*")
    (dir_apart,) = Path(apart.cwd).glob("outputs/sweeps/*/*")
    together, alone = _jobs(dir_stacked), _jobs(dir_apart)
    assert list(together) == list(alone) and len(together) == 16
    for name, results in together.items():
        assert (dir_stacked / name / ".hydra" / "config.yaml").exists()  # its own Hydra job
        stack = results["stack"]
        assert stack["members"] == 8 and stack["wall_s_is_share"]
        assert results["wall_s"] == pytest.approx(stack["wall_s_total"] / 8, abs=1e-3)
        assert "stack" not in alone[name]
        _assert_same_run(alone[name], results)


def test_a_stacked_jobs_stored_config_reruns_that_job_alone(sweeps, tmp_path: Path) -> None:
    stacked, _ = sweeps
    (path,) = Path(stacked.cwd).glob(f"outputs/sweeps/*/*/5_*/{RESULTS_NAME}")
    results = read_results(path)
    config = {**results["config"], "output_dir": str(tmp_path / "again"), "resume": False}
    again = run(config)
    assert "stack" not in again and again["config_hash"] == results["config_hash"]
    _assert_same_run(again, results)


def _member(tmp_path: Path, *overrides: str, task: str = "multiclass") -> tuple[dict, None]:
    cfg = compose_config([*FAST, f"task={task}", *overrides])
    name = "-".join(o.partition("=")[2] for o in overrides)
    return {**to_plain(cfg), "output_dir": str(tmp_path / name)}, None


def test_a_member_that_blows_up_is_diverged_alone_in_a_mixed_loss_stack(
    tmp_path: Path, monkeypatch,
) -> None:
    """Member 1 (mae) turns NaN after epoch 1: diverged there; the ce and sce members go on."""
    members = ["loss=ce", "loss=mae", "loss=sce"]
    clean = run_jobs([_member(tmp_path / "clean", m, "task.dataset=wine") for m in members])
    epoch_end = SeedStackModule.on_train_epoch_end

    def poison(self: SeedStackModule) -> None:
        if self.current_epoch == 1:
            with torch.no_grad():
                self.weights[0][1].fill_(float("nan"))
        epoch_end(self)

    monkeypatch.setattr(SeedStackModule, "on_train_epoch_end", poison)
    poisoned = run_jobs([_member(tmp_path / "poisoned", m, "task.dataset=wine") for m in members])
    assert [r["loss"] for r in poisoned] == ["ce", "mae", "sce"]
    sick = poisoned[1]
    assert sick["status"] == "diverged" and sick["diverged_epoch"] == 1
    assert sick["divergence"]["rule"] == "nonfinite"
    assert sick["history"] == clean[1]["history"][:1] and "last" not in sick["metrics"]
    for k in (0, 2):
        assert poisoned[k]["status"] == "ok" and poisoned[k]["stack"]["members"] == 3
        assert poisoned[k]["history"] == clean[k]["history"]
        assert poisoned[k]["metrics"] == clean[k]["metrics"]


def test_a_stack_that_fails_trains_its_jobs_one_by_one(tmp_path: Path, user_losses) -> None:
    """A user loss that raises fails its own job only; the stack's other job trains alone."""
    fine, boom = run_jobs([
        _member(tmp_path, "loss=custom", f"loss._target_=my_losses.{name}", task="regression")
        for name in ("MyLoss", "Boom")])
    assert boom["status"] == "failed" and "\n" not in boom["reason"]
    assert fine["status"] == "ok" and "stack" not in fine
    assert fine["loss"] == "MyLoss"  # loss_label, as a single run names it


def test_tasks_that_cannot_stack_run_as_before(cli) -> None:
    proc = cli("-m", "task=ranking", "seed=0,1", *FAST)
    assert proc.returncode == 0, proc.stderr
    found = [read_results(p) for p in Path(proc.cwd).rglob(RESULTS_NAME)]
    assert len(found) == 2 and all("stack" not in r and r["status"] == "ok" for r in found)


def test_the_sweeper_writes_a_manifest_of_axes_jobs_folders_and_stacks(sweeps) -> None:
    import json

    stacked, apart = sweeps
    (path,) = Path(stacked.cwd).glob("outputs/sweeps/*/*/manifest.json")
    manifest = json.loads(path.read_text())
    assert manifest["total"] == len(manifest["jobs"]) == 16
    assert set(manifest["axes"]) == {"perturb.rate", "loss", "seed", "optimizer.lr"}
    assert sorted(len(s) for s in manifest["stacks"]) == [8, 8]
    assert sorted(n for s in manifest["stacks"] for n in s) == list(range(16))
    for job in manifest["jobs"]:
        results = read_results(Path(job["folder"]) / RESULTS_NAME)
        assert results is not None and results["overrides"] == job["overrides"]
    (path,) = Path(apart.cwd).glob("outputs/sweeps/*/*/manifest.json")
    assert json.loads(path.read_text())["stacks"] == []
