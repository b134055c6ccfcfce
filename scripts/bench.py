"""Is lossbench as fast as plain PyTorch? Times lossbench against a hand-written loop.

Both sides do the same work on the same inputs. The plain side (`plain_job`) gets each job's
resolved config, composed by lossbench's Hydra config here, outside any timing, and trains it
in a loop written by hand, with lossbench's builders for the things it trains: the task's
data (`load_data`: same split and perturbation), the model (`build_model`, right after
seeding what `pl.seed_everything` seeds), the loss's module (`loss_from_config`, called
without its wrapper's per-step checks) and the optimizer (`build_optimizer`); the same batch
size, epochs and batch order (`TensorBatches`), the task's metrics on the whole validation
split every epoch, best weights kept by the task's selection metric, lossbench's divergence
rule, and a final test evaluation of the last and the best weights. Both use one torch
thread, so a single run's two test metrics must be equal.

Measured, lossbench and plain interleaved (medians; wall seconds, CPU seconds beside them, as
CPU time is far less disturbed by other processes on a shared machine):
  - one run in this process: `lossbench.run.run(cfg)` and its `Trainer.fit` vs `plain_job`
    and its training loop (per-epoch validation included on both sides);
  - a sweep of N seeds, whole process: `python -m lossbench -m ... seed=0,..,N-1`
    vs `python scripts/bench.py --plain-jobs <file>` (the N jobs one after another);
  - process start: a one-epoch run as a process (the CLI vs `--plain-jobs` with one job), and
    `python -m lossbench --help` and `python -c "import torch"` for reference;
  - N seeds at once (lossbench.stack): `python -m lossbench seeds=N` vs
    the plain sweep process, and `run_seeds(cfg, seeds)` vs N plain runs in this process;
  - the in-process cost per member of a stack of 1, 10 and 100 members (`--stack-sizes`);
  - `--only cases`: whole sweeps as whole processes (CASES: digits_5x5, label_noise,
    regression_losses), `python -m lossbench -m <case>` vs `--plain-jobs` running the same
    jobs in the same order (Hydra's basic sweeper's expansion, `sweep_jobs`), and per job
    the best weights' test selection metric of both (read from the sweep's results.json):
    how many are equal within 1e-6, the median and largest difference (a stack runs its
    members through one vmapped step, so float rounding may differ).
A sweep of seeds (`-m seed=0,..`) is stacked by the sweeper (lossbench.stack); `stack=false`
in the overrides times it job by job.

Usage:
    python scripts/bench.py                    # 5 repeats, 10-run sweeps x3 (~12 min, 2 cores)
    python scripts/bench.py --only sweep       # one measure (runs, sweep, multiseed, stack,
                                               # start, cases)
    python scripts/bench.py --only cases       # the whole sweeps, 1 repeat (many minutes)
    python scripts/bench.py --only cases --cases digits_5x5 --case-epochs 1 \
        --case-overrides loss=ce,mae seed=0,1  # a smoke run of one case, 2 losses x 2 seeds
    python scripts/bench.py --quick            # smoke run (cases, when asked for: 1 epoch)
    python scripts/bench.py --json bench.json  # the figures as JSON too
    PYTHONPATH=/path/to/other/checkout python scripts/bench.py   # time another lossbench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

# lossbench / plain: a single run's training (the stacked-sweeps issue's <= 1.15x; an earlier
# issue asked 1.25x) and a 10-run sweep (the "Fast as plain PyTorch" issue).
TARGETS = {"train": 1.15, "sweep": 1.3}
MEASURES = ("runs", "sweep", "multiseed", "stack", "start", "cases")
# What runs without --only: every measure but the whole sweeps (label_noise alone takes minutes).
DEFAULT_MEASURES = MEASURES[:-1]
TASK_MEASURES = ("runs", "sweep", "multiseed", "stack")  # per task of --tasks
TASKS = {"multiclass": "ce", "regression": "mse"}  # task config -> lossbench loss config
# Set by lightning_fabric on import; a plain PyTorch process does not have it (see plain_env).
LIGHTNING_ENV = ("PYTORCH_NVML_BASED_CUDA_CHECK",)

Sample = dict[str, float]  # wall_s, cpu_s, train_s, train_cpu_s, test


@dataclass(frozen=True)
class Settings:
    """One benchmark case, read from lossbench's composed config so both sides agree."""

    task: str
    loss: str
    kind: str
    dataset: str
    val_fraction: float
    test_fraction: float
    hidden_dims: tuple[int, ...]
    lr: float
    epochs: int
    batch_size: int

    def overrides(self, where: str, seeds: str = "0") -> list[str]:
        """lossbench's overrides for this case; `where` is `output_dir=...` or `out_root=...`."""
        return [
            f"task={self.task}", f"loss={self.loss}", f"seed={seeds}", "threads=1",
            "logger=none", f"trainer.max_epochs={self.epochs}", f"batch_size={self.batch_size}",
            "trainer.accelerator=cpu", "trainer.progress_bar=false", where,
        ]

    def jobs(self, seeds: range) -> list[tuple[list[str], dict[str, Any]]]:
        """The plain side's jobs: each seed's overrides and resolved config, as lossbench
        composes them (composed here, outside any timing)."""
        from lossbench.config import compose_config
        from lossbench.environment import to_plain

        jobs = []
        for seed in seeds:
            overrides = self.overrides("output_dir=null", str(seed))
            jobs.append((overrides, to_plain(compose_config(overrides))))
        return jobs


