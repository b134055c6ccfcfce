"""Hydra multiruns: a folder per job, a line per finished job, launchers, wandb runs per job."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

# The basic launcher runs the sweeps of test_cli.py and test_failures.py.
SEEDS = {"joblib": 3, "submitit": 2}


@pytest.fixture(scope="module")
def sweeps(new_cli) -> dict[str, subprocess.CompletedProcess[str]]:
    """Two sweeps started at the same moment in the same folder, one per parallel launcher.

    The joblib one logs to wandb with logger.mode=online but no API key (HOME is a fresh
    folder): 3 jobs on 2 workers, so one worker process runs two wandb runs in a row.
    """
    cli = new_cli("sweeps")
    started = {
        "joblib": cli.start(
            "-m", "seed=0,1,2", "logger=wandb", "logger.mode=online", "trainer.max_epochs=2",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        ),
        "submitit": cli.start(
            "-m", "seed=0,1", "logger=none", "trainer.max_epochs=2",
            "hydra/launcher=submitit_local",
        ),
    }
    return {name: run.wait() for name, run in started.items()}


def sweep_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    """The sweep's folder, from its closing `sweep done: ... in <dir>` line."""
    match = re.search(r"sweep done: .* in (\S+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return proc.cwd / match.group(1)


def job_dirs(proc: subprocess.CompletedProcess[str]) -> list[Path]:
    return sorted(p for p in sweep_dir(proc).iterdir() if p.is_dir() and p.name[0].isdigit())


def job_results(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads((job / "results.json").read_text()) for job in job_dirs(proc)]


@pytest.mark.parametrize("launcher", list(SEEDS))
def test_launcher_runs_the_sweep_to_completion(sweeps, launcher: str) -> None:
    proc = sweeps[launcher]
    assert proc.returncode == 0, proc.stderr
    n = SEEDS[launcher]
    assert f"sweep done: {n} of {n} jobs ({n} ran: {n} ok)" in proc.stdout
    results = job_results(proc)
    assert [r["status"] for r in results] == ["ok"] * n
    assert sorted(r["seed"] for r in results) == list(range(n))


@pytest.mark.parametrize("launcher", list(SEEDS))
def test_each_job_has_its_own_folder_with_one_results_json(sweeps, launcher: str) -> None:
    jobs = job_dirs(sweeps[launcher])
    assert len(jobs) == SEEDS[launcher]
    for job in jobs:
        assert len(list(job.rglob("results.json"))) == 1
        assert json.loads((job / "results.json").read_text())["output_dir"] == str(job.resolve())


def test_sweeps_started_together_never_share_a_folder(sweeps) -> None:
    folders = {name: sweep_dir(proc).resolve() for name, proc in sweeps.items()}
    assert len(set(folders.values())) == 2
    # Same parent (outputs/sweeps/<date>): the folders differ by their unique id, not by luck.
    assert len({f.parent for f in folders.values()}) == 1
    found = sorted((sweeps["joblib"].cwd / "outputs").rglob("results.json"))
    assert len(found) == sum(SEEDS.values())


@pytest.mark.parametrize("launcher", list(SEEDS))
def test_a_progress_line_per_finished_job(sweeps, launcher: str) -> None:
    n = SEEDS[launcher]
    lines = re.findall(rf"^\[(\d+)/{n}\] regression mse s(\d): ok test/mae [\d.]+ ",
                       sweeps[launcher].stdout, flags=re.M)
    assert sorted(int(k) for k, _ in lines) == list(range(1, n + 1)), sweeps[launcher].stdout
    assert sorted(int(seed) for _, seed in lines) == list(range(n))


@pytest.mark.parametrize("launcher", list(SEEDS))
def test_parallel_jobs_never_oversubscribe_the_cores(sweeps, launcher: str) -> None:
    """Two jobs side by side under either launcher: their threads fit in the machine's cores."""
    cores = os.cpu_count() or 1
    threads = [r["threads"] for r in job_results(sweeps[launcher])]
    assert all(t >= 1 and t * 2 <= max(cores, 2) for t in threads), threads


def test_parallel_jobs_are_counted_per_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    from lossbench.environment import parallel_jobs

    monkeypatch.setenv("LOSSBENCH_SWEEP_TOTAL", "6")
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}
    submitit = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}
    assert parallel_jobs({**joblib, "n_jobs": 3}) == 3
    assert parallel_jobs({**submitit, "array_parallelism": 4}) == 4
    assert parallel_jobs({**submitit, "array_parallelism": 256}) == 6
    basic = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    assert parallel_jobs(basic) == 1


def test_wandb_gives_each_job_its_own_run_in_one_group(sweeps) -> None:
    proc = sweeps["joblib"]
    group = sweep_dir(proc).name
    run_ids = set()
    for job in job_dirs(proc):
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, job
        run_ids.add(runs[0].name.rpartition("-")[2])
        (record,) = runs[0].glob("run-*.wandb")
        assert group.encode() in record.read_bytes()  # the run's group is the sweep's name
    assert len(run_ids) == 3
    assert not list((proc.cwd / "wandb").glob("*")), "wandb wrote outside the job folders"


def test_wandb_online_without_a_key_warns_and_keeps_results(sweeps) -> None:
    proc = sweeps["joblib"]
    warnings = [line for line in proc.stderr.splitlines() if "no API key" in line]
    assert len(warnings) == 3  # one line per job
    assert "Traceback" not in proc.stderr
    for results in job_results(proc):
        assert results["status"] == "ok"
        assert results["config"]["logger"]["mode"] == "online"
