"""Never a wrong "ok": blow-ups are diverged, trials that blow up late score worst, retries,
stream and device give the same numbers, and every message names what the user can change."""

from __future__ import annotations

import json
import math
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import Cli

# A user's losses for these tests: one that blows up after a few good epochs, one that fails
# on its first attempt only (a flaky file system, say).
LOSSES = '''
    import os
    from pathlib import Path

    import torch
    from torch import nn


    class LateNaN(nn.Module):
        """MSE for the first `good_steps` calls, then NaN: a run that diverges late."""

        def __init__(self, good_steps=15):
            super().__init__()
            self.good_steps, self.calls = good_steps, 0

        def forward(self, prediction, target):
            self.calls += 1
            loss = torch.nn.functional.mse_loss(prediction, target)
            return loss if self.calls <= self.good_steps else loss * float("nan")


    class FailsOnce(nn.Module):
        """MSE, except that the first attempt of a run raises (a marker file remembers it)."""

        def forward(self, prediction, target):
            marker = Path(os.environ["FLAKY_MARKER"])
            if not marker.exists():
                marker.write_text("failed once")
                raise OSError("transient: the disk went away")
            return torch.nn.functional.mse_loss(prediction, target)
'''


@pytest.fixture
def user(tmp_path: Path) -> Cli:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "test_user_losses.py").write_text(textwrap.dedent(LOSSES))
    return Cli(tmp_path, lib)


def results_of(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("results.json"))]