def settings_for(task: str, epochs: int, batch_size: int) -> Settings:
    from lossbench.config import compose_config
    from lossbench.run import to_plain

    config = to_plain(compose_config([f"task={task}", f"loss={TASKS[task]}"]))
    model, optimizer, task_cfg = config["model"], config["optimizer"], config["task"]
    return Settings(
        task=task, loss=TASKS[task], kind=task_cfg["kind"], dataset=task_cfg["dataset"],
        val_fraction=task_cfg["val_fraction"], test_fraction=task_cfg["test_fraction"],
        hidden_dims=tuple(model["hidden_dims"]), lr=optimizer["lr"], epochs=epochs,
        batch_size=batch_size,
    )


def stopwatch() -> Callable[[], tuple[float, float]]:
    """Start a clock; calling the result gives (wall, cpu) seconds since (cpu: this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    return lambda: (time.perf_counter() - wall, time.process_time() - cpu)


# --- the plain PyTorch side: the one thing written by hand, on purpose ------------------------


def plain_refusal(config: dict[str, Any]) -> str | None:
    """What of a job's config the plain loop does not do (one line), or None."""
    trainer, kind = config.get("trainer") or {}, config["task"].get("kind")
    checks = {
        "task.kind=auto or loss=auto (lossbench reads them from the data)":
            kind == "auto" or config["loss"].get("name") == "auto",
        "an LR schedule": (config.get("scheduler") or {}).get("_target_"),
        "callbacks": config.get("callbacks"),
        "gradient clipping": trainer.get("gradient_clip_val"),
        "augmentation": config["task"].get("augment"),
        "compile=true": config.get("compile"),
        "mixed precision": str(trainer.get("precision", "32-true")) not in ("32-true", "32"),
        "m-per-class batches (embedding tasks)": kind == "embedding",
    }
    return next((what for what, present in checks.items() if present), None)


def seed_like_lightning(seed: int) -> None:
    """What `pl.seed_everything(seed, workers=False)` seeds, without importing Lightning."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def plain_loss(loss_cfg: dict[str, Any], kind: str, data: Any) -> Callable[..., Any]:
    """The loss a job trains with: lossbench's loss module (the math: CE, GCE, a user's class)
    with its task's input and target adaptation (softmax, one-hot), called directly; the
    per-step shape checks of lossbench's wrapper are not plain PyTorch."""
    from lossbench.loss_config import loss_from_config

    task_loss = loss_from_config(loss_cfg, kind, data)
    inner = getattr(task_loss, "inner", None)
    if inner is None or not hasattr(task_loss, "loss_input"):
        return task_loss
    to_input, to_target = task_loss.loss_input, task_loss.loss_target
    return lambda outputs, targets: inner(to_input(outputs), to_target(targets, outputs))


