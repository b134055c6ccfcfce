"""Never lose a result: diverged and failed jobs are recorded, sweeps go on, resume skips work.

Bad input is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lossbench.__main__ import check_group_choices, group_options


def sweep_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    """The sweep's folder, from its closing `sweep done: ... in <dir>` line."""
    match = re.search(r"sweep done: .* in (\S+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return proc.cwd / match.group(1)


def results_under(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("results.json"))]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lossbench: error: ")
    for text in expected:
        assert text in lines[0]


@pytest.fixture(scope="module")
def focal_on_regression(new_cli):
    """`python -m lossbench task=regression loss=focal`, started at once (it waits later)."""
    return new_cli("focal_on_regression").start("task=regression", "loss=focal")


# Divergence


def test_nan_is_recorded_as_diverged(run_in, tmp_path: Path) -> None:
    results = run_in(tmp_path, "task=regression", "loss=mse", "optimizer.lr=1e10")
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == results["status"] == "diverged"
    assert on_disk["diverged_epoch"] == 0
    assert "NaN" in on_disk["reason"]
    assert on_disk["epochs"] == 1


# A sweep with user losses: 2 ok, 2 diverged (lr=1e30), 2 failed (forward raises).


def custom_jobs(custom_loss_sweep) -> dict[tuple[str, float], dict]:
    proc = custom_loss_sweep.wait()
    return {
        (r["config"]["loss"]["_target_"].rpartition(".")[2], r["config"]["optimizer"]["lr"]): r
        for r in results_under(sweep_dir(proc))
    }


def test_every_job_of_a_sweep_with_failures_has_its_results(custom_loss_sweep) -> None:
    jobs = custom_jobs(custom_loss_sweep)
    assert len(jobs) == 6
    assert {key: r["status"] for key, r in jobs.items()} == {
        ("MyLoss", 0.003): "ok", ("MyL1", 0.003): "ok",
        ("MyLoss", 1e30): "diverged", ("MyL1", 1e30): "diverged",
        ("Boom", 0.003): "failed", ("Boom", 1e30): "failed",
    }


def test_a_diverged_job_leaves_the_healthy_one_alone(custom_loss_sweep) -> None:
    jobs = custom_jobs(custom_loss_sweep)
    diverged = jobs["MyLoss", 1e30]
    assert diverged["diverged_epoch"] == 0
    assert diverged["reason"]
    healthy = jobs["MyLoss", 0.003]
    assert healthy["epochs"] == 3
    assert healthy["metrics"]["best"]["test/mae"] < 100


def test_an_exception_fails_its_job_with_a_one_line_reason(custom_loss_sweep) -> None:
    proc = custom_loss_sweep.wait()
    for lr in (0.003, 1e30):
        reason = custom_jobs(custom_loss_sweep)["Boom", lr]["reason"]
        assert reason == "RuntimeError: boom: this loss always fails"
    assert proc.returncode != 0
    assert "2 job(s) of the sweep failed" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    failed_lines = [line for line in proc.stdout.splitlines() if ": failed: " in line]
    assert len(failed_lines) == 2
    assert all("boom: this loss always fails" in line for line in failed_lines)
    assert len(re.findall(r"^\[\d/6\] ", proc.stdout, flags=re.M)) == 6


# Resume: a killed sweep loses nothing it finished, and a re-run does only what is left.



def resume_sweep(folder: Path) -> tuple[str, ...]:
    return (
        "-m", "seed=0,1,2,3,4,5", "trainer.max_epochs=20", "logger=none", "threads=1",
        f"hydra.sweep.dir={folder}",
    )


@pytest.fixture(scope="module")
def killed_sweep(new_cli, focal_on_regression):
    """The sweep, SIGKILLed once two of its six jobs have written results.json.

    Job by job (`stack=false`): a stack writes its six results within milliseconds, so a kill
    could not land between them. The re-run stacks what is left. (`focal_on_regression` is
    only started here, to run beside it.)
    """
    cli = new_cli("resume")
    folder = cli.cwd / "sweep"
    started = cli.start(*resume_sweep(folder), "stack=false")
    deadline = time.monotonic() + 240
    while len(list(folder.rglob("results.json"))) < 2 and started.proc.poll() is None:
        assert time.monotonic() < deadline, "the sweep never finished two jobs"
        time.sleep(0.02)
    started.proc.send_signal(signal.SIGKILL)
    started.wait()
    return cli, folder


