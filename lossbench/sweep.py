"""Sweep bookkeeping for Hydra: unique sweep folders, a progress line per job, a final count."""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lossbench.results import MANIFEST_NAME, RESULTS_NAME, read_manifest, sweep_results

UID_ENV = "LOSSBENCH_SWEEP_UID"
TOTAL_ENV = "LOSSBENCH_SWEEP_TOTAL"
# Set by on_multirun_end in the launching process; __main__ turns it into the exit code.
LAST_SWEEP: dict[str, Any] | None = None
# The sweep under way in this process (folder, job count): what Ctrl-C reports.
CURRENT_SWEEP: dict[str, Any] | None = None


def new_invocation_uid() -> str:
    """A fresh id per CLI call, inherited by the launcher's worker processes through the env."""
    uid = secrets.token_hex(3)
    os.environ[UID_ENV] = uid
    return uid


def _uid() -> str:
    return os.environ.get(UID_ENV) or new_invocation_uid()


def _direction(kind: str) -> str:
    from lossbench.tasks import SELECTION

    return "minimize" if SELECTION[kind][1] == "min" else "maximize"


def register_resolvers() -> None:
    """`${lb_uid:}` keeps two sweeps started in the same second in different folders."""
    if not OmegaConf.has_resolver("lb_uid"):
        OmegaConf.register_new_resolver("lb_uid", _uid, use_cache=True)
    if not OmegaConf.has_resolver("lb_direction"):  # Optuna's direction from the task's metric
        OmegaConf.register_new_resolver("lb_direction", _direction)