def plain_job(config: dict[str, Any]) -> Sample:
    """Train and evaluate one job's resolved config as lossbench does, in a plain loop.

    The data (split, perturbation), model, loss and optimizer come from lossbench's own
    builders, so both sides train the same thing; the loop is written here. Returns the
    seconds of the whole and of the loop, the best weights' test selection metric (NaN when
    no epoch was kept), their epoch (-1: none) and the epochs trained."""
    import torch

    from lossbench.data.batches import TensorBatches
    from lossbench.data.loading import load_data
    from lossbench.divergence import DivergenceRule, trivial_val_error
    from lossbench.parts import build_model, build_optimizer
    from lossbench.tasks import SELECTION, compute_metrics, head_size, is_better, squeeze_head

    refusal = plain_refusal(config)
    if refusal:
        raise SystemExit(f"the plain loop does not do {refusal}: {config.get('name')}")
    whole = stopwatch()
    seed, kind = int(config["seed"]), config["task"]["kind"]
    data = load_data(config)
    loss_fn = plain_loss(config["loss"], kind, data)
    seed_like_lightning(seed)  # right before the model, as lossbench seeds each job
    outputs = head_size(data, int(config["model"].get("embedding_dim", 32)))
    model = build_model(config["model"], data, outputs)
    optimizer = build_optimizer(model.parameters(), config["optimizer"])
    batches = TensorBatches(data.x_train, data.y_train, int(config["batch_size"]), seed=seed)
    squeeze, (selection, mode) = squeeze_head(kind), SELECTION[kind]
    # lossbench's divergence rule (NaN/inf, loss and metric blow-ups) stops the loop as it
    # stops a run: a diverged job's best weights are those of its last healthy epoch.
    rule = DivergenceRule.from_config(config.get("divergence"))
    trivial = trivial_val_error(data)
    trivial_error = None if trivial is None else float(trivial)

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out.squeeze(-1) if squeeze else out

    @torch.no_grad()
    def evaluate(*splits: str) -> dict[str, torch.Tensor]:
        model.eval()
        metrics = {}
        for split in splits:
            x, y = data.split(split)
            metrics |= {f"{split}/{k}": v for k, v in compute_metrics(predict(x), y, data).items()}
        model.train()
        return metrics

    def floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist(), strict=True))

    best: dict[str, Any] = {"epoch": -1, "value": None, "state": None}
    first_loss, epochs, alive = None, 0, True
    train = stopwatch()
    for epoch in range(int(config["trainer"]["max_epochs"])):
        loss_sum, steps = torch.zeros(()), 0
        for x, y in batches:
            loss = loss_fn(predict(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            steps += 1
        metrics = evaluate("val")
        finite = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).isfinite().all()
        train_loss, *values, is_finite = torch.stack([
            loss_sum / max(steps, 1), *(v.float() for v in metrics.values()), finite.float(),
        ]).tolist()
        row = dict(zip(metrics, values, strict=True))
        value = row[f"val/{selection}"]
        epochs += 1
        if rule.check(train_loss, first_loss, is_finite >= 1, value if mode == "min" else None,
                      trivial_error, value) is not None:
            alive = False
            break
        first_loss = train_loss if first_loss is None else first_loss
        if is_better(kind, value, best["value"]):
            state = {k: v.clone() for k, v in model.state_dict().items()}
            best = {"epoch": epoch, "value": value, "state": state}
    train_s, train_cpu_s = train()
    if alive:
        floats(evaluate("val", "test"))  # the last epoch's weights, as lossbench reports them too
    test = float("nan")
    if best["state"] is not None:
        model.load_state_dict(best["state"])
        test = floats(evaluate("val", "test"))[f"test/{selection}"]
    wall_s, cpu_s = whole()
    return {"wall_s": wall_s, "cpu_s": cpu_s, "train_s": train_s, "train_cpu_s": train_cpu_s,
            "test": test, "best_epoch": best["epoch"], "epochs": epochs}


@contextmanager
def plain_env() -> Iterator[None]:
    """The environment of a plain PyTorch process: without what Lightning's import set."""
    saved = {name: os.environ.pop(name) for name in LIGHTNING_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def plain_jobs(jobs_file: Path, out_file: Path | None) -> None:
    """What `--plain-jobs FILE` runs: the file's jobs one after another in this process, a
    line each; with `--plain-out`, each job's overrides and figures as JSON there."""
    import torch

    torch.set_num_threads(1)
    jobs = json.loads(jobs_file.read_text())
    varied = {o for job in jobs for o in job["overrides"]} - set.intersection(
        *(set(job["overrides"]) for job in jobs)) if len(jobs) > 1 else set()
    done = []
    for i, job in enumerate(jobs):
        result = plain_job(job["config"])
        done.append({"overrides": job["overrides"], **result})
        label = " ".join(o for o in job["overrides"] if o in varied) or job["config"].get("name")
        print(f"[{i + 1}/{len(jobs)}] plain {label}: test {result['test']:.4g} "
              f"{result['wall_s']:.2f}s", flush=True)
    if out_file is not None:
        out_file.write_text(json.dumps(done, indent=1) + "\n")


def write_jobs(path: Path, jobs: list[tuple[list[str], dict[str, Any]]]) -> Path:
    """The job file `--plain-jobs` reads: each job's overrides and resolved config."""
    path.write_text(json.dumps([{"overrides": o, "config": c} for o, c in jobs]) + "\n")
    return path


def plain_process(jobs_file: Path, out_file: Path | None = None) -> list[str]:
    """The plain side as a process of its own: `bench.py --plain-jobs FILE`."""
    argv = [sys.executable, __file__, "--plain-jobs", str(jobs_file)]
    return argv + (["--plain-out", str(out_file)] if out_file else [])


# --- the lossbench side -----------------------------------------------------------------------


@contextmanager
def timed_fit(times: list[tuple[float, float]]) -> Iterator[None]:
    """Record (wall, cpu) of each `Trainer.fit`, without touching lossbench's code."""
    import pytorch_lightning as pl

    original = pl.Trainer.fit

    def fit(self: pl.Trainer, *args: Any, **kwargs: Any) -> Any:
        elapsed = stopwatch()
        try:
            return original(self, *args, **kwargs)
        finally:
            times.append(elapsed())

    pl.Trainer.fit = fit  # type: ignore[method-assign]
    try:
        yield
    finally:
        pl.Trainer.fit = original  # type: ignore[method-assign]


def lossbench_run(s: Settings, seed: int, out_dir: Path) -> Sample:
    """One `lossbench.run.run(cfg)` in this process (a fresh output folder: nothing to resume)."""
    from lossbench.config import compose_config
    from lossbench.run import run

    cfg = compose_config(s.overrides(f"output_dir={out_dir}", str(seed)))
    fit_times: list[tuple[float, float]] = []
    with timed_fit(fit_times):
        elapsed = stopwatch()
        results = run(cfg)
        wall_s, cpu_s = elapsed()
    if results["status"] != "ok":
        raise RuntimeError(f"lossbench run {s.task} failed: {results.get('reason')}")
    metric = results["selection"]["metric"].replace("val/", "test/")
    train_s, train_cpu_s = fit_times[0]
    return {"wall_s": wall_s, "cpu_s": cpu_s, "train_s": train_s, "train_cpu_s": train_cpu_s,
            "test": results["metrics"]["best"][metric]}


# --- measurements -----------------------------------------------------------------------------


def interleaved(
    calls: dict[str, Callable[[int], Any]], repeats: int
) -> dict[str, list[Any]]:
    """Each call `repeats` times, alternating which side goes first (drift hits both alike)."""
    samples: dict[str, list[Any]] = {side: [] for side in calls}
    for rep in range(repeats):
        order = list(calls) if rep % 2 == 0 else list(calls)[::-1]
        for side in order:
            samples[side].append(calls[side](rep))
    return samples


def summarise(
    samples: dict[str, list[Sample]], ratios: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """Medians per side, and `ratio_<name>` = side / plain of a key, for name: (side, key)."""
    figures: dict[str, Any] = {
        side: {key: statistics.median(x[key] for x in runs) for key in runs[0]}
        | {"samples": runs}
        for side, runs in samples.items()
    }
    for name, (side, key) in ratios.items():
        figures[f"ratio_{name}"] = figures[side][key] / figures["plain"][key]
    return figures


def wall_and_cpu(name: str, side: str = "lossbench") -> dict[str, tuple[str, str]]:
    """The `summarise` ratios of a side's wall and cpu seconds: `name` and `name_cpu`."""
    return {name: (side, "wall_s"), f"{name}_cpu": (side, "cpu_s")}


def bench_runs(s: Settings, repeats: int, scratch: Path) -> dict[str, Any]:
    """One run in this process, `repeats` times a side, after a warm-up of each side."""
    lossbench_run(replace(s, epochs=1), 0, scratch / f"warm-{s.task}")
    (_, warm), = replace(s, epochs=1).jobs(range(1))
    (_, config), = s.jobs(range(1))
    with plain_env():
        plain_job(warm)  # first calls' imports are start time, not a run

    def plain(_: int) -> Sample:
        with plain_env():
            return plain_job(config)

    samples = interleaved(
        {"lossbench": lambda rep: lossbench_run(s, 0, scratch / f"{s.task}-{rep}"),
         "plain": plain},
        repeats,
    )
    return summarise(samples, wall_and_cpu("run") | {"train": ("lossbench", "train_s"),
                                                     "train_cpu": ("lossbench", "train_cpu_s")})


def timed_process(argv: list[str]) -> Sample:
    """Wall and CPU seconds of a subprocess (output captured; a failure stops the benchmark)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_s": wall, "cpu_s": cpu}


def bench_sweep(s: Settings, runs: int, repeats: int, scratch: Path) -> dict[str, Any]:
    """Whole-process time of N seeds: a lossbench multirun vs the plain loop's N runs, and
    `python -m lossbench seeds=N` (the N seeds trained at once)."""
    seeds = ",".join(str(i) for i in range(runs))
    jobs = write_jobs(scratch / f"sweep-{s.task}-jobs.json", s.jobs(range(runs)))

    def lossbench(rep: int) -> Sample:
        where = f"out_root={scratch / f'sweep-{s.task}-{rep}'}"
        return timed_process([sys.executable, "-m", "lossbench", "-m", *s.overrides(where, seeds)])

    def plain(_: int) -> Sample:
        with plain_env():
            return timed_process(plain_process(jobs))

    def at_once(rep: int) -> Sample:
        return timed_process(multiseed_argv(s, runs, scratch, rep))

    sides = {"lossbench": lossbench, "plain": plain, "seeds": at_once}
    ratios = wall_and_cpu("sweep") | wall_and_cpu("seeds", "seeds")
    return {"runs": runs, **summarise(interleaved(sides, repeats), ratios)}


def bench_start(repeats: int, scratch: Path, s: Settings) -> dict[str, Any]:
    """Process start: a one-epoch run of `s` as a process (lossbench's CLI vs the plain loop),
    the CLI's --help, and `import torch` for reference."""
    python, one_epoch = sys.executable, replace(s, epochs=1)
    lossbench = [python, "-m", "lossbench", *one_epoch.overrides(f"out_root={scratch / 'start'}")]
    plain = plain_process(write_jobs(scratch / "start-jobs.json", one_epoch.jobs(range(1))))
    others = {"help": [python, "-m", "lossbench", "--help"],
              "import_torch": [python, "-c", "import torch"]}
    with plain_env():  # as a plain process starts; lossbench's sets it again on import
        runs = interleaved({"lossbench": lambda _: timed_process(lossbench),
                            "plain": lambda _: timed_process(plain)}, repeats)
        figures = {"one_epoch_run": summarise(runs, wall_and_cpu("start"))}
        for name, argv in others.items():
            samples = [timed_process(argv) for _ in range(repeats)]
            figures[name] = {key: statistics.median(x[key] for x in samples) for key in samples[0]}
    return figures


# --- several seeds at once ---------------------------------------------------------------------


def multiseed_argv(s: Settings, runs: int, scratch: Path, rep: int) -> list[str]:
    """`python -m lossbench seeds=N ...`: seeds 0..N-1 trained at once, in one process."""
    where = f"out_root={scratch / f'seeds-{s.task}-{rep}'}"
    return [sys.executable, "-m", "lossbench", f"seeds={runs}", *s.overrides(where)]


def bench_multiseed(s: Settings, runs: int, repeats: int, scratch: Path) -> dict[str, Any]:
    """`lossbench.stack.run_seeds(cfg, seeds)` in this process vs N plain runs in turn."""
    from lossbench.config import compose_config
    from lossbench.stack import run_seeds

    seeds = list(range(runs))
    configs = [config for _, config in s.jobs(range(runs))]

    def lossbench(rep: int) -> Sample:
        cfg = compose_config(s.overrides(f"output_dir={scratch / f'multiseed-{s.task}-{rep}'}"))
        elapsed = stopwatch()
        results = run_seeds(cfg, seeds)
        wall_s, cpu_s = elapsed()
        if any(r["status"] != "ok" for r in results):
            raise RuntimeError(f"multiseed {s.task}: {[r.get('reason') for r in results]}")
        return {"wall_s": wall_s, "cpu_s": cpu_s}

    def plain(_: int) -> Sample:
        with plain_env():
            elapsed = stopwatch()
            for config in configs:
                plain_job(config)
            wall_s, cpu_s = elapsed()
        return {"wall_s": wall_s, "cpu_s": cpu_s}

    samples = interleaved({"lossbench": lossbench, "plain": plain}, repeats)
    return {"runs": runs, **summarise(samples, wall_and_cpu("multiseed"))}


def bench_stack(s: Settings, sizes: list[int], scratch: Path) -> dict[str, Any]:
    """In-process cost per member as a stack grows: `run_seeds(cfg, range(K))` per size K
    (K=1 is a single run: a one-member stack trains alone)."""
    from lossbench.config import compose_config
    from lossbench.stack import run_seeds

    rows: dict[str, Any] = {}
    for k in sizes:
        cfg = compose_config(s.overrides(f"output_dir={scratch / f'stack-{s.task}-{k}'}"))
        elapsed = stopwatch()
        results = run_seeds(cfg, list(range(k)))
        wall_s, cpu_s = elapsed()
        if any(r["status"] != "ok" for r in results):
            raise RuntimeError(f"stack {s.task} x{k}: {[r.get('reason') for r in results]}")
        rows[str(k)] = {"members": k, "wall_s": wall_s, "cpu_s": cpu_s,
                        "wall_s_per_member": wall_s / k, "cpu_s_per_member": cpu_s / k}
    return rows


# --- whole sweeps: cases --------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A sweep timed as a whole process: lossbench's `-m` overrides and the target ratio."""

    about: str
    overrides: tuple[str, ...]
    target: float


CASES = {
    "digits_5x5": Case(
        "5 losses x 5 seeds on digits, 20 epochs",
        ("task=multiclass", "loss=ce,mae,gce,sce,mse_onehot", "seed=0,1,2,3,4",
         "trainer.max_epochs=20"), 0.35),
    "label_noise": Case(
        "+experiment=label_noise: 5 losses x 3 noise rates x 5 seeds on digits, 100 epochs",
        ("+experiment=label_noise",), 0.25),
    "regression_losses": Case(
        "+experiment=regression_losses: 5 losses x 5 seeds on diabetes, 100 epochs",
        ("+experiment=regression_losses",), 0.5),
}
# Added to every case on the lossbench side, so they are in every job's config on both sides.
CASE_COMMON = ("logger=none", "threads=1", "trainer.accelerator=cpu", "trainer.progress_bar=false")
EQUAL_WITHIN = 1e-6  # |lossbench - plain| of a job's test metric counted as equal


def override_key(override: str) -> str:
    """`+experiment=x` -> `experiment`; `trainer.max_epochs=3` -> `trainer.max_epochs`."""
    return override.partition("=")[0].lstrip("+~")


def case_overrides(case: Case, extra: Sequence[str] = ()) -> list[str]:
    """lossbench's `-m` overrides for a case (out_root aside): the case's own, CASE_COMMON,
    then `extra`, each replacing an override of the same key or added at the end."""
    merged = list(case.overrides)
    for override in [*CASE_COMMON, *extra]:
        keys = [override_key(o) for o in merged]
        if override_key(override) in keys:
            merged[keys.index(override_key(override))] = override
        else:
            merged.append(override)
    return merged


def sweep_jobs(overrides: Sequence[str]) -> list[tuple[list[str], dict[str, Any]]]:
    """The jobs `python -m lossbench -m <overrides>` runs, in its order: each job's overrides
    (as the sweep's manifest and results.json list them) and resolved config.

    lossbench's sweeper launches Hydra's basic sweeper's jobs in its order, and this is that
    sweeper's own expansion (`BasicSweeper.split_arguments`): the config's
    `hydra.sweeper.params` (an experiment's) first, then the command line's overrides (a key
    in both takes the command line's values at the param's place), their cross product in
    that order. Each job's config is composed from its overrides, as Hydra composes it."""
    from hydra import compose, initialize_config_module
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from lossbench.config import compose_config
    from lossbench.environment import to_plain
    from lossbench.sweep import register_resolvers

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    fixed = [text for text, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    register_resolvers()
    with initialize_config_module("lossbench.conf", version_base="1.3"):
        master = compose("config", overrides=fixed, return_hydra_config=True)
    params = master.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(overrides)
    batches = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
    return [(job, to_plain(compose_config(job))) for batch in batches for job in batch]


def without_out_root(overrides: Sequence[str]) -> tuple[str, ...]:
    """A job's overrides bar out_root (each repeat of a case writes to its own)."""
    return tuple(o for o in overrides if override_key(o) != "out_root")


def sweep_folder(out_root: Path) -> Path:
    """The one sweep folder (with its manifest.json) a case's lossbench process made."""
    found = sorted((out_root / "sweeps").glob("*/*/manifest.json"))
    if len(found) != 1:
        raise RuntimeError(f"expected one sweep manifest under {out_root}, found {len(found)}")
    return found[0].parent


def agreement(
    sweep_dir: Path, plain: list[dict[str, Any]], jobs: list[tuple[list[str], dict[str, Any]]],
) -> dict[str, Any]:
    """Per job, lossbench's best-epoch test selection metric (its results.json) against the
    plain loop's, matched by overrides; with how many jobs each side has, how many ran the
    same config (config hash) and in the same order, and kept the same best epoch."""
    from lossbench.results import config_hash

    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    entries = sorted(manifest["jobs"], key=lambda job: job["num"])
    mine = {without_out_root(job["overrides"]): job for job in plain}
    hashes = {without_out_root(o): config_hash(config) for o, config in jobs}
    diffs: list[float] = []
    same_config = same_epoch = unmatched = no_metric = 0
    statuses: dict[str, int] = {}
    differing: list[dict[str, Any]] = []  # the jobs beyond EQUAL_WITHIN, to look into
    metrics: set[str] = set()
    for entry in entries:
        key = without_out_root(entry["overrides"])
        path = Path(entry["folder"]) / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else None
        if key not in mine or results is None:
            unmatched += 1
            continue
        statuses[results["status"]] = statuses.get(results["status"], 0) + 1
        same_config += results.get("config_hash") == hashes.get(key)
        metric = (results.get("selection") or {}).get("metric", "").replace("val/", "test/")
        best = (results.get("metrics") or {}).get("best") or {}
        theirs, ours = best.get(metric), mine[key]["test"]
        if theirs is None or ours != ours:  # no best epoch (diverged at once): nothing to hold
            no_metric += 1
            continue
        metrics.add(metric)
        diffs.append(abs(theirs - ours))
        same_epoch += best.get("epoch") == mine[key]["best_epoch"]
        if diffs[-1] > EQUAL_WITHIN:
            differing.append({"overrides": list(key), "lossbench": theirs, "plain": ours,
                              "best_epoch": [best.get("epoch"), mine[key]["best_epoch"]]})
    return {
        "metric": ", ".join(sorted(metrics)), "jobs_lossbench": len(entries),
        "jobs_plain": len(plain), "compared": len(diffs), "unmatched": unmatched,
        "without_metric": no_metric,
        "same_order": [without_out_root(e["overrides"]) for e in entries]
        == [without_out_root(job["overrides"]) for job in plain],
        "same_config": same_config, "equal": sum(d <= EQUAL_WITHIN for d in diffs),
        "equal_within": EQUAL_WITHIN, "same_best_epoch": same_epoch,
        "median_abs_diff": statistics.median(diffs) if diffs else None,
        "max_abs_diff": max(diffs) if diffs else None, "statuses": statuses,
        "differing": differing,
    }


def bench_case(
    name: str, extra: Sequence[str], repeats: int, scratch: Path,
) -> dict[str, Any]:
    """A whole sweep as a process: `python -m lossbench -m ...` vs `bench.py --plain-jobs`
    running the same jobs (composed here) one after another; and their test metrics."""
    case = CASES[name]
    overrides = case_overrides(case, extra)
    jobs = sweep_jobs([*overrides, f"out_root={scratch / f'case-{name}'}"])
    jobs_file = write_jobs(scratch / f"case-{name}-jobs.json", jobs)
    out_roots: dict[int, Path] = {}
    plain_outs: dict[int, Path] = {}

    def lossbench(rep: int) -> Sample:
        out_roots[rep] = scratch / f"case-{name}-{rep}"
        argv = [sys.executable, "-m", "lossbench", "-m", *overrides, f"out_root={out_roots[rep]}"]
        return timed_process(argv)

    def plain(rep: int) -> Sample:
        plain_outs[rep] = scratch / f"case-{name}-plain-{rep}.json"
        with plain_env():
            return timed_process(plain_process(jobs_file, plain_outs[rep]))

    figures = summarise(interleaved({"lossbench": lossbench, "plain": plain}, repeats),
                        wall_and_cpu("case"))
    # The first repeat's sweep against the first plain process (training is deterministic).
    agreed = agreement(sweep_folder(out_roots[0]), json.loads(plain_outs[0].read_text()), jobs)
    return {"about": case.about, "overrides": overrides, "jobs": len(jobs),
            "target": case.target, **figures, "agreement": agreed}


# --- report -----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version  # importing Lightning costs seconds: not for this

    import torch

    return {
        "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "lightning": version("pytorch_lightning"),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "platform": platform.platform(),
        "cpu": cpu_model(),
    }


def cpu_model() -> str:
    """The processor's name and whether it has AVX-512: the ratios move with the host CPU
    (small matrix products, which the plain loop runs, and batched ones, which a stack runs,
    do not speed up alike)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in text.splitlines()
             if line.startswith("model name")]
    return f"{names[0] if names else 'unknown'}{', AVX-512' if 'avx512f' in text else ''}"


def _ratio(ratio: float, target: float | None) -> str:
    if target is None:
        return f"{ratio:.2f}x"
    return f"[{'green' if ratio <= target else 'red'}]{ratio:.2f}x[/]"


def _seconds(sample: dict[str, float], wall: str = "wall_s", cpu: str = "cpu_s") -> str:
    return f"{sample[wall]:.3f} ({sample[cpu]:.3f})"


def _row(
    table: Any, case: str, measure: str, figures: dict[str, Any], ratio: str,
    keys: tuple[str, str] = ("wall_s", "cpu_s"), target: float | None = None,
    side: str = "lossbench",
) -> None:
    """A side's and plain's seconds, wall (cpu), and their ratios `ratio_<ratio>[_cpu]`."""
    table.add_row(
        case, measure, _seconds(figures[side], *keys), _seconds(figures["plain"], *keys),
        _ratio(figures[f"ratio_{ratio}"], target), _ratio(figures[f"ratio_{ratio}_cpu"], target),
        f"<= {target}x" if target else "",
    )


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    info, opts = report["machine"], report["options"]
    table = Table(title="lossbench vs plain PyTorch: seconds, wall (cpu), medians")
    for column in ("case", "measure", "lossbench", "plain", "ratio", "cpu ratio", "target"):
        left = column in ("case", "measure")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for case in report["cases"].values():
        s, runs, sweep = case["settings"], case.get("runs"), case.get("sweep")
        names = iter([f"{s['dataset']} {s['loss']}\n{s['epochs']} epochs\nbatch {s['batch_size']}"])
        if runs:
            _row(table, next(names, ""), "one run: run() | plain_job", runs, "run")
            _row(table, "", "training: Trainer.fit | loop", runs, "train",
                 ("train_s", "train_cpu_s"), TARGETS["train"])
        if sweep:
            _row(table, next(names, ""), f"sweep: -m seed=0..{sweep['runs'] - 1}, process",
                 sweep, "sweep", target=TARGETS["sweep"])
            _row(table, "", f"sweep: seeds={sweep['runs']}, process", sweep, "seeds",
                 target=TARGETS["sweep"], side="seeds")
        if case.get("multiseed"):
            multi = case["multiseed"]
            _row(table, next(names, ""), f"run_seeds: {multi['runs']} seeds in-process", multi,
                 "multiseed")
        if runs:
            tests = runs["lossbench"]["test"], runs["plain"]["test"]
            same = abs(tests[0] - tests[1]) <= 1e-5 * max(1.0, abs(tests[1]))
            table.add_row("", "test metric (must match)", f"{tests[0]:.4f}", f"{tests[1]:.4f}",
                          "equal" if same else "[red]DIFFER[/]")
        table.add_section()
    for name, case in (report.get("sweep_cases") or {}).items():
        _row(table, f"{name}\n{case['jobs']} jobs", "sweep -m | plain, process", case, "case",
             target=case["target"])
        agreed = case["agreement"]
        spread = "" if agreed["max_abs_diff"] is None else f"max {agreed['max_abs_diff']:.1e}"
        table.add_row("", f"{agreed['metric'] or 'test'} within {agreed['equal_within']:g}",
                      f"{agreed['equal']}/{agreed['compared']} jobs", spread)
        table.add_section()
    if "start" in report:
        start = report["start"]
        _row(table, "process start", "1-epoch diabetes run", start["one_epoch_run"], "start")
        table.add_row("", "lossbench --help | import torch", _seconds(start["help"]),
                      _seconds(start["import_torch"]))
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    for name, case in (report.get("sweep_cases") or {}).items():
        agreed = case["agreement"]
        console.print(
            f"{name}: {agreed['jobs_lossbench']} jobs in lossbench's sweep, "
            f"{agreed['jobs_plain']} in the plain process, {agreed['compared']} compared "
            f"(same order: {'yes' if agreed['same_order'] else 'NO'}; same config: "
            f"{agreed['same_config']}; same best epoch: {agreed['same_best_epoch']}; "
            f"unmatched: {agreed['unmatched']}; without a best epoch: "
            f"{agreed['without_metric']}; lossbench statuses: {agreed['statuses']})")
    for task, case in report["cases"].items():
        for k, row in (case.get("stack") or {}).items():
            console.print(f"{task}: stack of {k}: {row['wall_s']:.2f} s wall, "
                          f"{row['wall_s_per_member']:.3f} s ({row['cpu_s_per_member']:.3f} s "
                          f"CPU) per member")
    console.print(
        f"{info['cores']} cores ({info['cores_usable']} usable), torch threads "
        f"{info['torch_threads']}, python {info['python']}, torch {info['torch']}, "
        f"lightning {info['lightning']}, {info.get('cpu', 'cpu unknown')}; "
        f"load average {info['load_avg_1m_at_start']} at start; "
        f"repeats: runs {opts['repeats']}, sweeps {opts['sweep_repeats']}, "
        f"start {opts['start_repeats']}, cases {opts['case_repeats']}"
    )


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per side (median)")
    parser.add_argument("--sweep-runs", type=int, default=10, help="seeds in the sweep")
    parser.add_argument("--sweep-repeats", type=int, default=3, help="sweeps per side (median)")
    parser.add_argument("--start-repeats", type=int, default=3, help="process starts each")
    parser.add_argument("--stack-sizes", type=int, nargs="+", default=[1, 10, 100],
                        help="members per stack for the in-process cost per member")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repeat, 2-seed sweeps, 1 process start each")
    parser.add_argument("--only", nargs="+", choices=MEASURES, default=list(DEFAULT_MEASURES),
                        help="measure only these (default: all but cases)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES),
                        help="the whole sweeps `--only cases` times (default: all)")
    parser.add_argument("--case-epochs", type=int, metavar="N",
                        help="train each case's jobs N epochs (default: the case's own)")
    parser.add_argument("--case-overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="lossbench overrides replacing the cases' own of the same key, "
                             "e.g. loss=ce,mae seed=0,1 for a smaller sweep")
    parser.add_argument("--case-repeats", type=int, default=1, help="processes per side")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--plain-jobs", type=Path, metavar="FILE",
                        help="only run the plain loop on the jobs in FILE (bench.py writes it)")
    parser.add_argument("--plain-out", type=Path, metavar="FILE",
                        help="with --plain-jobs: write each job's figures here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.sweep_runs, args.sweep_repeats, args.start_repeats = 1, 2, 1, 1
        args.case_repeats, args.case_epochs = 1, args.case_epochs or 1
    if args.case_epochs is not None:
        args.case_overrides = [*args.case_overrides, f"trainer.max_epochs={args.case_epochs}"]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.plain_jobs is not None:
        plain_jobs(args.plain_jobs, args.plain_out)
        return
    import torch

    from lossbench.run import quiet_lightning

    torch.set_num_threads(1)
    quiet_lightning()
    scratch = Path(tempfile.mkdtemp(prefix="lossbench-bench-"))
    report: dict[str, Any] = {"machine": machine_info(), "cases": {},
                              "options": {k: str(v) if isinstance(v, Path) else v
                                          for k, v in vars(args).items()}}
    try:
        for task in args.tasks if set(args.only) & set(TASK_MEASURES) else ():
            s = settings_for(task, args.epochs, args.batch_size)
            case = report["cases"][task] = {"settings": asdict(s)}
            if "runs" in args.only:
                case["runs"] = bench_runs(s, args.repeats, scratch)
            if "sweep" in args.only:
                case["sweep"] = bench_sweep(s, args.sweep_runs, args.sweep_repeats, scratch)
            if "multiseed" in args.only:
                case["multiseed"] = bench_multiseed(
                    s, args.sweep_runs, args.sweep_repeats, scratch)
            if "stack" in args.only:
                case["stack"] = bench_stack(s, args.stack_sizes, scratch)
        if "start" in args.only:
            report["start"] = bench_start(
                args.start_repeats, scratch,
                settings_for("regression", args.epochs, args.batch_size))
        if "cases" in args.only:
            report["sweep_cases"] = {
                name: bench_case(name, args.case_overrides, args.case_repeats, scratch)
                for name in args.cases}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
