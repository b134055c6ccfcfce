"""`python -m lossbench ...` as a user runs it: what it prints, what it writes, where."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

# Lightning's console chatter lossbench keeps off the user's screen.
LIGHTNING_NOISE = (
    "GPU available", "TPU available", "HPU available", "💡 Tip", "does not have many workers",
    "log_every_n_steps", "Total params", "| Name", "LOCAL_RANK", "Seed set", "Traceback",
)
# Signs of a progress bar (tqdm or rich) in captured output.
PROGRESS_BAR = ("it/s", "Epoch 0:", "━━", "██", "\r")


def results_under(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("results.json"))]


@pytest.fixture(scope="module")
def runs(new_cli, custom_loss_sweep) -> dict[str, subprocess.CompletedProcess[str]]:
    """The commands of this module, run side by side (the custom-loss sweep is already going)."""
    # threads=1: torch's default of one thread per core makes these tiny MLPs many times
    # slower on a busy 2-core machine (threads spin); results do not depend on it.
    started = {
        "defaults": new_cli("defaults").start("threads=1"),
        "huber": new_cli("huber").start(
            "task=regression", "loss=huber", "logger=none", "trainer.max_epochs=10", "threads=1",
        ),
        # Binary focal, multiclass kl_div (and focal), and binary kl_div that does not fit.
        "classification": new_cli("classification").start(
            "-m", "task=binary,multiclass", "loss=focal,kl_div", "logger=none",
            "trainer.max_epochs=2", "threads=1",
        ),
    }
    done = {name: run.wait() for name, run in started.items()}
    done["custom"] = custom_loss_sweep.wait()
    return done


def sweep_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    """The sweep's folder, from its closing `sweep done: ... in <dir>` line."""
    match = re.search(r"sweep done: .* in (\S+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return proc.cwd / match.group(1)


def printed_results(proc: subprocess.CompletedProcess[str]) -> dict:
    """The results.json whose path the run's summary printed."""
    match = re.search(r"results: (\S+results\.json)", proc.stdout)
    assert match, proc.stdout
    return json.loads(Path(match.group(1)).read_text())


@pytest.mark.parametrize("name", ["defaults", "huber"])
def test_single_run_prints_a_short_summary(runs, name: str) -> None:
    proc = runs[name]
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert 3 <= len(lines) <= 10, proc.stdout
    loss = "mse" if name == "defaults" else "huber"
    assert f"regression · {loss} · seed 0" in lines[0]
    assert "test at best val" in proc.stdout
    for metric in ("mae", "rmse", "r2"):
        assert f" {metric} " in proc.stdout
    results = printed_results(proc)
    assert (results["status"], results["task"], results["loss"]) == ("ok", "regression", loss)
    assert f"mae {results['metrics']['best']['test/mae']:.4g}" in proc.stdout


@pytest.mark.parametrize("name", ["defaults", "huber"])
def test_no_lightning_noise_and_no_progress_bar(runs, name: str) -> None:
    output = runs[name].stdout + runs[name].stderr
    for noise in LIGHTNING_NOISE + PROGRESS_BAR:
        assert noise not in output, f"{noise!r} in output:\n{output}"
    assert runs[name].stderr.strip() == ""


def test_defaults_match_linear_regression(runs) -> None:
    results = printed_results(runs["defaults"])
    assert results["config"]["trainer"]["max_epochs"] == 100
    ours = results["metrics"]["best"]["test/mae"]
    linear = results["baselines"]["linear_regression"]["test/mae"]
    assert ours <= 1.15 * linear, (ours, linear)
    assert f"baseline linear_regression: mae {linear:.4g}" in runs["defaults"].stdout


def test_default_logger_is_wandb_offline_in_the_run_folder(runs) -> None:
    results = printed_results(runs["defaults"])
    run_dirs = list((Path(results["output_dir"]) / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    assert list(run_dirs[0].glob("run-*.wandb"))


def test_logger_none_leaves_nothing_of_wandb(runs) -> None:
    results = printed_results(runs["huber"])
    assert results["config"]["logger"] == {"name": "none"}
    cwd = runs["huber"].cwd
    assert Path(results["output_dir"]).is_relative_to(cwd)
    assert (cwd / "home").is_dir()  # HOME too: no ~/.config/wandb, no ~/.netrc
    assert [p for p in cwd.rglob("*") if "wandb" in p.name.lower()] == []


def test_help_lists_tasks_and_losses(cli) -> None:
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    task_line = next(line for line in proc.stdout.splitlines() if line.startswith("task:"))
    loss_line = next(line for line in proc.stdout.splitlines() if line.startswith("loss:"))
    assert {"regression", "binary", "multiclass"} <= set(re.split(r"[:,\s]+", task_line))
    for loss in ("huber", "focal", "mse", "kl_div", "custom"):
        assert loss in re.split(r"[:,\s]+", loss_line)
    assert not list(cli.cwd.rglob("results.json"))


def test_binary_focal_and_multiclass_kl_div_train(runs) -> None:
    proc = runs["classification"]
    by_pair = {(r["task"], r["loss"]): r for r in results_under(sweep_dir(proc))}
    focal = by_pair["binary", "focal"]
    assert focal["status"] == "ok", focal["reason"]
    assert focal["metrics"]["best"]["test/auroc"] > 0.9
    kl_div = by_pair["multiclass", "kl_div"]
    assert kl_div["status"] == "ok", kl_div["reason"]
    assert kl_div["metrics"]["best"]["test/acc"] > 0.5
    assert by_pair["multiclass", "focal"]["status"] == "ok"


def test_a_loss_that_does_not_fit_fails_its_job_only(runs) -> None:
    proc = runs["classification"]
    bad = [r for r in results_under(sweep_dir(proc)) if r["status"] == "failed"]
    assert [(r["task"], r["loss"]) for r in bad] == [("binary", "kl_div")]
    assert "does not fit task 'binary'" in bad[0]["reason"]
    assert "focal" in bad[0]["reason"]  # names the losses that fit
    assert proc.returncode == 1
    assert "1 job(s) of the sweep failed" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


# Custom losses by import path, without editing lossbench (the sweep in conftest.py).


def custom_results(runs) -> dict[tuple[str, float], dict]:
    found = results_under(sweep_dir(runs["custom"]))
    return {(r["config"]["loss"]["_target_"], r["config"]["optimizer"]["lr"]): r for r in found}


@pytest.mark.parametrize("target", ["my_losses.MyLoss", "my_losses.MyL1"])
def test_custom_loss_by_import_path_trains(runs, target: str) -> None:
    results = custom_results(runs)[target, 0.003]
    assert results["status"] == "ok", results["reason"]
    assert results["task"] == "regression"
    assert 30 < results["metrics"]["best"]["test/mae"] < 120
