"""Is lossbench as fast as plain PyTorch? Times lossbench against a hand-written loop.

Both sides do the same work on the same inputs: lossbench's TaskData splits, lossbench's MLP
(same hidden dims, initialised right after seeding with the same seed), Adam with the config's
lr, the same batch size, epochs and batch order, the task's torchmetrics metrics on the whole
validation split every epoch (best weights kept by the task's selection metric), and a final
test evaluation of the last and the best weights. Both use one torch thread, so the two test
metrics printed must be equal.

Measured, lossbench and plain interleaved (medians; wall seconds, CPU seconds beside them, as
CPU time is far less disturbed by other processes on a shared machine):
  - one run in this process: `lossbench.run.run(cfg)` and its `Trainer.fit` vs `plain_run`
    and its training loop (per-epoch validation included on both sides);
  - a sweep of N seeds, whole process: `python -m lossbench -m ... seed=0,..,N-1`
    vs `python scripts/bench.py --plain-sweep N ...`;
  - process start: a one-epoch run as a process (the CLI vs `--plain-sweep 1`), and
    `python -m lossbench --help` and `python -c "import torch"` for reference;
  - N seeds at once (lossbench.stack): `python -m lossbench seeds=N` vs
    the plain sweep process, and `run_seeds(cfg, seeds)` vs N plain runs in this process;
  - the in-process cost per member of a stack of 1, 10 and 100 members (`--stack-sizes`).
A sweep of seeds (`-m seed=0,..`) is stacked by the sweeper (lossbench.stack); `stack=false`
in the overrides times it job by job.

Usage:
    python scripts/bench.py                    # 5 repeats, 10-run sweeps x3 (~12 min, 2 cores)
    python scripts/bench.py --only sweep       # one measure (runs, sweep, multiseed, start)
    python scripts/bench.py --quick            # smoke run
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

# Issue "Fast as plain PyTorch": lossbench / plain for one run's training and a 10-run sweep.
TARGETS = {"train": 1.25, "sweep": 1.3}
MEASURES = ("runs", "sweep", "multiseed", "stack", "start")
TASKS = {"multiclass": "ce", "regression": "mse"}  # task config -> lossbench loss config
PLAIN_LOSSES = {"ce": "cross_entropy", "mse": "mse_loss"}  # -> torch.nn.functional name
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


def settings_for(task: str, epochs: int, batch_size: int) -> Settings:
    from lossbench.config import compose_config
    from lossbench.run import to_plain

    config = to_plain(compose_config([f"task={task}", f"loss={TASKS[task]}"]))
    model, optimizer, task_cfg = config["model"], config["optimizer"], config["task"]
    if model["name"] != "mlp" or model.get("dropout") or optimizer["name"] != "adam" or \
            optimizer["weight_decay"]:
        raise SystemExit(f"bench expects an MLP without dropout and plain Adam: {config}")
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


def plain_run(s: Settings, seed: int) -> Sample:
    """Train and evaluate as lossbench does, in a plain loop; times the whole and the loop."""
    import copy

    import torch
    import torch.nn.functional as F

    from lossbench.data.tabular import make_task_data
    from lossbench.models import MLP
    from lossbench.tasks import SELECTION, compute_metrics, head_size, is_better, squeeze_head

    whole = stopwatch()
    data = make_task_data(s.kind, s.dataset, seed, s.val_fraction, s.test_fraction)
    torch.manual_seed(seed)
    model = MLP(data.num_features, head_size(data), list(s.hidden_dims))
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    loss_fn = getattr(F, PLAIN_LOSSES[s.loss])
    squeeze, selection = squeeze_head(s.kind), SELECTION[s.kind][0]

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out.squeeze(-1) if squeeze else out

    @torch.no_grad()
    def evaluate(*splits: str) -> dict[str, float]:
        model.eval()
        metrics = {}
        for split in splits:
            x, y = data.split(split)
            metrics |= {f"{split}/{k}": v for k, v in compute_metrics(predict(x), y, data).items()}
        model.train()
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist(), strict=True))

    generator = torch.Generator().manual_seed(seed)
    best: dict[str, Any] = {"value": None, "state": None}
    train = stopwatch()
    for _ in range(s.epochs):
        order = torch.randperm(len(data.x_train), generator=generator)
        loss_sum = torch.zeros(())
        for i in range(0, len(order), s.batch_size):
            batch = order[i : i + s.batch_size]
            loss = loss_fn(predict(data.x_train[batch]), data.y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        steps = -(-len(order) // s.batch_size)
        row = {"train/loss": float(loss_sum) / steps, **evaluate("val")}
        if is_better(s.kind, row[f"val/{selection}"], best["value"]):
            best = {"value": row[f"val/{selection}"], "state": copy.deepcopy(model.state_dict())}
    train_s, train_cpu_s = train()
    evaluate("val", "test")  # the last epoch's weights, as lossbench reports them too
    model.load_state_dict(best["state"])
    test = evaluate("val", "test")[f"test/{selection}"]
    wall_s, cpu_s = whole()
    return {"wall_s": wall_s, "cpu_s": cpu_s, "train_s": train_s, "train_cpu_s": train_cpu_s,
            "test": test}


@contextmanager
def plain_env() -> Iterator[None]:
    """The environment of a plain PyTorch process: without what Lightning's import set."""
    saved = {name: os.environ.pop(name) for name in LIGHTNING_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def plain_sweep(s: Settings, runs: int) -> None:
    """What `--plain-sweep N` runs: seeds 0..N-1 one after another, a line per run."""
    import torch

    torch.set_num_threads(1)
    for seed in range(runs):
        result = plain_run(s, seed)
        print(f"[{seed + 1}/{runs}] plain {s.task} s{seed}: test {result['test']:.4g} "
              f"{result['wall_s']:.2f}s", flush=True)


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
    with plain_env():
        plain_run(replace(s, epochs=1), 0)  # first calls' imports are start time, not a run

    def plain(_: int) -> Sample:
        with plain_env():
            return plain_run(s, 0)

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

    def lossbench(rep: int) -> Sample:
        where = f"out_root={scratch / f'sweep-{s.task}-{rep}'}"
        return timed_process([sys.executable, "-m", "lossbench", "-m", *s.overrides(where, seeds)])

    def plain(_: int) -> Sample:
        with plain_env():
            return timed_process([sys.executable, __file__, "--plain-sweep", str(runs),
                                  "--settings", json.dumps(asdict(s))])

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
    plain = [python, __file__, "--plain-sweep", "1", "--settings", json.dumps(asdict(one_epoch))]
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
            for seed in seeds:
                plain_run(s, seed)
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


# --- report -----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import pytorch_lightning
    import torch

    return {
        "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "lightning": pytorch_lightning.__version__,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "platform": platform.platform(),
    }


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
            _row(table, next(names, ""), "one run: run() | plain_run", runs, "run")
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
    if "start" in report:
        start = report["start"]
        _row(table, "process start", "1-epoch diabetes run", start["one_epoch_run"], "start")
        table.add_row("", "lossbench --help | import torch", _seconds(start["help"]),
                      _seconds(start["import_torch"]))
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    for task, case in report["cases"].items():
        for k, row in (case.get("stack") or {}).items():
            console.print(f"{task}: stack of {k}: {row['wall_s']:.2f} s wall, "
                          f"{row['wall_s_per_member']:.3f} s ({row['cpu_s_per_member']:.3f} s "
                          f"CPU) per member")
    console.print(
        f"{info['cores']} cores ({info['cores_usable']} usable), torch threads "
        f"{info['torch_threads']}, python {info['python']}, torch {info['torch']}, "
        f"lightning {info['lightning']}; load average {info['load_avg_1m_at_start']} at start; "
        f"repeats: runs {opts['repeats']}, sweeps {opts['sweep_repeats']}, "
        f"start {opts['start_repeats']}"
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
    parser.add_argument("--only", nargs="+", choices=MEASURES, default=list(MEASURES),
                        help="measure only these (default: all)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--plain-sweep", type=int, metavar="N",
                        help="only run the plain loop for seeds 0..N-1 (the plain sweep)")
    parser.add_argument("--settings", help=argparse.SUPPRESS)  # JSON Settings for --plain-sweep
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.sweep_runs, args.sweep_repeats, args.start_repeats = 1, 2, 1, 1
    if args.plain_sweep is not None and not args.settings:
        parser.error("--plain-sweep needs --settings (bench.py passes them)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.plain_sweep is not None:
        plain_sweep(Settings(**json.loads(args.settings)), args.plain_sweep)
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
        for task in args.tasks:
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
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
