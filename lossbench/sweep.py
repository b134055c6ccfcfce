"""Sweep bookkeeping for Hydra: unique sweep folders, a progress line per job, a final count."""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lossbench.results import RESULTS_NAME, iter_results

UID_ENV = "LOSSBENCH_SWEEP_UID"
TOTAL_ENV = "LOSSBENCH_SWEEP_TOTAL"
# Set by on_multirun_end in the launching process; __main__ turns it into the exit code.
LAST_SWEEP: dict[str, Any] | None = None


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


class SweepProgress(Callback):
    """Prints `[k/N] task loss seed: status metric` as jobs finish, and a summary at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        total = count_jobs(config)
        os.environ[TOTAL_ENV] = str(total or "?")
        # submitit's jobs print into their own log files: their lines are printed at the end.
        launcher = str(config.hydra.launcher.get("_target_", ""))
        self.replay = "submitit" in launcher.lower()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized() or str(HydraConfig.get().mode) != "RunMode.MULTIRUN":
            return
        hc = HydraConfig.get()
        sweep_dir = Path(hc.sweep.dir)
        done = count_finished(sweep_dir)
        total = os.environ.get(TOTAL_ENV, "?")
        from lossbench.results import read_results

        job_dir = Path(hc.runtime.output_dir)
        # One results.json per job, or one per seed below it when the job trained `seeds=`.
        paths = [job_dir / RESULTS_NAME] if (job_dir / RESULTS_NAME).exists() else sorted(
            job_dir.glob(f"*/{RESULTS_NAME}")
        )
        for path in paths or [job_dir / RESULTS_NAME]:
            print(progress_line(read_results(path), done, total), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_SWEEP
        sweep_dir = Path(config.hydra.sweep.dir)
        found = list(iter_results(sweep_dir))
        statuses = [data.get("status") for _, data in found]
        # A job folder is the sweep folder's child; `seeds=` jobs hold one results.json per seed.
        jobs = {path.relative_to(sweep_dir).parts[0] for path, _ in found}
        total = os.environ.get(TOTAL_ENV, "?")
        counts = {s: statuses.count(s) for s in ("ok", "diverged", "failed", "skipped")}
        missing = int(total) - len(jobs) if total.isdigit() else 0
        LAST_SWEEP = {"dir": str(sweep_dir), "missing": max(missing, 0), **counts}
        if getattr(self, "replay", False):
            for done, (_, data) in enumerate(sorted(iter_results(sweep_dir), key=_job_order), 1):
                print(progress_line(data, done, total))
        parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        if missing > 0:
            parts += f", {missing} without results"
        runs = f", {len(statuses)} runs" if len(statuses) != len(jobs) else ""
        print(f"sweep done: {len(jobs)} of {total} jobs{runs} ({parts or 'none'}) in {sweep_dir}")
        print(f"report: python -m lossbench.report {sweep_dir}", flush=True)


def _job_order(item: tuple[Path, dict[str, Any]]) -> tuple[int, str]:
    """Job number first (`3_name` before `10_name`), then the path."""
    job = item[0].parent.name.partition("_")[0]
    return (int(job) if job.isdigit() else 1 << 30, str(item[0]))


def count_finished(sweep_dir: Path) -> int:
    """This job's place in the finishing order: jobs of a parallel launcher finish together, so
    the count is an append to a shared file under an exclusive lock, not a glance at the disk."""
    import fcntl

    with open(sweep_dir / ".finished", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(f"{os.getpid()}\n")
        f.flush()
        f.seek(0)
        return sum(1 for _ in f)


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
