"""Whole sweeps, stacked, against a plain PyTorch loop doing the same runs one after another.

`python scripts/bench.py --only cases` runs this (or run it directly). Each case is a lossbench
multirun, timed as a whole process, against one plain process that runs the same jobs in turn:
the jobs' resolved configs (read back from the sweep's manifest and results), lossbench's data
loader for the same split and perturbation, lossbench's model and loss modules, seeded as a
job seeds them, the same optimizer, the same batch order (`TensorBatches`), the task's metrics
on the whole validation split every epoch, best weights by the task's selection metric, and
test metrics of the last and best weights. The loop itself is the only thing written by hand.
Each job's best-epoch test selection metric must agree between the two (float rounding differs
because the stack runs members through one vmapped step): the report says in how many jobs
they agree within 1e-6 and the largest difference.

Usage:
    python scripts/bench_cases.py                        # all cases, 1 repeat (~20 min)
    python scripts/bench_cases.py --cases digits_5x5     # one case
    python scripts/bench_cases.py --epochs 2 --json f    # smoke run, figures as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# case -> (lossbench overrides, epochs the case trains by default, target ratio)
CASES: dict[str, tuple[list[str], int, float]] = {
    "digits_5x5": (["task=multiclass", "loss=ce,mae,gce,sce,mse_onehot", "seed=0,1,2,3,4",
                    "trainer.max_epochs=20"], 20, 0.35),
    "label_noise": (["+experiment=label_noise"], 100, 0.25),
    "regression_losses": (["+experiment=regression_losses"], 100, 0.5),
}
COMMON = ["logger=none", "threads=1", "trainer.accelerator=cpu", "trainer.progress_bar=false"]
LIGHTNING_ENV = ("PYTORCH_NVML_BASED_CUDA_CHECK",)  # set by Lightning's import, not plain's


def timed_process(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall and CPU seconds of a subprocess; a failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "stdout": proc.stdout}


def lossbench_argv(case: str, out_root: Path, epochs: int | None, stack: bool) -> list[str]:
    overrides, _, _ = CASES[case]
    if epochs is not None:
        overrides = [o for o in overrides if not o.startswith("trainer.max_epochs=")]
        overrides.append(f"trainer.max_epochs={epochs}")
    return [sys.executable, "-m", "lossbench", "-m", *overrides, *COMMON, f"out_root={out_root}",
            *([] if stack else ["stack=false"])]


def sweep_jobs(out_root: Path) -> list[dict[str, Any]]:
    """The sweep's jobs in order, from its manifest: each job's resolved config and results."""
    (manifest_path,) = out_root.glob("sweeps/*/*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    jobs = []
    for job in manifest["jobs"]:
        results = json.loads((Path(job["folder"]) / "results.json").read_text())
        jobs.append({"num": job["num"], "config": results["config"], "results": results})
    return jobs


# --- the plain side: a hand-written loop over the same jobs ------------------------------------


def plain_job(config: dict[str, Any]) -> float:
    """One job trained and evaluated in a plain loop; its best-epoch test selection metric."""
    import copy

    import numpy as np
    import torch

    from lossbench.data.batches import TensorBatches
    from lossbench.data.loading import load_data
    from lossbench.loss_config import loss_from_config
    from lossbench.parts import build_model, build_optimizer
    from lossbench.tasks import SELECTION, compute_metrics, head_size, is_better, squeeze_head

    seed = int(config["seed"])
    data = load_data(config)
    kind = data.kind
    loss_fn = loss_from_config(config["loss"], kind, data)
    random.seed(seed)  # what the job's seeding does before it builds the model
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = build_model(config["model"], data, head_size(
        data, int(config["model"].get("embedding_dim", 32))))
    optimizer = build_optimizer(model.parameters(), config["optimizer"])
    squeeze = squeeze_head(kind)
    selection = SELECTION[kind][0]

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

    batches = TensorBatches(data.x_train, data.y_train, int(config["batch_size"]), seed=seed)
    best: dict[str, Any] = {"value": None, "state": None}
    for _ in range(int(config["trainer"]["max_epochs"])):
        loss_sum = torch.zeros(())
        for x, y in batches:
            loss = loss_fn(predict(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        row = {"train/loss": float(loss_sum) / len(batches), **evaluate("val")}
        if is_better(kind, row[f"val/{selection}"], best["value"]):
            best = {"value": row[f"val/{selection}"], "state": copy.deepcopy(model.state_dict())}
    evaluate("val", "test")  # the last weights, as lossbench reports them too
    model.load_state_dict(best["state"])
    return evaluate("val", "test")[f"test/{selection}"]


def plain_jobs(configs_path: Path, out_path: Path) -> None:
    """What `--plain-jobs` runs: every job in turn, a line each, their test metrics saved."""
    import torch

    torch.set_num_threads(1)
    configs = json.loads(configs_path.read_text())
    tests = []
    for i, config in enumerate(configs, 1):
        tests.append(plain_job(config))
        print(f"[{i}/{len(configs)}] plain {config['loss']['name']} s{config['seed']}: "
              f"test {tests[-1]:.4g}", flush=True)
    out_path.write_text(json.dumps(tests))


# --- measurement -------------------------------------------------------------------------------


def agreement(jobs: list[dict[str, Any]], plain: list[float]) -> dict[str, Any]:
    """How many jobs' best-epoch test metric equal the plain loop's (within 1e-6)."""
    diffs = []
    for job, other in zip(jobs, plain, strict=True):
        results = job["results"]
        metric = results["selection"]["metric"].replace("val/", "test/")
        diffs.append(abs(results["metrics"]["best"][metric] - other))
    return {"jobs": len(diffs), "equal": sum(d <= 1e-6 for d in diffs),
            "median_abs_diff": statistics.median(diffs), "max_abs_diff": max(diffs)}


def bench_case(
    case: str, scratch: Path, epochs: int | None, repeats: int, apart: bool = True,
) -> dict[str, Any]:
    """lossbench stacked, the plain process, and lossbench with stack=false (once)."""
    env = {k: v for k, v in os.environ.items() if k not in LIGHTNING_ENV}
    runs: dict[str, list[dict[str, float]]] = {"lossbench": [], "plain": []}
    jobs: list[dict[str, Any]] = []
    plain_tests: list[float] = []
    for rep in range(repeats):
        out_root = scratch / f"{case}-{rep}"
        sample = timed_process(lossbench_argv(case, out_root, epochs, stack=True))
        runs["lossbench"].append({k: sample[k] for k in ("wall_s", "cpu_s")})
        jobs = sweep_jobs(out_root)
        configs_path, tests_path = scratch / f"{case}-{rep}.json", scratch / f"{case}-{rep}.out"
        configs_path.write_text(json.dumps([j["config"] for j in jobs]))
        sample = timed_process([sys.executable, __file__, "--plain-jobs", str(configs_path),
                                "--out", str(tests_path)], env=env)
        runs["plain"].append({k: sample[k] for k in ("wall_s", "cpu_s")})
        plain_tests = json.loads(tests_path.read_text())
    apart_s = None
    if apart:
        sample = timed_process(lossbench_argv(case, scratch / f"{case}-apart", epochs, False))
        apart_s = {k: sample[k] for k in ("wall_s", "cpu_s")}
    medians = {side: {k: statistics.median(s[k] for s in samples) for k in ("wall_s", "cpu_s")}
               for side, samples in runs.items()}
    return {
        "case": case, "jobs": len(jobs), "target": CASES[case][2],
        "epochs": epochs or CASES[case][1], **medians,
        "stack_false": apart_s,
        "ratio": medians["lossbench"]["wall_s"] / medians["plain"]["wall_s"],
        "ratio_cpu": medians["lossbench"]["cpu_s"] / medians["plain"]["cpu_s"],
        "ratio_stack_false": apart_s and apart_s["wall_s"] / medians["plain"]["wall_s"],
        "agreement": agreement(jobs, plain_tests), "samples": runs,
    }


def print_cases(figures: list[dict[str, Any]]) -> None:
    print("| case | jobs | lossbench (stacked) | `stack=false` | plain loop | ratio (cpu) | "
          "target | test metric equal |")
    print("|---|---|---|---|---|---|---|---|")
    for f in figures:
        a = f["agreement"]
        print(f"| {f['case']} ({f['epochs']} epochs) | {f['jobs']} | "
              f"{f['lossbench']['wall_s']:.1f} s | "
              f"{f'{apart:.1f} s' if (apart := (f['stack_false'] or {}).get('wall_s')) else '–'} | "
              f"{f['plain']['wall_s']:.1f} s | **{f['ratio']:.2f}×** ({f['ratio_cpu']:.2f}×) | "
              f"≤ {f['target']}× | {a['equal']} of {a['jobs']} (max diff "
              f"{a['max_abs_diff']:.2g}) |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--epochs", type=int, help="train every case this long (smoke runs)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-apart", nargs="*", choices=list(CASES), default=[],
                        help="cases not also timed with stack=false (label_noise: ~8 min)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--plain-jobs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_jobs is not None:
        plain_jobs(args.plain_jobs, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="lossbench-cases-") as scratch:
        figures = [bench_case(c, Path(scratch), args.epochs, args.repeats,
                              apart=c not in args.skip_apart) for c in args.cases]
    print_cases(figures)
    if args.json:
        args.json.write_text(json.dumps({
            "cases": figures, "cores": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