def count_jobs(config: DictConfig) -> int | None:
    """How many jobs the sweeper will launch (None for sweepers it cannot tell)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    target = str(config.hydra.sweeper.get("_target_", ""))
    if "optuna" in target.lower():  # one job per trial
        return int(config.hydra.sweeper.n_trials)
    if not target.endswith(("BasicSweeper", "LossbenchSweeper")):  # its grid is Hydra's basic
        return None
    params = dict(config.hydra.sweeper.get("params") or {})
    for override in config.hydra.overrides.task:
        key, _, value = override.partition("=")
        params[key] = value
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    sizes = [len(list(o.sweep_iterator())) if o.is_sweep_override() else 1 for o in parsed]
    return math.prod(sizes)


def sweep_axes(jobs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The keys the jobs' overrides vary, with their values in order of first appearance."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for override in job["overrides"]:
            key, _, value = override.partition("=")
            seen = values.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    return {k: v for k, v in values.items() if len(v) > 1}


def write_manifest(
    config: DictConfig, jobs: list[dict[str, Any]], stacks: list[list[int]], total: int,
    units: int | None = None,
) -> Path:
    """`<sweep dir>/manifest.json`: the sweep's axes, job count, stacks (job numbers trained
    together), the jobs launched (`units`: one per stack and per job in none) and each job's
    overrides and folder, written by the sweeper before jobs run."""
    from lossbench.results import write_json_atomic

    sweep_dir = Path(str(config.hydra.sweep.dir))
    os.environ[TOTAL_ENV] = str(total)
    if CURRENT_SWEEP is not None:
        CURRENT_SWEEP["total"] = total
    return write_json_atomic(sweep_dir / MANIFEST_NAME, {
        "schema": 1, "dir": str(sweep_dir.resolve()), "total": total,
        "axes": sweep_axes(jobs), "launcher": str(config.hydra.launcher.get("_target_", "")),
        "stacks": stacks, "units": len(jobs) if units is None else units, "jobs": jobs,
    })


class SweepProgress(Callback):
    """Prints `[k/N] task loss seed: status metric` as jobs finish, and a summary at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global CURRENT_SWEEP
        total = count_jobs(config)
        os.environ[TOTAL_ENV] = str(total or "?")
        CURRENT_SWEEP = {"dir": str(config.hydra.sweep.dir), "total": total}
        # submitit's jobs print into their own log files: their lines are printed at the end.
        launcher = str(config.hydra.launcher.get("_target_", ""))
        self.replay = "submitit" in launcher.lower()
        # An Optuna study: its trial lines show the parameters drawn and the score returned.
        sweeper = str(config.hydra.sweeper.get("_target_", ""))
        self.tuned = list(config.hydra.sweeper.get("params") or {}) if "optuna" in \
            sweeper.lower() else []

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from lossbench.environment import raise_if_interrupted

        self.print_progress()
        raise_if_interrupted()  # a Ctrl-C that landed in a destructor stops the sweep here

    def print_progress(self) -> None:
        """The finished job's progress line (a line per member for a stack)."""
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized() or str(HydraConfig.get().mode) != "RunMode.MULTIRUN":
            return
        from lossbench.results import read_results
        from lossbench.stack_plan import member_folders

        hc = HydraConfig.get()
        sweep_dir = Path(hc.sweep.dir)
        total = os.environ.get(TOTAL_ENV, "?")
        tuned = getattr(self, "tuned", [])
        params = [o for o in hc.overrides.task if o.partition("=")[0].lstrip("+") in tuned]
        # A stack's first job trained every member: a line for each, counted each.
        for job_dir in member_folders(hc.runtime.output_dir):
            done = count_finished(sweep_dir, job_dir.name)
            # One results.json per job, or one per seed below it when it trained `seeds=`.
            paths = [job_dir / RESULTS_NAME] if (job_dir / RESULTS_NAME).exists() else sorted(
                job_dir.glob(f"*/{RESULTS_NAME}"))
            for results in [read_results(p) for p in paths or [job_dir / RESULTS_NAME]]:
                if tuned:
                    print(trial_line(results, done, total, params), flush=True)
                elif results is None or results.get("status") != "skipped":  # summed up later
                    print(progress_line(results, done, total), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_SWEEP
        sweep_dir = Path(config.hydra.sweep.dir)
        # The sweeper's manifest lists the jobs and their folders (another sweeper's: a scan).
        found, missing = sweep_results(sweep_dir)
        statuses = [data.get("status") for _, data in found]
        # A job folder is the sweep folder's child; `seeds=` jobs hold one results.json per seed.
        jobs = {path.resolve().relative_to(sweep_dir.resolve()).parts[0] for path, _ in found}
        manifest = read_manifest(sweep_dir)
        total = str(manifest["total"]) if manifest else os.environ.get(TOTAL_ENV, "?")
        if manifest is None:
            missing = int(total) - len(jobs) if total.isdigit() else 0
        counts = {s: statuses.count(s) for s in ("ok", "diverged", "failed", "skipped")}
        LAST_SWEEP = {"dir": str(sweep_dir), "missing": max(missing, 0), **counts}
        if getattr(self, "replay", False):
            for done, (_, data) in enumerate(sorted(found, key=_job_order), 1):
                if data.get("status") != "skipped":
                    print(progress_line(data, done, total))
        print(closing_line([data for _, data in found], len(jobs), total, missing, sweep_dir))
        skipped = skipped_line([data for _, data in found])
        if skipped:
            print(skipped)
        print(f"report: python -m lossbench.report {sweep_dir}", flush=True)


def closing_line(
    found: list[dict[str, Any]], jobs: int, total: str, missing: int, sweep_dir: Path,
) -> str:
    """`sweep done: 8 of 8 jobs (5 ran: 4 ok, 1 diverged; 2 resumed; 1 failed) in <dir>`."""
    resumed = [r for r in found if r.get("resumed_from")]
    ran = [r for r in found if not r.get("resumed_from") and r.get("status") in (
        "ok", "diverged", "failed")]
    def tally(runs: list[dict[str, Any]]) -> str:
        statuses = [r.get("status") for r in runs]
        return ", ".join(f"{statuses.count(s)} {s}" for s in ("ok", "diverged", "failed")
                         if statuses.count(s))
    parts = [f"{len(ran)} ran" + (f": {tally(ran)}" if ran else "")]
    if resumed:
        parts.append(f"{len(resumed)} resumed: {tally(resumed)}")
    skipped = sum(r.get("status") == "skipped" for r in found)
    if skipped:
        parts.append(f"{skipped} skipped")
    if missing > 0:
        parts.append(f"{missing} without results")
    runs = f", {len(found)} runs" if len(found) != jobs else ""
    return f"sweep done: {jobs} of {total} jobs{runs} ({'; '.join(parts)}) in {sweep_dir}"


def skipped_line(found: list[dict[str, Any]]) -> str | None:
    """One line for every skipped pair: how many, and why (a loss that does not fit a task)."""
    skipped = [r for r in found if r.get("status") == "skipped"]
    if not skipped:
        return None
    tasks = sorted({str(r.get("task")) for r in skipped})
    return (f"skipped {len(skipped)} task x loss pairs whose loss does not fit the task "
            f"(tasks: {', '.join(tasks)}); python -m lossbench.catalog shows which fit")


def _job_order(item: tuple[Path, dict[str, Any]]) -> tuple[int, str]:
    """Job number first (`3_name` before `10_name`), then the path."""
    job = item[0].parent.name.partition("_")[0]
    return (int(job) if job.isdigit() else 1 << 30, str(item[0]))


def count_finished(sweep_dir: Path, job: str) -> int:
    """This job's place in the finishing order of this invocation.

    Jobs of a parallel launcher finish together, so the count is an append to a shared file
    under an exclusive lock, not a glance at the disk. Each line names the invocation and the
    job (its folder's name): a resumed or re-run sweep in the same folder counts its own jobs
    only, and a job that ends twice counts once, so k never passes N."""
    import fcntl

    with open(sweep_dir / ".finished", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(f"{_uid()} {job}\n")
        f.flush()
        f.seek(0)
        mine = {line.rstrip("\n").partition(" ")[2] for line in f
                if line.startswith(f"{_uid()} ")}
        return len(mine)


def finished_jobs(sweep_dir: Path) -> int:
    """How many jobs of this invocation have finished so far (for an interrupted sweep)."""
    try:
        lines = (Path(sweep_dir) / ".finished").read_text().splitlines()
    except OSError:
        return 0
    return len({line.partition(" ")[2] for line in lines if line.startswith(f"{_uid()} ")})


def trial_line(
    results: dict[str, Any] | None, done: int, total: str, params: list[str],
) -> str:
    """`[3/20] regression huber optimizer.lr=0.01 loss.delta=1.3: val/mae 44.1 (ok)`: the
    validation score the trial returns to the study (the worst value unless it is ok)."""
    if results is None:
        return f"[{done}/{total}] trial ended without results"
    drawn = " ".join(_short(p) for p in params)
    head = f"[{done}/{total}] {results.get('task')} {results.get('loss')} {drawn}"
    metric = (results.get("selection") or {}).get("metric", "")
    best = (results.get("metrics") or {}).get("best") or {}
    status = results.get("status")
    if status == "ok" and metric in best:
        return f"{head}: {metric} {best[metric]:.4g} (ok)"
    why = f": {results.get('reason')}" if results.get("reason") else ""
    return f"{head}: {metric or 'score'} worst ({status}{why})"


def _short(override: str) -> str:
    """`optimizer.lr=0.0307560375` as `optimizer.lr=0.03076`."""
    key, _, value = override.partition("=")
    try:
        return f"{key}={float(value):.4g}"
    except ValueError:
        return override


def progress_line(results: dict[str, Any] | None, done: int, total: str) -> str:
    if results is None:
        return f"[{done}/{total}] job ended without results"
    head = f"[{done}/{total}] {results.get('task')} {results.get('loss')} s{results.get('seed')}"
    if results.get("status") == "failed":
        return f"{head}: failed: {results.get('reason')}"
    best = (results.get("metrics") or {}).get("best") or {}
    metric = (results.get("selection") or {}).get("metric", "")
    test_metric = metric.replace("val/", "test/")
    figure = f"{test_metric} {best[test_metric]:.4g}" if test_metric in best else ""
    note = " (resumed)" if results.get("resumed_from") else ""
    return f"{head}: {results.get('status')} {figure} {results.get('wall_s', 0):.1f}s{note}"