def test_a_killed_sweep_leaves_only_whole_results(killed_sweep) -> None:
    _, folder = killed_sweep
    files = sorted(folder.rglob("results.json*"))
    assert 2 <= len(files) < 6
    for path in files:
        assert path.name == "results.json"
        assert json.loads(path.read_text())["status"] == "ok"


def test_resume_skips_finished_jobs_and_runs_the_rest(killed_sweep) -> None:
    cli, folder = killed_sweep
    before = {r["seed"]: r for r in results_under(folder)}
    proc = cli(*resume_sweep(folder), "resume=true")
    assert proc.returncode == 0, proc.stderr
    n = len(before)
    done = f"sweep done: 6 of 6 jobs ({6 - n} ran: {6 - n} ok; {n} resumed: {n} ok)"
    assert done in proc.stdout
    # The re-run counts its own jobs: [1/6] .. [6/6], never past the total.
    counts = [int(k) for k in re.findall(r"^\[(\d+)/6\] ", proc.stdout, flags=re.M)]
    assert sorted(counts) == list(range(1, 7)), proc.stdout
    after = {r["seed"]: r for r in results_under(folder)}
    assert sorted(after) == list(range(6))
    for seed, results in after.items():
        line = next(ln for ln in proc.stdout.splitlines() if f" s{seed}: " in ln)
        if seed in before:  # not retrained: the same numbers, the same wall time, a pointer
            assert results["resumed_from"]
            assert results["history"] == before[seed]["history"]
            assert results["wall_s"] == before[seed]["wall_s"]
            assert line.endswith("(resumed)")
        else:
            assert "resumed_from" not in results
            assert results["status"] == "ok"
            assert "(resumed)" not in line


def test_rerun_into_the_same_folder_skips_a_complete_run(run_in, tmp_path: Path) -> None:
    first = run_in(tmp_path, "loss=huber")
    again = run_in(tmp_path, "loss=huber")  # no resume=true needed: the folder is the job's
    assert again["resumed_from"] == str(tmp_path / "results.json")
    assert again["history"] == first["history"]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "ok"
    assert on_disk["metrics"] == first["metrics"]


def test_resume_finds_a_finished_run_anywhere_under_out_root(run_in, tmp_path: Path) -> None:
    first = run_in(tmp_path / "a", "loss=huber", f"out_root={tmp_path}")
    elsewhere = run_in(tmp_path / "b", "loss=huber", f"out_root={tmp_path}")
    assert "resumed_from" not in elsewhere  # without resume=true another folder trains anew
    resumed = run_in(tmp_path / "c", "loss=huber", f"out_root={tmp_path}", "resume=true")
    assert resumed["resumed_from"] in {
        str(tmp_path / "a" / "results.json"), str(tmp_path / "b" / "results.json")
    }
    assert resumed["metrics"] == first["metrics"]
    assert json.loads((tmp_path / "c" / "results.json").read_text())["status"] == "ok"


# Bad input: a one-line reason, from the CLI and from run(cfg)


@pytest.mark.parametrize("group", ["task", "loss", "model", "optimizer", "logger", "perturb"])
def test_unknown_name_lists_the_valid_ones(group: str) -> None:
    problem = check_group_choices(["seed=1", f"{group}=nope"])
    assert problem is not None
    assert f"unknown {group} 'nope'" in problem
    for option in group_options(group):
        assert option in problem