# --- blow-ups ---------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [5, 100])
def test_the_readme_blow_up_is_diverged(cli, epochs: int) -> None:
    proc = cli("task=regression", "loss=mse", "optimizer.lr=1e4", "logger=none",
               f"trainer.max_epochs={epochs}", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    (results,) = results_of(cli.cwd / "run")
    assert results["status"] == "diverged"
    assert results["divergence"]["rule"] in ("nonfinite", "loss_blowup", "metric_blowup")
    assert results["divergence"]["epoch"] == results["diverged_epoch"] == 0
    assert "diverged in epoch 0" in proc.stdout


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_a_learning_rate_of_ten_blows_up_regression(cli, loss: str) -> None:
    proc = cli("task=regression", f"loss={loss}", "optimizer.lr=10", "logger=none",
               "trainer.max_epochs=20", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    (results,) = results_of(cli.cwd / "run")
    assert results["status"] == "diverged", results["metrics"]
    assert results["reason"].startswith(f"diverged in epoch {results['diverged_epoch']} (")


def test_a_collapse_to_a_constant_predictor_is_a_result(cli) -> None:
    """bce at lr 3 saturates its sigmoid: AUROC 0.5 with a finite loss, not a blow-up."""
    proc = cli("task=binary", "loss=bce", "optimizer.lr=3", "logger=none",
               "trainer.max_epochs=10", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    (results,) = results_of(cli.cwd / "run")
    assert results["status"] == "ok" and results["divergence"] is None
    assert results["metrics"]["last"]["test/auroc"] == pytest.approx(0.5)


def test_the_rule_can_be_turned_off(cli) -> None:
    proc = cli("task=regression", "loss=huber", "optimizer.lr=10", "logger=none",
               "trainer.max_epochs=3", "divergence.loss_factor=null",
               "divergence.metric_factor=null", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    (results,) = results_of(cli.cwd / "run")
    # Huber's gradient is bounded: with the blow-up rules off, nothing is NaN and it is "ok",
    # far worse than predicting the mean (what the rules exist to catch).
    assert results["status"] == "ok"
    assert results["metrics"]["last"]["test/mae"] > 5 * results["baselines"][
        "mean_predictor"]["test/mae"]


def test_a_stacked_member_that_blows_up_is_diverged_alone(cli) -> None:
    """seeds= runs the same rule per member: the blown-up members are diverged, with the rule."""
    proc = cli("task=regression", "loss=huber", "optimizer.lr=10", "seeds=3", "logger=none",
               "trainer.max_epochs=20", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    found = results_of(cli.cwd / "run")
    assert len(found) == 3
    assert all(r["status"] == "diverged" and r["divergence"]["rule"] for r in found)


def test_an_embedding_run_gone_nan_is_diverged_not_failed(cli) -> None:
    """Found by the fuzz test: NaN embeddings reached pml's evaluation, which raised; the run
    is diverged (and, not retried, prints no warning lines)."""
    proc = cli("task=embedding", "loss=contrastive", "loss.p=1.031", "optimizer=sgd",
               "model.dropout=0.09", "+loss.reduction=sum", "loss.distance=euclidean",
               "loss.reducer=avg_nonzero", "batch_size=52", "perturb=label_noise",
               "perturb.rate=0.326", "divergence.metric_factor=1000", "retries=1",
               "logger=none", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    (results,) = results_of(cli.cwd / "run")
    assert results["status"] == "diverged" and results["divergence"]["rule"] == "nonfinite"
    assert results["attempts"] == 1 and proc.stderr.strip() == ""


# --- Optuna: a trial that diverges late scores worst -----------------------------------------


def test_a_trial_that_diverges_late_scores_worst(user) -> None:
    out = user.cwd / "study"
    proc = user("-m", "+tune=lr", "loss=custom", "loss._target_=test_user_losses.LateNaN",
                "tune_trials=2", "trainer.max_epochs=8", "logger=none", "threads=1",
                f"hydra.sweep.dir={out}")
    assert proc.returncode == 0, proc.stderr
    found = results_of(out)
    assert len(found) == 2
    for results in found:  # a few good epochs, then NaN
        assert results["status"] == "diverged" and results["diverged_epoch"] >= 2
        assert results["metrics"]["best"]["val/mae"] < 200  # a good epoch existed ...
    summary = yaml.safe_load((out / "optimization_results.yaml").read_text())
    assert summary["best_value"] == math.inf  # ... and still the trial scores worst
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"\[\d/2\] ", ln)]
    assert len(lines) == 2 and all("optimizer.lr=" in ln and "worst" in ln for ln in lines)


def test_trial_lines_show_parameters_and_the_returned_validation_score(cli) -> None:
    out = cli.cwd / "study"
    proc = cli("-m", "+tune=huber", "tune_trials=3", "trainer.max_epochs=3", "logger=none",
               "threads=1", f"hydra.sweep.dir={out}")
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(r"^\[\d/3\] regression huber (optimizer\.lr=\S+) (loss\.delta=\S+): "
                       r"val/mae (\S+) \(ok\)$", proc.stdout, flags=re.M)
    assert len(lines) == 3, proc.stdout
    summary = yaml.safe_load((out / "optimization_results.yaml").read_text())
    shown = {float(value) for *_, value in lines}
    assert min(shown) == pytest.approx(summary["best_value"], rel=1e-3)


# --- defaults and checked ranges ---------------------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass", "ranking", "embedding"])
def test_every_task_kind_has_a_default_loss(cli, task: str) -> None:
    proc = cli(f"task={task}", "logger=none", "trainer.max_epochs=1", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    (results,) = results_of(cli.cwd / "run")
    assert results["status"] == "ok"


@pytest.mark.parametrize("override, named", [
    ("optimizer.momentum=2", "optimizer.momentum must be a number in [0.0, 1.0)"),
    ("optimizer.momentum=1", "optimizer.momentum must be a number in [0.0, 1.0)"),
    ("optimizer.momentum=-0.1", "optimizer.momentum"),
    ("optimizer.lr=0", "optimizer.lr must be a number > 0.0"),
    ("+optimizer.eps=0", "optimizer.eps must be a number > 0.0"),
    ("+optimizer.betas=[0.9,1.0]", "optimizer.betas.1 must be a number in [0.0, 1.0)"),
    ("+optimizer.betas=[0.9]", "optimizer.betas must be a list of two numbers"),
])
def test_optimizer_ranges_are_checked(cli, override: str, named: str) -> None:
    args = ["optimizer=sgd"] if "momentum" in override else []
    proc = cli(*args, override, "logger=none")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    # Refused before data loads: at most a results.json that says failed, with that line.
    for results in results_of(cli.cwd / "outputs") if (cli.cwd / "outputs").exists() else []:
        assert results["status"] == "failed" and "metrics" not in results
        assert named in results["reason"]


def test_an_appended_key_nothing_reads_is_refused(cli) -> None:
    proc = cli("+download=false", "logger=none")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "unknown key 'download'" in line and "task.download" in line
    assert not (cli.cwd / "outputs").exists()


def test_seeds_zero_says_what_is_allowed(cli) -> None:
    proc = cli("seeds=0", "logger=none")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "seeds must be a positive count" in line and "run_seeds" not in line


# --- streaming gives the on-device numbers ---------------------------------------------------


@pytest.mark.parametrize("task", ["embedding", "regression"])
def test_streamed_data_trains_the_same_batches(cli, task: str) -> None:
    figures = {}
    for path in ("device", "stream"):
        proc = cli(f"task={task}", f"+task.data_path={path}" if task != "embedding" else
                   f"task.data_path={path}", "logger=none", "trainer.max_epochs=3",
                   "threads=1", f"output_dir={path}")
        assert proc.returncode == 0, proc.stderr
        (results,) = results_of(cli.cwd / path)
        assert results["data_path"] == path
        figures[path] = results
    for which in ("best", "last"):
        device, stream = figures["device"]["metrics"][which], figures["stream"]["metrics"][which]
        assert stream == pytest.approx(device, rel=1e-5, abs=1e-6)
    assert [r["train/loss"] for r in figures["stream"]["history"]] == pytest.approx(
        [r["train/loss"] for r in figures["device"]["history"]], rel=1e-5)


# --- retries ---------------------------------------------------------------------------------


def test_retries_rerun_a_failed_job_and_record_the_attempts(user) -> None:
    args = ("loss=custom", "loss._target_=test_user_losses.FailsOnce", "logger=none",
            "trainer.max_epochs=2")
    proc = user(*args, "retries=0", "output_dir=once",
                env={"FLAKY_MARKER": str(user.cwd / "m0")})
    (failed,) = results_of(user.cwd / "once")
    assert proc.returncode == 2 and failed["status"] == "failed" and failed["attempts"] == 1
    assert "transient" in failed["reason"]
    proc = user(*args, "retries=2", "output_dir=twice",
                env={"FLAKY_MARKER": str(user.cwd / "m1")})
    assert proc.returncode == 0, proc.stderr
    (ok,) = results_of(user.cwd / "twice")
    assert ok["status"] == "ok" and ok["attempts"] == 2


def test_a_diverged_run_is_not_retried(cli) -> None:
    proc = cli("optimizer.lr=1e4", "retries=3", "logger=none", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    (results,) = results_of(cli.cwd / "run")
    assert results["status"] == "diverged" and results["attempts"] == 1


# --- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_says_how_far_the_sweep_got_and_how_to_resume(cli) -> None:
    folder = cli.cwd / "sweep"
    # Job by job (stack=false): a stack of the six seeds would write all six results at once.
    args = ("-m", "seed=0,1,2,3,4,5", "trainer.max_epochs=30", "logger=none", "threads=1",
            "stack=false", f"hydra.sweep.dir={folder}")
    # A shell without job control starts background jobs with SIGINT ignored, and a child
    # inherits that: let this sweep get Ctrl-C however the test run itself was started.
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        started = cli.start(*args)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    deadline = time.monotonic() + 240
    while len(list(folder.rglob("results.json"))) < 2 and started.proc.poll() is None:
        assert time.monotonic() < deadline, "the sweep never finished two jobs"
        time.sleep(0.02)
    started.proc.send_signal(signal.SIGINT)
    proc = started.wait()
    assert proc.returncode == 130
    (line,) = proc.stderr.strip().splitlines()[-1:]
    match = re.match(r"lossbench: interrupted after (\d) of 6 jobs .*; resume with: (.*)$", line)
    assert match, proc.stderr
    assert "Traceback" not in proc.stderr
    done = int(match.group(1))
    assert done == len(results_of(folder)) >= 2
    # The command it prints resumes the sweep: only the jobs left run.
    command = shlex.split(match.group(2))
    assert command[:3] == ["python", "-m", "lossbench"]
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=cli.cwd, env=cli.env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({6 - done} ran: {6 - done} ok; {done} resumed: {done} ok)" in resumed.stdout


def test_a_ctrl_c_dropped_in_a_destructor_is_raised_again(tmp_path) -> None:
    """Python prints and drops an exception raised in `__del__`: the remembered Ctrl-C is
    raised again at the next job's end (what the sweep callback calls)."""
    code = """
import gc, os, signal, time
from lossbench.environment import catch_interrupts, raise_if_interrupted
signal.signal(signal.SIGINT, signal.default_int_handler)  # as started from a terminal
catch_interrupts()
class Slow:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the KeyboardInterrupt is raised here, inside __del__
Slow()
gc.collect()
print("went on")
try:
    raise_if_interrupted()
except KeyboardInterrupt:
    print("raised again")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.stdout.split() == ["went", "on", "raised", "again"], done.stdout + done.stderr
    assert "KeyboardInterrupt" in done.stderr  # Python's "Exception ignored in ... __del__"
