"""lossbench's GPU paths, run and measured: figures as JSON (`scripts/gpu_check.sh` runs this).

    scripts/gpu_check.sh OUT          # on a GPU machine: ~6 minutes, a 450 s budget
    scripts/gpu_check.sh --cpu OUT    # the same steps, tiny, on CPU (~30 s; the tests run it)

The check carries its own data: CIFAR-10 in the release's on-disk format (cifar-10-batches-py:
data_batch_1..5, test_batch, batches.meta, python pickles torchvision.datasets.CIFAR10 reads),
written into a temporary folder. Each class has its own pattern of coloured 8x8 blocks, and
every image adds its own contrast, brightness and Gaussian noise, so a network's accuracy moves
well above chance within an epoch. Then, in turn (the figures go to OUT/gpu_check.json, each
child's output to OUT/logs/, each run's results.json to OUT/runs/):

- CIFAR-10 ResNet-18 through lossbench's CLI (`python -m lossbench task=cifar10 ...`, one
  process a run) in fp32, bf16-mixed, and bf16-mixed with compile=true, data on the device;
  and bf16-mixed with the data streamed (task.data_path=stream: DataLoader, workers, pinned
  memory). An epoch's time is the interval between two consecutive epoch ends (each ends with
  the module's host sync), median over the epochs after the first (which pays for cuDNN's
  first calls and for compilation): images/s = training images / that time;
- the same epoch as a plain PyTorch loop in this script: the same ResNet-18
  (lossbench.vision_models), normalisation of uint8 images on the device, Adam with
  lossbench's lr, batch size, precision (autocast bf16), shuffled index batches from tensors
  on the device, and a validation pass with one host sync an epoch, as lossbench's module does.
  `ratios` = lossbench's epoch time / the plain loop's;
- peak GPU memory of every run (torch.cuda.max_memory_allocated; null on CPU), host syncs
  during the training steps of the second epoch (torch.cuda.set_sync_debug_mode("warn"),
  counted; null on CPU) and GPU utilisation sampled during the timed epochs
  (torch.cuda.utilization; null where NVML is missing);
- tabular runs of several seeds at once (lossbench.multiseed.run_seeds, what `seeds=N` runs)
  at 1, 10 and 100 members against the same runs one after another (lossbench.run.run per
  seed), in one process, configs composed before the clock starts: members/s.

Every path must end with finite test metrics; `ok` in the JSON says whether all did, and the
exit code is 1 when not. Steps run in order of importance within a time budget; a step that
would not fit is recorded as skipped.

The CIFAR files are not the release's, so torchvision's md5 check would refuse them: the child
process that runs lossbench's CLI (`gpu_check.py cli`) first points torchvision's CIFAR10
checksum table at the files written here (torchvision's own integrity check and reader then
run unchanged), and wraps the module's epoch hooks to read the clock; lossbench's code is not
edited. On CPU, compile=true uses torch.compile's aot_eager backend (graph capture and
AOTAutograd, no C++ code generation, which takes minutes on two cores) and the model is
lossbench's small CNN (a ResNet-18 step in bf16 takes seconds on CPU); on a GPU, the
default inductor backend and ResNet-18. The dry run also groups its steps into three
processes, two at a time (`--serial` runs them as on a GPU: one process a run, in turn).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA = 1
CIFAR_FOLDER = "cifar-10-batches-py"
SYNC_MESSAGE = "synchroniz"  # "called a synchronizing CUDA operation"


@dataclass
class Sizes:
    """What the check runs: full sizes on a GPU, tiny ones for the CPU dry run."""

    mode: str
    model: str
    model_overrides: list[str]
    per_batch: int  # images per CIFAR batch file (5 training files, 1 test file)
    val_size: int
    batch_size: int
    epochs: int
    members: list[int]
    tabular_epochs: int
    budget_s: float
    compile_backend: str | None = None  # None: torch.compile's default (inductor)
    threads: int = 0
    caps: dict[str, float] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return 5 * self.per_batch - self.val_size


def sizes_for(cpu: bool) -> Sizes:
    if cpu:
        return Sizes(
            mode="cpu", model="cnn", model_overrides=["model.width=8"], per_batch=16,
            val_size=16, batch_size=16, epochs=3, members=[1, 2, 4], tabular_epochs=2,
            budget_s=240, compile_backend="aot_eager", threads=1,
            caps={"cli": 90, "plain": 90, "tabular": 120},
        )
    return Sizes(
        mode="gpu", model="resnet18", model_overrides=[], per_batch=10_000, val_size=5000,
        batch_size=128, epochs=4, members=[1, 10, 100], tabular_epochs=10, budget_s=450,
        caps={"cli": 150, "cli_compile": 240, "plain": 150, "plain_compile": 200,
              "tabular": 200},
    )


# --- the data: CIFAR-10's on-disk format, with patterns a network can learn ---------------


def class_patterns(seed: int = 0) -> Any:
    """Ten (3, 32, 32) patterns: a 4x4 grid of coloured 8x8 blocks each, values about [-1, 1]."""
    import numpy as np

    coarse = np.random.default_rng(seed).normal(size=(10, 3, 4, 4))
    return np.kron(coarse, np.ones((1, 1, 8, 8))).astype(np.float32)


def cifar_batch(patterns: Any, n: int, rng: Any) -> tuple[Any, list[int]]:
    """n images as CIFAR rows (uint8, 3072 = R, G, B planes of 32x32) and their labels."""
    import numpy as np

    labels = rng.integers(0, 10, size=n)
    contrast = rng.uniform(25.0, 55.0, size=(n, 1, 1, 1)).astype(np.float32)
    brightness = rng.uniform(100.0, 156.0, size=(n, 1, 1, 1)).astype(np.float32)
    images = brightness + contrast * patterns[labels]
    images += 45.0 * rng.standard_normal(size=images.shape, dtype=np.float32)
    rows = np.clip(np.rint(images), 0, 255).astype(np.uint8).reshape(n, 3072)
    return rows, labels.tolist()


def _dump(path: Path, obj: dict[str, Any]) -> str:
    """Pickle a dict per file as the release does (protocol 4: the release's protocol 2 spells
    arrays out as latin-1 text, 1.5x the bytes, slow to write and read); the file's md5."""
    data = pickle.dumps(obj, protocol=4)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def write_cifar10(root: Path, per_batch: int, seed: int = 0) -> dict[str, str]:
    """<root>/cifar-10-batches-py as torchvision reads it; {file: md5}, kept in checksums.json."""
    import numpy as np

    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    patterns, rng = class_patterns(seed), np.random.default_rng(seed + 1)
    md5s = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows, labels = cifar_batch(patterns, per_batch, rng)
        batch = {"batch_label": name, "labels": labels, "data": rows,
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        md5s[name] = _dump(folder / name, batch)
    meta = {"num_cases_per_batch": per_batch, "num_vis": 3072,
            "label_names": [f"class{i}" for i in range(10)]}
    md5s["batches.meta"] = _dump(folder / "batches.meta", meta)
    (root / "checksums.json").write_text(json.dumps(md5s, indent=1))
    return md5s


def use_checksums(data_dir: Path) -> None:
    """Point torchvision's CIFAR10 md5 table at the files `write_cifar10` wrote."""
    import torchvision.datasets as tvd

    md5s = json.loads((data_dir / "checksums.json").read_text())
    tvd.CIFAR10.train_list = [[f"data_batch_{i}", md5s[f"data_batch_{i}"]] for i in range(1, 6)]
    tvd.CIFAR10.test_list = [["test_batch", md5s["test_batch"]]]
    tvd.CIFAR10.meta = dict(tvd.CIFAR10.meta, md5=md5s["batches.meta"])


# --- what a child reports about its epochs ------------------------------------------------------


class SyncCounter:
    """Counts torch's "called a synchronizing CUDA operation" warnings while armed.

    torch.cuda.set_sync_debug_mode("warn") makes every host sync a warning; this hook on
    warnings.showwarning, installed once for the process (Lightning's own warning contexts
    save and restore it), counts those while armed instead of printing them.
    """

    def __init__(self) -> None:
        import warnings

        self.armed, self.count = False, 0
        self._show = warnings.showwarning
        warnings.showwarning = self._showwarning
        warnings.filterwarnings("always", message=f".*{SYNC_MESSAGE}.*")

    def _showwarning(self, message: Any, category: Any, filename: str, lineno: int,
                     file: Any = None, line: str | None = None) -> None:
        if self.armed and SYNC_MESSAGE in str(message):
            self.count += 1
            return
        self._show(message, category, filename, lineno, file, line)

    def arm(self) -> None:
        import torch

        self.count, self.armed = 0, True
        torch.cuda.set_sync_debug_mode("warn")

    def disarm(self) -> int:
        import torch

        torch.cuda.set_sync_debug_mode("default")
        self.armed = False
        return self.count


class EpochProbe:
    """Clock, syncs, memory and utilisation of the epochs of the run(s) in this process.

    `start()` at training start, `epoch_start()` / `epoch_end()` around each epoch (the end
    after the epoch's host sync). Host syncs are counted in the second epoch, between its
    start and its end hook, i.e. over its training steps; GPU utilisation is sampled over
    every epoch after the first.
    """

    syncs: SyncCounter | None = None  # one for the process

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda and EpochProbe.syncs is None:
            EpochProbe.syncs = SyncCounter()
        self.runs: list[dict[str, Any]] = []
        self._counting = False
        self._sampling = False
        self._sampler: threading.Thread | None = None

    @property
    def run(self) -> dict[str, Any]:
        return self.runs[-1]

    def start(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.runs.append({"train_start": time.perf_counter(), "epoch_ends": [], "syncs": [],
                          "gpu_util": []})

    def epoch_start(self) -> None:
        if not self.cuda or not self.runs or not self.run["epoch_ends"]:
            return  # the first epoch is warm-up
        if len(self.run["epoch_ends"]) == 1 and self.syncs is not None:
            self.syncs.arm()
            self._counting = True
        self._start_sampler()

    def before_epoch_end(self, last: bool) -> None:
        if self._counting and self.syncs is not None:
            self.run["syncs"].append(self.syncs.disarm())
            self._counting = False
        if last:
            self._stop_sampler()

    def epoch_end(self) -> None:
        self.run["epoch_ends"].append(time.perf_counter())

    def _start_sampler(self) -> None:
        import torch

        if self._sampler is not None:
            return
        try:
            torch.cuda.utilization()
        except Exception:  # no NVML (pynvml) on this machine: no utilisation figure
            return
        self._sampling = True

        def sample(into: list[float]) -> None:
            while self._sampling:
                into.append(float(torch.cuda.utilization()))
                time.sleep(0.1)

        self._sampler = threading.Thread(target=sample, args=(self.run["gpu_util"],),
                                         daemon=True)
        self._sampler.start()

    def _stop_sampler(self) -> None:
        self._sampling = False
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None

    def report(self) -> dict[str, Any]:
        import torch

        self._stop_sampler()
        info: dict[str, Any] = {"runs": self.runs, "device_name": None,
                                "peak_memory_bytes": None}
        if self.cuda:
            info["device_name"] = torch.cuda.get_device_name()
            info["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
        return info


def epoch_figures(run: dict[str, Any] | None, n_train: int, batch_size: int) -> dict[str, Any]:
    """images/s and the epoch times from a probe's record of one run."""
    if not run or len(run.get("epoch_ends", [])) < 2:
        return {"images_per_s": None, "epoch_s": None, "first_epoch_s": None}
    ends = run["epoch_ends"]
    intervals = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    epoch_s = statistics.median(intervals)
    syncs = run.get("syncs") or []
    util = run.get("gpu_util") or []
    steps = -(-n_train // batch_size)
    return {
        "images_per_s": round(n_train / epoch_s, 1), "epoch_s": round(epoch_s, 4),
        "epoch_s_all": [round(x, 4) for x in intervals],
        "first_epoch_s": round(ends[0] - run["train_start"], 3),
        "steps_per_epoch": steps,
        "syncs_per_epoch": max(syncs) if syncs else None,
        "gpu_util_pct": round(statistics.mean(util), 1) if util else None,
    }


def patch_compile(backend: str | None) -> None:
    """torch.compile with `backend` (the CPU dry run: aot_eager) for what this process compiles."""
    if not backend:
        return
    import functools

    import torch

    torch.compile = functools.partial(torch.compile, backend=backend)  # type: ignore[assignment]


# --- child: lossbench's CLI --------------------------------------------------------------------


def child_cli(args: argparse.Namespace) -> int:
    """`python -m lossbench OVERRIDES` in this process, with the checksums and a probe, for
    each run of `--runs` in turn (a JSON list of {overrides, probe}); on a GPU, one a process.
    Exit code: the first non-zero one of the runs."""
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    use_checksums(Path(args.data))
    patch_compile(args.compile_backend)
    from lossbench.module import LossbenchModule

    probes = [EpochProbe()]  # the current run's probe is the last
    original_end = LossbenchModule.on_train_epoch_end
    original_start = LossbenchModule.on_train_epoch_start
    original_train_start = LossbenchModule.on_train_start

    def on_train_start(self: Any) -> None:
        original_train_start(self)
        probes[-1].start()

    def on_train_epoch_start(self: Any) -> None:
        original_start(self)
        probes[-1].epoch_start()

    def on_train_epoch_end(self: Any) -> None:
        probes[-1].before_epoch_end(self.current_epoch == self.trainer.max_epochs - 1)
        original_end(self)  # reads the epoch's figures: one host sync
        probes[-1].epoch_end()

    LossbenchModule.on_train_start = on_train_start  # type: ignore[method-assign]
    LossbenchModule.on_train_epoch_start = on_train_epoch_start  # type: ignore[method-assign]
    LossbenchModule.on_train_epoch_end = on_train_epoch_end  # type: ignore[method-assign]
    first_bad = 0
    for run in json.loads(args.runs):
        probes.append(EpochProbe())
        sys.argv = ["lossbench", *run["overrides"]]
        code: Any = 0
        try:
            runpy.run_module("lossbench", run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code
        except Exception as err:  # the CLI itself broke: record it, go on with the next run
            print(f"gpu_check: lossbench's CLI raised {type(err).__name__}: {err}", flush=True)
            code = 1
        finally:
            Path(run["probe"]).write_text(json.dumps(probes[-1].report()))
            GlobalHydra.instance().clear()  # the next run's hydra.main initialises it again
        code = code if isinstance(code, int) else (0 if code is None else 1)
        first_bad = first_bad or code
    return first_bad


# --- child: the plain PyTorch loop -------------------------------------------------------------


def child_plain(args: argparse.Namespace) -> int:
    """The plain loop for each variant in settings; a JSON of figures per variant."""
    import torch

    settings = json.loads(args.settings)
    use_checksums(Path(settings["data"]))
    patch_compile(settings.get("compile_backend"))
    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    device = torch.device("cuda" if settings["device"] == "gpu" else "cpu")
    settings.update(lossbench_settings(settings))
    out: dict[str, Any] = {"device_name": torch.cuda.get_device_name() if device.type == "cuda"
                           else platform.processor() or "cpu", "variants": {}}
    for variant in settings["variants"]:
        out["variants"][variant] = plain_run(settings, variant, device)
        Path(args.out).write_text(json.dumps(out))
    return 0


def lossbench_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The model's arguments and the optimizer a lossbench run of this check gets, from
    lossbench's composed config (so the plain loop follows its defaults)."""
    from lossbench.config import compose_config
    from lossbench.environment import to_plain

    config = to_plain(compose_config(["task=cifar10", f"model={settings['model']}",
                                      *settings["model_overrides"]]))
    optimizer, model = config["optimizer"], config["model"]
    if optimizer.get("name") != "adam" or optimizer.get("weight_decay"):
        raise SystemExit(f"the plain loop is Adam without weight decay; lossbench's: {optimizer}")
    scheduler = (config.get("scheduler") or {}).get("name", "none")
    if scheduler != "none":
        raise SystemExit(f"the plain loop has a constant lr; lossbench's scheduler: {scheduler}")
    accepted = {"cnn": ("width", "dropout"), "resnet18": ("weights",)}[settings["model"]]
    return {"lr": float(optimizer["lr"]),
            "model_kwargs": {k: v for k, v in model.items() if k in accepted}}


def load_splits(settings: dict[str, Any]) -> dict[str, Any]:
    """The written CIFAR files through torchvision, as uint8 N x C x H x W tensors and labels;
    the validation images carved from the training set by the seed."""
    import numpy as np
    import torch
    import torchvision.datasets as tvd

    train = tvd.CIFAR10(settings["data"], train=True, download=False)
    test = tvd.CIFAR10(settings["data"], train=False, download=False)
    x = torch.from_numpy(np.ascontiguousarray(train.data.transpose(0, 3, 1, 2)))
    y = torch.tensor(train.targets)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(settings["seed"]))
    val, rest = order[: settings["val_size"]], order[settings["val_size"] :]
    x_test = torch.from_numpy(np.ascontiguousarray(test.data.transpose(0, 3, 1, 2)))
    scaled = x[rest].double() / 255.0
    return {
        "x_train": x[rest], "y_train": y[rest], "x_val": x[val], "y_val": y[val],
        "x_test": x_test, "y_test": torch.tensor(test.targets),
        "mean": scaled.mean(dim=(0, 2, 3)).float(), "std": scaled.std(dim=(0, 2, 3)).float(),
    }


def plain_run(settings: dict[str, Any], variant: str, device: Any) -> dict[str, Any]:
    """Train as lossbench does, by hand: the same model, optimizer, batches and epoch end."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from lossbench.vision_models import build_vision_model

    splits = {k: v.to(device) for k, v in load_splits(settings).items()}
    mean, std = splits["mean"].view(1, -1, 1, 1) * 255.0, splits["std"].view(1, -1, 1, 1) * 255.0

    class Normalised(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x.float() - self.mean) / self.std)

    torch.manual_seed(settings["seed"])
    model: nn.Module = Normalised(build_vision_model(
        settings["model"], 3, 10, **settings["model_kwargs"])).to(device)
    if variant.endswith("compile"):
        model = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    bf16 = variant.startswith("bf16")
    x_train, y_train = splits["x_train"], splits["y_train"]
    n, batch_size = len(x_train), settings["batch_size"]

    @torch.no_grad()
    def evaluate(split: str) -> list[torch.Tensor]:
        model.eval()
        x, y = splits[f"x_{split}"], splits[f"y_{split}"]
        out = torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)]).float()
        model.train()
        return [(out.argmax(1) == y).float().mean(), F.cross_entropy(out, y)]

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    generator = torch.Generator().manual_seed(settings["seed"])
    best: dict[str, Any] = {"acc": None, "state": None}
    start, ends = time.perf_counter(), []
    for _ in range(settings["epochs"]):
        order = torch.randperm(n, generator=generator).to(device, non_blocking=True)
        total = None
        for i in range(0, n, batch_size):
            batch = order[i : i + batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total = loss.detach() if total is None else total + loss.detach()
        finite = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).isfinite().all()
        values = torch.stack([total / -(-n // batch_size), *evaluate("val"),
                              finite.float()]).tolist()  # one host sync an epoch
        if best["acc"] is None or values[1] > best["acc"]:
            best = {"acc": values[1], "state": {k: v.detach().clone()
                                               for k, v in model.state_dict().items()}}
        ends.append(time.perf_counter())
    last = [float(v) for v in torch.stack(evaluate("test")).tolist()]
    model.load_state_dict(best["state"])
    best_test = [float(v) for v in torch.stack(evaluate("test")).tolist()]
    figures = epoch_figures({"train_start": start, "epoch_ends": ends}, n, batch_size)
    figures.pop("syncs_per_epoch")
    figures.pop("gpu_util_pct")
    return {
        **figures, "precision": "bf16-mixed" if bf16 else "32-true",
        "compile": variant.endswith("compile"), "train_loss_last": values[0],
        "test": {"last": {"acc": last[0], "nll": last[1]},
                 "best": {"acc": best_test[0], "nll": best_test[1]}},
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda"
        else None,
    }


# --- child: stacked tabular runs against one after another ------------------------------------


def child_tabular(args: argparse.Namespace) -> int:
    """run_seeds at K members vs K runs of run() in turn, each K of settings; JSON figures."""
    import torch

    from lossbench.config import compose_config
    from lossbench.multiseed import run_seeds
    from lossbench.run import run

    settings = json.loads(args.settings)
    scratch = Path(settings["scratch"])
    base = [f"task={settings['task']}", "logger=none", "trainer.progress_bar=false",
            f"trainer.max_epochs={settings['epochs']}", f"trainer.accelerator={settings['device']}",
            f"threads={settings['threads']}"]

    def config(where: str, seed: int = 0) -> Any:
        return compose_config([*base, f"seed={seed}", f"output_dir={scratch / where}"])

    def finite(results: list[dict[str, Any]]) -> bool:
        return all(r["status"] == "ok" and _finite_test(r) for r in results)

    # warm-up: CUDA context, cuBLAS, vmap and the data set's first parse are not a member's cost
    run(config("warm/single"))
    run_seeds(config("warm/stacked"), [0, 1])
    out: dict[str, Any] = {"task": settings["task"], "epochs": settings["epochs"],
                           "device": settings["device"], "stacked": {}, "sequential": {}}
    for k in settings["members"]:
        cfg = config(f"stacked-{k}")
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        stacked = run_seeds(cfg, list(range(k)))
        wall = time.perf_counter() - start
        out["stacked"][str(k)] = {
            "wall_s": round(wall, 3), "members_per_s": round(k / wall, 3),
            "finite": finite(stacked), "statuses": sorted({r["status"] for r in stacked}),
            "test_acc_mean": _mean_test(stacked, "acc"),
        }
        configs = [config(f"sequential-{k}/s{s}", s) for s in range(k)]
        start = time.perf_counter()
        one_by_one = [run(c) for c in configs]
        wall = time.perf_counter() - start
        out["sequential"][str(k)] = {
            "wall_s": round(wall, 3), "members_per_s": round(k / wall, 3),
            "finite": finite(one_by_one), "statuses": sorted({r["status"] for r in one_by_one}),
            "test_acc_mean": _mean_test(one_by_one, "acc"),
        }
        out["speedup"] = {m: round(out["stacked"][m]["members_per_s"]
                                   / out["sequential"][m]["members_per_s"], 3)
                          for m in out["stacked"]}
        Path(args.out).write_text(json.dumps(out))
    return 0


def _finite_test(results: dict[str, Any]) -> bool:
    """Every test metric of the run's last and best weights is a finite number (and some are)."""
    metrics = results.get("metrics") or {}
    values = [v for which in ("last", "best") for k, v in (metrics.get(which) or {}).items()
              if k.startswith("test/")]
    return bool(values) and all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _mean_test(results: list[dict[str, Any]], metric: str) -> float | None:
    values = [((r.get("metrics") or {}).get("best") or {}).get(f"test/{metric}") for r in results]
    values = [v for v in values if v is not None]
    return round(statistics.mean(values), 4) if values else None


# --- the driver --------------------------------------------------------------------------------


class Driver:
    """Runs the steps as child processes within the budget; keeps the JSON up to date."""

    def __init__(self, out: Path, work: Path, sizes: Sizes, serial: bool | None = None) -> None:
        self.out, self.work, self.sizes = out, work, sizes
        self.serial = sizes.mode == "gpu" if serial is None else serial
        self.start = time.perf_counter()
        self.lock = threading.RLock()  # the CPU dry run runs two steps at a time
        self.data = work / "data"
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.figures: dict[str, Any] = {
            "schema": SCHEMA, "mode": sizes.mode, "ok": False,
            "device": None if sizes.mode == "gpu" else f"cpu ({os.cpu_count()} cores)",
            "python": platform.python_version(), "settings": asdict(sizes) | {
                "n_train": sizes.n_train, "n_val": sizes.val_size, "n_test": sizes.per_batch},
            "cifar10": {}, "plain": {}, "ratios": {}, "tabular": {}, "steps": {},
        }

    def record(self, group: str, name: str | None, value: Any) -> None:
        """figures[group][name] = value (figures[group] = value when name is None; the device
        only when not known yet), and the JSON saved."""
        with self.lock:
            if group == "device":
                self.figures["device"] = self.figures["device"] or value
            elif name is None:
                self.figures[group] = value
            else:
                self.figures[group][name] = value
            self.save()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def save(self) -> None:
        with self.lock:
            self.figures["wall_s"] = round(self.elapsed(), 1)
            path = self.out / "gpu_check.json"
            path.with_suffix(".tmp").write_text(json.dumps(self.figures, indent=1))
            path.with_suffix(".tmp").replace(path)

    def child(self, name: str, argv: list[str], cap: float) -> tuple[bool, str]:
        """Run `gpu_check.py <argv>` as a process within the cap and the budget left."""
        left = self.sizes.budget_s - self.elapsed()
        if left < min(cap, 30 if self.sizes.mode == "gpu" else 10):
            self.record("steps", name, {"status": "skipped", "reason": "time budget spent"})
            return False, "skipped"
        timeout = min(cap, left)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "CI": "1"}
        env.pop("HYDRA_FULL_ERROR", None)
        log = self.out / "logs" / f"{name}.log"
        started = time.perf_counter()
        with log.open("w") as handle:
            try:
                proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv],
                                      cwd=self.work, env=env, stdout=handle,
                                      stderr=subprocess.STDOUT, timeout=timeout)
                status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            except subprocess.TimeoutExpired:
                status = f"timeout after {timeout:.0f} s"
        step = {"status": status, "wall_s": round(time.perf_counter() - started, 1)}
        if status != "ok":
            step["tail"] = log.read_text(errors="replace").strip().splitlines()[-3:]
        self.record("steps", name, step)
        return status == "ok", status

    # --- steps

    def write_data(self) -> None:
        started = time.perf_counter()
        write_cifar10(self.data, self.sizes.per_batch)
        self.record("steps", "data", {"status": "ok",
                                      "wall_s": round(time.perf_counter() - started, 1)})

    def lossbench_cifar(self, step: str, runs: list[tuple[str, str, str, bool]]) -> None:
        """CIFAR-10 runs (name, precision, data path, compile) through lossbench's CLI, in
        one child process."""
        s = self.sizes
        specs = []
        for name, precision, data_path, compile_ in runs:
            overrides = [
                "task=cifar10", f"model={s.model}", *s.model_overrides,
                f"task.data_dir={self.data}", "task.download=false",
                f"task.val_size={s.val_size}", f"task.data_path={data_path}", "logger=none",
                "trainer=gpu", f"trainer.precision={precision}",
                f"trainer.max_epochs={s.epochs}", "trainer.progress_bar=false",
                f"batch_size={s.batch_size}", "seed=0", f"compile={str(compile_).lower()}",
                f"threads={s.threads}", f"output_dir={self.work / 'runs' / name}",
            ]
            if s.mode == "cpu":
                overrides.append("trainer.accelerator=cpu")
            specs.append({"overrides": overrides,
                          "probe": str(self.work / f"probe-{name}.json")})
        argv = ["cli", "--data", str(self.data), "--runs", json.dumps(specs)]
        compiles = any(run[3] for run in runs)
        if compiles and s.compile_backend:
            argv += ["--compile-backend", s.compile_backend]
        cap = sum(s.caps.get("cli_compile" if run[3] else "cli", s.caps["cli"]) for run in runs)
        _, status = self.child(step, argv, cap)
        for name, precision, data_path, compile_ in runs:
            self.cifar_entry(name, precision, data_path, compile_, status)

    def cifar_entry(
        self, name: str, precision: str, data_path: str, compile_: bool, status: str,
    ) -> None:
        """A CIFAR-10 run's figures, from its results.json and its probe."""
        s = self.sizes
        entry: dict[str, Any] = {"precision": precision, "data_path": data_path,
                                 "compile": compile_, "status": status, "finite": False}
        results_path = self.work / "runs" / name / "results.json"
        if results_path.is_file():
            results = json.loads(results_path.read_text())
            kept = self.out / "runs" / name
            kept.mkdir(parents=True, exist_ok=True)
            shutil.copy2(results_path, kept / "results.json")
            best = (results.get("metrics") or {}).get("best") or {}
            entry.update(
                status=results["status"], reason=results.get("reason"),
                finite=results["status"] == "ok" and _finite_test(results),
                wall_s=results.get("wall_s"), epochs=results.get("epochs"),
                data_path=results.get("data_path"), device=results.get("device"),
                test={k[len("test/"):]: v for k, v in best.items() if k.startswith("test/")},
                val_acc_by_epoch=[round(r.get("val/acc", float("nan")), 4)
                                  for r in results.get("history") or []],
            )
        probe = self.work / f"probe-{name}.json"
        if probe.is_file():
            report = json.loads(probe.read_text())
            entry.update(epoch_figures(report["runs"][0] if report["runs"] else None,
                                       s.n_train, s.batch_size))
            peak = report.get("peak_memory_bytes")
            entry["peak_memory_mib"] = round(peak / 2**20, 1) if peak is not None else None
            self.record("device", None, report.get("device_name"))
        self.record("cifar10", name, entry)

    def plain_step(self, name: str, variants: list[str]) -> tuple[list[str], Callable[[], None]]:
        """The plain loop's child argv for `variants`, and what reads its figures after."""
        s = self.sizes
        out = self.work / f"plain-{name}.json"
        settings = {
            "data": str(self.data), "device": s.mode, "seed": 0, "val_size": s.val_size,
            "batch_size": s.batch_size, "epochs": s.epochs, "model": s.model,
            "model_overrides": s.model_overrides, "threads": s.threads,
            "compile_backend": s.compile_backend, "variants": variants,
        }

        def collect() -> None:
            found = json.loads(out.read_text()) if out.is_file() else {"variants": {}}
            for variant in variants:
                entry = found["variants"].get(variant)
                if entry is None:
                    self.record("plain", variant, {"status": "missing", "finite": False})
                    continue
                peak = entry.pop("peak_memory_bytes")
                entry["peak_memory_mib"] = round(peak / 2**20, 1) if peak is not None else None
                numbers = [v for which in entry["test"].values() for v in which.values()]
                entry["finite"] = all(math.isfinite(v) for v in numbers)
                entry["status"] = "ok"
                self.record("plain", variant, entry)
            if s.mode == "gpu":
                self.record("device", None, found.get("device_name"))

        return ["plain", "--settings", json.dumps(settings), "--out", str(out)], collect

    def tabular_step(self) -> tuple[list[str], Callable[[], None]]:
        """The tabular child's argv, and what reads its figures after."""
        s = self.sizes
        out = self.work / "tabular.json"
        settings = {"task": "multiclass", "epochs": s.tabular_epochs, "members": s.members,
                    "device": s.mode, "threads": 1, "scratch": str(self.work / "tabular")}

        def collect() -> None:
            self.record("tabular", None, json.loads(out.read_text()) if out.is_file() else {})

        return ["tabular", "--settings", json.dumps(settings), "--out", str(out)], collect

    def plain(self, name: str, variants: list[str]) -> None:
        argv, collect = self.plain_step(name, variants)
        cap = self.sizes.caps.get(f"plain_{name}", self.sizes.caps["plain"])
        self.child(f"plain-{name}", argv, cap)
        collect()

    def tabular(self) -> None:
        argv, collect = self.tabular_step()
        self.child("tabular", argv, self.sizes.caps["tabular"])
        collect()

    def plain_and_tabular(self) -> None:
        """The dry run's plain loops and tabular runs in one child process (`group`)."""
        plain_argv, plain_collect = self.plain_step("eager", ["fp32", "bf16", "bf16_compile"])
        tabular_argv, tabular_collect = self.tabular_step()
        self.child("plain+tabular", ["group", "--steps", json.dumps([plain_argv, tabular_argv])],
                   self.sizes.caps["plain"] + self.sizes.caps["tabular"])
        plain_collect()
        tabular_collect()

    def ratios(self) -> None:
        """lossbench's epoch time over the plain loop's, per precision; streamed over on-device."""
        runs, plain, ratios = self.figures["cifar10"], self.figures["plain"], {}

        def epoch(entry: dict[str, Any] | None) -> float | None:
            return (entry or {}).get("epoch_s")

        for name in ("fp32", "bf16", "bf16_compile"):
            a, b = epoch(runs.get(name)), epoch(plain.get(name))
            ratios[f"{name}_vs_plain"] = round(a / b, 3) if a and b else None
        a, b = epoch(runs.get("bf16_stream")), epoch(runs.get("bf16"))
        ratios["stream_vs_device"] = round(a / b, 3) if a and b else None
        self.figures["ratios"] = ratios

    def verdict(self) -> bool:
        """Every path ran and ended with finite test metrics (and a figure)."""
        paths: dict[str, bool] = {}
        for group in ("cifar10", "plain"):
            for name, entry in self.figures[group].items():
                paths[f"{group}.{name}"] = bool(entry.get("finite")) and bool(
                    entry.get("images_per_s"))
        tab = self.figures["tabular"]
        for side in ("stacked", "sequential"):
            for k in self.sizes.members:
                entry = (tab.get(side) or {}).get(str(k)) or {}
                paths[f"tabular.{side}.{k}"] = bool(entry.get("finite")) and bool(
                    entry.get("members_per_s"))
        self.figures["paths"] = paths
        self.figures["ok"] = bool(paths) and all(paths.values())
        return self.figures["ok"]

    def main(self) -> int:
        self.write_data()
        bf16 = ("bf16", "bf16-mixed", "device", False)
        fp32 = ("fp32", "32-true", "device", False)
        stream = ("bf16_stream", "bf16-mixed", "stream", False)
        compiled = ("bf16_compile", "bf16-mixed", "device", True)
        if self.serial:  # on a GPU: one process a run, one at a time, by importance
            for step in (
                lambda: self.plain("eager", ["fp32", "bf16"]),
                lambda: self.lossbench_cifar("lossbench-bf16", [bf16]),
                lambda: self.lossbench_cifar("lossbench-fp32", [fp32]),
                lambda: self.lossbench_cifar("lossbench-bf16_compile", [compiled]),
                lambda: self.lossbench_cifar("lossbench-bf16_stream", [stream]),
                self.tabular,
                lambda: self.plain("compile", ["bf16_compile"]),
            ):
                step()
        else:  # the dry run: process starts are most of its time, so three processes
            steps: list[Callable[[], None]] = [
                lambda: self.lossbench_cifar("lossbench", [bf16, fp32, stream, compiled]),
                self.plain_and_tabular,
            ]
            with ThreadPoolExecutor(max_workers=2) as pool:
                for done in [pool.submit(step) for step in steps]:
                    done.result()
        self.ratios()
        ok = self.verdict()
        self.save()
        print_summary(self.figures)
        return 0 if ok else 1


def print_summary(f: dict[str, Any]) -> None:
    print(f"gpu_check ({f['mode']}, {f['device']}): {'ok' if f['ok'] else 'NOT ok'}, "
          f"{f['wall_s']} s")
    for group in ("cifar10", "plain"):
        for name, e in f[group].items():
            print(f"  {group:8} {name:13} {e.get('images_per_s')} img/s  epoch "
                  f"{e.get('epoch_s')} s  peak {e.get('peak_memory_mib')} MiB  syncs/epoch "
                  f"{e.get('syncs_per_epoch')}  test {e.get('test')}  {e.get('status')}")
    print(f"  ratios   {f['ratios']}")
    for side in ("stacked", "sequential"):
        figures = {k: v.get("members_per_s") for k, v in (f["tabular"].get(side) or {}).items()}
        print(f"  tabular  {side:10} members/s {figures}")
    bad = {k: v for k, v in f["steps"].items() if v.get("status") != "ok"}
    if bad:
        print(f"  steps not ok: {bad}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    drive = sub.add_parser("drive", help="the whole check; figures into OUT/gpu_check.json")
    drive.add_argument("out", type=Path)
    drive.add_argument("--work", type=Path, required=True, help="scratch folder (data, runs)")
    drive.add_argument("--cpu", action="store_true", help="tiny dry run on CPU")
    drive.add_argument("--budget-s", type=float, default=None, help="time budget, seconds")
    drive.add_argument("--serial", action=argparse.BooleanOptionalAction, default=None,
                       help="one process a run, one step at a time (default on a GPU only)")
    cli = sub.add_parser("cli", help="(child) python -m lossbench OVERRIDES, probed")
    cli.add_argument("--data", required=True)
    cli.add_argument("--runs", required=True, help="JSON list of {overrides, probe}")
    cli.add_argument("--compile-backend", default=None)
    for name in ("plain", "tabular"):
        child = sub.add_parser(name, help=f"(child) the {name} measurements")
        child.add_argument("--settings", required=True)
        child.add_argument("--out", required=True)
    group = sub.add_parser("group", help="(child) several child commands in this process")
    group.add_argument("--steps", required=True, help="JSON list of argv lists")
    args = parser.parse_args(argv)
    if args.command == "group":  # the first failure's exit code; every step runs
        codes = [main(step) for step in json.loads(args.steps)]
        return next((c for c in codes if c), 0)
    if args.command == "cli":
        return child_cli(args)
    if args.command == "plain":
        return child_plain(args)
    if args.command == "tabular":
        return child_tabular(args)
    sizes = sizes_for(args.cpu)
    if args.budget_s:
        sizes.budget_s = args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    return Driver(args.out.resolve(), args.work.resolve(), sizes, args.serial).main()


if __name__ == "__main__":
    sys.exit(main())