def test_sweep_values_are_checked_too() -> None:
    assert "unknown loss 'hubr'" in check_group_choices(["-m", "loss=mse,hubr"])
    assert check_group_choices(["loss=mse,huber", "task=regression"]) is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task=regression", "loss=focal"], "losses for regression: custom_mse, huber, l1, mse"),
        (["loss=huber", "loss.delta=-1"], "loss.delta must be a number > 0"),
        (["loss=smooth_l1", "loss.beta=-1"], "loss.beta must be a number >= 0"),
        (["optimizer.lr=0"], "optimizer.lr must be a number > 0"),
        (["trainer.max_epochs=0"], "trainer.max_epochs must be an integer >= 1"),
        (["batch_size=0"], "batch_size must be an integer >= 1"),
        (["task=binary", "loss=focal", "loss.alpha=2"], "loss.alpha must be"),
        (["task=binary", "loss=focal", "loss.gamma=-1"], "loss.gamma must be a number >= 0"),
        (["task=multiclass", "loss=focal", "loss.alpha=1.5"], "loss.alpha must be"),
        (["task=multiclass", "loss=gce", "loss.q=0"], "loss.q must be a number in (0.0, 1.0]"),
        (["task=multiclass", "loss=gce", "loss.q=1.5"], "loss.q must be a number in (0.0, 1.0]"),
        (["loss=huber", "loss.delta=abc"], "loss.delta must be a number > 0.0, got 'abc'"),
        (["model.dropout=1"], "model.dropout must be"),
        (["loss=custom"], "loss._target_ must be set"),
        (["loss=custom", "loss._target_=no.such.Module"], "'no.such.Module' cannot be imported"),
        (["loss=custom", "loss._target_=my_losses.NotALoss"], "is not a torch.nn.Module"),
        (["loss=custom", "loss._target_=collections.OrderedDict"], "is not a torch.nn.Module"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_bad_value_fails_the_run_with_one_line(
    overrides: list[str], expected: str, run_in, user_losses, tmp_path: Path
) -> None:
    results = run_in(tmp_path, *overrides)
    assert results["status"] == "failed"
    assert expected in results["reason"]
    assert "\n" not in results["reason"]
    assert json.loads((tmp_path / "results.json").read_text())["reason"] == results["reason"]


@pytest.mark.parametrize("where", ["/proc/lossbench", "{tmp}/a_file/run"])
def test_an_output_folder_that_cannot_be_written(where: str, run_in, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    folder = Path(where.format(tmp=tmp_path))
    results = run_in(folder)
    assert results["status"] == "failed"
    assert str(folder) in results["reason"]
    assert "\n" not in results["reason"]


def test_hydra_full_error_raises_from_run(run_in, tmp_path: Path, monkeypatch) -> None:
    from lossbench.validation import ConfigError

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="does not fit task 'regression'"):
        run_in(tmp_path, "task=regression", "loss=focal")


def test_cli_loss_that_does_not_fit(focal_on_regression) -> None:
    proc = focal_on_regression.wait()
    assert proc.returncode == 2
    assert_one_line_error(proc, "loss 'focal' does not fit task 'regression'", "huber")
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["task=nope"], ["unknown task 'nope'", "regression", "multiclass"]),
        (["-m", "loss=mse,hubr"], ["unknown loss 'hubr'", "huber"]),
        (["loss.nosuch=1"], ["loss.nosuch", "+loss.nosuch=1"]),
        (["seed=["], ["seed=["]),
    ],
)
def test_cli_bad_input_is_one_line(cli, args: list[str], expected: list[str]) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert_one_line_error(proc, *expected)
    assert not (cli.cwd / "outputs").exists()


def test_hydra_full_error_shows_the_traceback(cli) -> None:
    proc = cli("task=nope", env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "nope" in proc.stderr


def test_wandb_failing_mid_run_warns_once_and_keeps_results(
    run_in, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """wandb's Run.log breaks after the run started: one warning, the run completes."""
    import wandb.sdk.wandb_run

    def broken_log(self, *args, **kwargs):
        raise RuntimeError("wandb service went away")

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", broken_log)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with caplog.at_level("WARNING"):
        results = run_in(tmp_path, "logger=wandb", "trainer.max_epochs=3")
    assert results["status"] == "ok", results["reason"]
    assert (tmp_path / "results.json").is_file()
    warnings = [r for r in caplog.records if "wandb failed" in r.getMessage()]
    assert len(warnings) == 1 and "wandb service went away" in warnings[0].getMessage()
