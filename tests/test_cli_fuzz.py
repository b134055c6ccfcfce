"""Fuzz the CLI (issue 17, item 9): overrides drawn over the whole config space end either in
exit 0 with a sound results.json, or in exit 2 with one `lossbench: error:` line; never a
traceback, never a half-written results folder.

The draws: every task x every loss, loss hyperparameters in and out of the registry's ranges,
optimizer, model, batch, seeds, epochs, perturbations, divergence rules and retries, wrong types
(strings for numbers, lists for scalars), unknown keys, misspelt groups and bad Hydra syntax.
The generator is seeded, so CI sees the same draws every run; LOSSBENCH_FUZZ_SEED and
LOSSBENCH_FUZZ_DRAWS explore others (`pytest tests/test_cli_fuzz.py` with them set).

A process per draw costs ~1.5 s, so the draws run in driver processes (this file run as a
script; DRIVERS of them, one per core, each taking every DRIVERS-th draw): each draw through
the real entry point, `lossbench.__main__.main` with sys.argv set, its stdout and stderr
captured and Hydra's global state reset between draws, one JSON line per draw. A handful also
run as real `python -m lossbench` processes, side by side with the drivers, to show that the
driver agrees with them. Bugs found and not yet fixed are in KNOWN_BUGS (strict xfails).
"""

from __future__ import annotations

import json
import math
import os
import random
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SEED = int(os.environ.get("LOSSBENCH_FUZZ_SEED", "17"))
DRAWS = int(os.environ.get("LOSSBENCH_FUZZ_DRAWS", "320"))
IN_SUBPROCESS = 10  # draws also run as real processes, to check the driver against
# Driver processes, the draws dealt between them: a composed draw is ~0.4 s of CPU (Hydra
# composes twice per call), so one process alone takes over two minutes for 300.
DRIVERS = int(os.environ.get("LOSSBENCH_FUZZ_DRIVERS", "2"))
# The fast test defaults a draw gets unless it sets the key itself.
CHEAP = {"logger": "none", "trainer.max_epochs": "1", "threads": "1"}
STATUSES_OK = ("ok", "diverged", "skipped")
# Bundled sets too big for a cheap epoch (thousands of rows): drawn only where they fail early.
LARGE_SETS = ("fair", "fair_affair", "randhie", "randhie_any_visit")
# Classes per bundled set, for per-class lists (ce's weight, focal's alpha).
CLASSES = {"digits": 10, "wine": 3, "iris": 3, "penguins": 3, "anes96_pid": 7, "modechoice": 4}
# The sources that read files: given a small table and image folder written here; openml only
# offline, from an empty cache (no network here).
FILE_SOURCES = ("table", "image_folder", "openml")


# ------------------------------------------------------------------------------ the space


@dataclass
class Draw:
    """One command line and what it must end in: ok (exit 0), error (exit 2) or either."""

    argv: list[str]
    expect: str = "ok"
    why: list[str] = field(default_factory=list)
    # results.json files an exit-0 run writes (seeds=N writes N; None: one or more)
    results: int | None = 1
    known: str | None = None  # the KNOWN_BUGS entry this draw shows
    # A bad part checked before a run that does not fit is skipped (skip_unfit=true): Hydra's
    # own checks, validation.py's, seeds=. Other parts of a skipped run are never looked at.
    early: bool = False

    def bad(self, why: str, early: bool = False) -> None:
        self.expect, self.why = "error", [*self.why, why]
        self.early = self.early or early

    def unsure(self, why: str) -> None:
        if self.expect == "ok":
            self.expect = "either"
        self.why.append(why)

    def command(self) -> str:
        return "python -m lossbench " + " ".join(shlex.quote(a) for a in self.argv)


def fmt(value: Any) -> str:
    """A value as a Hydra override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(fmt(v) for v in value) + "]"
    return str(value)


def yaml_of(group: str, option: str) -> dict[str, Any]:
    from importlib import resources

    import yaml

    path = resources.files("lossbench.conf").joinpath(group, f"{option}.yaml")
    return yaml.safe_load(path.read_text()) or {}


def composed_tasks(tasks: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each task option's keys and default model, as Hydra composes them (a task's yaml may
    take keys from a shared base)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from lossbench.sweep import register_resolvers

    register_resolvers()
    keys, models = {}, {}
    with initialize_config_module("lossbench.conf", version_base="1.3"):
        for task in tasks:
            cfg = compose("config", overrides=[f"task={task}"])
            keys[task] = OmegaConf.to_container(cfg.task, resolve=False)
            models[task] = str(cfg.model.get("name", "mlp"))
    return keys, models


class Space:
    """The config space as the tree declares it today: conf/ groups, the loss registry's
    Params, validation.RANGES and the perturbations' parameters."""

    def __init__(self, data_root: Path) -> None:
        from lossbench.__main__ import group_options
        from lossbench.losses.registry import _REGISTRY, REDUCTION, Param
        from lossbench.validation import RANGES

        self.Param, self.registry, self.reduction = Param, _REGISTRY, REDUCTION
        self.ranges = RANGES
        self.options = {g: group_options(g) for g in (
            "task", "loss", "model", "optimizer", "perturb", "logger", "trainer")}
        self.tasks, self.models = composed_tasks(self.options["task"])
        self.losses = {o: yaml_of("loss", o) for o in self.options["loss"]}
        self.optimizers = {o: yaml_of("optimizer", o) for o in self.options["optimizer"]}
        self.image_tasks = [t for t, y in self.tasks.items() if y.get("source") == "torchvision"]
        self.offline_tasks = [t for t, y in self.tasks.items() if y.get("source") == "openml"]
        # The tasks a draw trains on: bundled sets, the table and the image folder.
        self.tabular_tasks = [
            t for t in self.tasks if t not in self.image_tasks + self.offline_tasks]
        self.missing_dir = data_root / "no_such_folder"
        self.table = data_root / "table.csv"
        write_table(self.table)
        self.images = data_root / "images"
        write_images(self.images)
        try:
            from lossbench.data.bundled import CATALOGUE

            self.bundled = {name: s.kind for name, s in CATALOGUE.items() if not s.images}
        except ImportError:  # the bundled catalogue is someone's work in progress
            self.bundled = {}
        try:
            from lossbench.models import ACTIVATIONS

            self.activations = tuple(ACTIVATIONS)
        except ImportError:
            self.activations = ("relu",)
        P = Param
        self.perturb_params = {
            "outliers": {"fraction": P(0.1, low=0.0, high=1.0, high_open=True),
                         "magnitude": P(5.0, low=0.0, low_open=True)},
            "label_noise": {"rate": P(0.2, low=0.0, high=1.0, high_open=True),
                            "kind": P("symmetric", kind="str",
                                      choices=("symmetric", "pairflip"))},
            "imbalance": {"positive_fraction": P(0.2, low=0.0, high=1.0, low_open=True)},
        }
        self.perturb_fits = {"none": None, "outliers": ("regression", "ranking"),
                             "label_noise": ("binary", "multiclass", "embedding"),
                             "imbalance": ("binary",)}

    # -- what fits what

    def kind_of(self, task: str) -> str:
        kind = self.tasks[task].get("kind")
        if kind == "auto":
            if self.tasks[task].get("source") == "table":
                return "regression"  # the table's target y holds many distinct numbers
            return self.bundled.get(str(self.tasks[task].get("dataset")), "auto")
        return kind

    def default_model(self, task: str) -> str:
        return self.models[task]

    def loss_name(self, option: str) -> str:
        return str(self.losses[option].get("name", option))

    def spec(self, option: str, kind: str) -> Any:
        return self.registry.get(self.loss_name(option), {}).get(kind)

    def fits(self, option: str, kind: str) -> bool:
        if option == "custom" or self.loss_name(option) == "auto":
            return True
        return self.spec(option, kind) is not None

    def losses_for(self, kind: str) -> list[str]:
        return [o for o in self.losses if self.fits(o, kind)]


def write_table(path: Path) -> None:
    """A small CSV for task=table: a numeric target y, a text column and a class column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    rows = ["a,b,colour,label,y"]
    for _ in range(120):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        colour = rng.choice(["red", "green", "blue"])
        label = rng.choice(["x", "y", "z"])
        rows.append(f"{a:.4f},{b:.4f},{colour},{label},{2 * a - b + rng.gauss(0, 0.1):.4f}")
    path.write_text("\n".join(rows) + "\n")


def write_images(root: Path) -> None:
    """An image folder for task=image_folder: 3 classes of 10 tiny PNGs, one colour each."""
    from PIL import Image

    rng = random.Random(0)
    for c, colour in enumerate(("red", "green", "blue")):
        (root / colour).mkdir(parents=True, exist_ok=True)
        for k in range(10):
            pixels = [tuple(min(255, max(0, 60 + 120 * (i == c) + rng.randint(-40, 40)))
                            for i in range(3)) for _ in range(8 * 8)]
            image = Image.new("RGB", (8, 8))
            image.putdata(pixels)
            image.save(root / colour / f"{k}.png")


# ------------------------------------------------------------------------------ values


def good_value(p: Any, rng: random.Random, n: int = 3) -> Any:
    """A value the Param accepts: inside its range, sometimes exactly on a closed end."""
    if p.choices is not None:
        return rng.choice(p.choices)
    if p.kind == "bool":
        return rng.random() < 0.5
    if p.kind == "floats":
        low = 0.0 if p.low is None else p.low
        return [round(low + rng.uniform(0.1, 2.0), 3) for _ in range(n)]
    if p.kind == "str":
        return p.default
    if p.also and rng.random() < 0.15:
        return p.also[0]
    if p.allow_none and rng.random() < 0.1:
        return None
    low = p.low if p.low is not None else (p.high - 5 if p.high is not None else -5.0)
    high = p.high if p.high is not None else low + 10 ** rng.uniform(-2, 1.3)
    if p.kind == "int":
        lo = int(math.ceil(low)) + int(p.low_open and low == int(low))
        hi = max(lo, min(int(math.floor(high)) - int(p.high_open), lo + 8))
        return rng.randint(lo, hi)
    edge = rng.random()
    if edge < 0.1 and not p.low_open and p.low is not None:
        return float(low)
    if edge < 0.2 and not p.high_open and p.high is not None:
        return float(high)
    return round(rng.uniform(low, high), 4) or (low + high) / 2 or 0.5


def bad_value(p: Any, rng: random.Random) -> Any:
    """A value the Param refuses: past an end, on an open end, not finite, or of a wrong type
    (a string for a number, a list for a scalar, a bool for a number)."""
    out: list[Any] = []
    if p.choices is not None:
        out += ["bogus", "'mean '"] if p.kind == "str" else [max(p.choices) + 1, "one"]
    elif p.kind == "bool":
        out += [2, "maybe", [True]]
    elif p.kind == "floats":
        out += ["abc", "{a:1}", "[a,b]", True]
        if p.low is not None:
            out.append([p.low - 1.0, 1.0])
        out.append([1.0, float("nan")])
    elif p.kind != "str":
        if p.low is not None:
            out += [p.low - 1, p.low - 1e-3, -1e9] if p.low not in p.also else [p.low - 0.5]
            if p.low_open:
                out.append(p.low)
        if p.high is not None:
            out += [p.high + 1, p.high + 1e-3, 1e9]
            if p.high_open:
                out.append(p.high)
        out += [float("nan"), float("inf"), "fast", "'0.5'", "[1,2]", "{a:1}", True]
        if p.kind == "int":
            out += [1.5, "1e400"]
    if not p.allow_none and p.kind != "str":
        out.append(None)
    out = [v for v in out if not (isinstance(v, float) and v in p.also)]
    return rng.choice(out) if out else "{a:1}"


# ------------------------------------------------------------------------------ drawing


def optimizer_overrides(space: Space, draw: Draw, rng: random.Random, bad: float) -> None:
    name = rng.choice(space.options["optimizer"])
    keys = space.optimizers[name]
    draw.argv.append(f"optimizer={name}")
    given = {k: space.ranges[f"optimizer.{k}"] for k in ("lr", "weight_decay", "momentum", "eps")
             if f"optimizer.{k}" in space.ranges}
    adam_like = "adam" in name
    for key, param in given.items():
        if rng.random() > 0.45:
            continue
        if key == "momentum" and not adam_like or key == "eps" and adam_like or key in keys:
            prefix = "" if key in keys else "+"
            if rng.random() < bad:
                draw.argv.append(f"{prefix}optimizer.{key}={fmt(bad_value(param, rng))}")
                draw.bad(f"optimizer.{key} out of range", early=True)
            else:
                value = good_value(param, rng)
                if key == "lr":  # a sane learning rate: a blow-up is tested elsewhere
                    value = 10 ** rng.uniform(-4, -1.5)
                elif key == "weight_decay":
                    value = rng.choice([0.0, 1e-4, 1e-3, 0.01, 0.1])
                draw.argv.append(f"{prefix}optimizer.{key}={fmt(value)}")
    if adam_like and rng.random() < 0.25:
        beta = space.ranges.get("optimizer.betas.0")
        if beta is not None and rng.random() < bad:
            betas = rng.choice([[0.9, 1.0], [1.5, 0.99], [-0.1, 0.9], [0.9], 0.9, "[a,b]"])
            draw.argv.append(f"+optimizer.betas={fmt(betas)}")
            draw.bad("optimizer.betas out of range", early=True)
        else:
            draw.argv.append(f"+optimizer.betas={fmt([rng.choice([0.8, 0.9, 0.0]), 0.999])}")
    if not adam_like and rng.random() < bad / 2:  # a key this optimizer's class does not take
        draw.argv.append("+optimizer.betas=[0.9,0.999]")
        draw.bad(f"{name} takes no betas")


def loss_overrides(
    space: Space, draw: Draw, rng: random.Random, option: str, kind: str, classes: int,
    bad: float,
) -> None:
    """`loss=<option>` and some of its hyperparameters, in or out of the registry's ranges."""
    draw.argv.append(f"loss={option}")
    if option == "custom":
        targets = {"regression": "torch.nn.L1Loss", "ranking": "torch.nn.MSELoss",
                   "binary": "torch.nn.BCEWithLogitsLoss",
                   "multiclass": "torch.nn.CrossEntropyLoss"}
        roll = rng.random()
        if roll < bad / 2:
            draw.argv.append(f"loss._target_={rng.choice(['no_pkg.NoLoss', 'os.path.join'])}")
            draw.bad("loss._target_ names no loss class")
        elif roll < bad:
            draw.bad("loss._target_ left at ???", early=True)
        elif kind in targets:
            draw.argv.append(f"loss._target_={targets[kind]}")
        else:  # no torch loss takes (embeddings, labels): a class registered with lossbench's
            draw.argv.append("loss._target_=lossbench.losses.embedding_losses.TripletLoss")
        return
    spec = space.spec(option, kind)
    if spec is None:
        return
    params = {"reduction": space.reduction, **spec.params}
    declared = set(space.losses[option])
    for key, param in params.items():
        if rng.random() > 0.4:
            continue
        prefix = "" if key in declared else "+"
        if rng.random() < bad:
            draw.argv.append(f"{prefix}loss.{key}={fmt(bad_value(param, rng))}")
            draw.bad(f"loss.{key} out of range")
            continue
        value = good_value(param, rng, n=classes)
        if key == "reduction" and value == "none":
            if rng.random() < bad:
                draw.bad("loss.reduction=none leaves a loss per sample", early=True)
            else:
                value = "mean"
        if param.kind == "floats" or param.alternative is not None and rng.random() < 0.5:
            value = good_value(param.alternative or param, rng, n=classes)
            if rng.random() < bad:
                value = value[:-1] or [1.0, 1.0, 1.0]
                draw.bad(f"loss.{key} has not one entry per class ({classes})")
        draw.argv.append(f"{prefix}loss.{key}={fmt(value)}")
    if rng.random() < bad / 3:
        draw.argv.append("+loss.nope=1")
        if spec.open_params:
            draw.unsure("a user-style class given an argument it lacks")
        else:
            draw.bad("loss has no hyperparameter nope")


def task_overrides(
    space: Space, draw: Draw, rng: random.Random, task: str, kind: str, bad: float,
) -> int:
    """`task=<task>` and its keys; the number of classes of its data set."""
    yaml_task = space.tasks[task]
    draw.argv.append(f"task={task}")
    dataset = yaml_task.get("dataset")
    source = yaml_task.get("source")
    if source == "table":
        draw.argv += [f"task.path={space.table}", "task.target=y"]
        if rng.random() < bad / 2:
            draw.argv[-2] = f"task.path={space.missing_dir / 'none.csv'}"
            draw.bad("task.path names no file")
        elif rng.random() < bad / 2:
            draw.argv[-1] = f"task.target={rng.choice(['no_column', 'colour', 'a'])}"
            if draw.argv[-1] == "task.target=no_column":
                draw.bad("task.target names no column")
            else:
                draw.unsure("another target column")
        elif rng.random() < bad / 2:
            draw.argv.append(f"task.drop={fmt(rng.choice([['a'], ['nope'], 'a']))}")
            draw.unsure("task.drop")
    elif source == "image_folder":
        draw.argv += [f"task.path={space.images}", "task.image_size=8"]
        if rng.random() < bad / 2:
            draw.argv[-2] = f"task.path={rng.choice([space.missing_dir, space.table])}"
            draw.bad("task.path names no image folder")
        elif rng.random() < bad / 2:
            draw.argv[-1] = f"task.image_size={fmt(rng.choice([0, 3, 2000, 'big', [8], 8.5]))}"
            draw.bad("task.image_size out of range")
        elif rng.random() < 0.2:
            channels = rng.choice(["gray", "rgb", "auto"] + ["cmyk"] * (rng.random() < bad))
            draw.argv.append(f"task.channels={channels}")
            if channels == "cmyk":
                draw.bad("task.channels=cmyk")
        return 3
    if "dataset" in yaml_task and space.bundled and rng.random() < 0.2:
        if rng.random() < bad:
            dataset = rng.choice(["digitz", "no_such_set", "mnist"])
            draw.bad(f"dataset {dataset} is no bundled set")
        else:
            fitting = [n for n, k in space.bundled.items() if n not in LARGE_SETS and (
                k == kind or kind == "ranking" and k == "regression"
                or kind == "embedding" and k in ("binary", "multiclass"))]
            dataset = rng.choice(fitting) if fitting else dataset
        draw.argv.append(f"task.dataset={dataset}")
    fraction = space.ranges.get("task.val_fraction")
    for key in ("val_fraction", "test_fraction", "input_scale"):
        param = space.ranges.get(f"task.{key}")
        if key not in yaml_task or param is None or rng.random() > 0.2:
            continue
        if rng.random() < bad:
            draw.argv.append(f"task.{key}={fmt(bad_value(param, rng))}")
            draw.bad(f"task.{key} out of range", early=True)
        else:
            value = round(rng.uniform(0.05, 0.4), 3) if param is fraction or "fraction" in key \
                else round(10 ** rng.uniform(-2, 1), 3)
            draw.argv.append(f"task.{key}={fmt(value)}")
    if kind == "embedding":
        m = yaml_task.get("m_per_class", 4)
        if "m_per_class" in yaml_task and rng.random() < 0.3:
            if rng.random() < bad:
                draw.argv.append(f"task.m_per_class={fmt(rng.choice([0, -2, 2.5, 'four']))}")
                draw.bad("task.m_per_class out of range")
            else:
                m = rng.choice([1, 2, 4, 8])
                draw.argv.append(f"task.m_per_class={m}")
        if "split" in yaml_task and rng.random() < 0.3:
            split = rng.choice(["samples", "class_disjoint"] + ["by_class"] * (rng.random() < bad))
            draw.argv.append(f"task.split={split}")
            if split == "by_class":
                draw.bad("task.split names no split")
        draw.argv.append(f"batch_size={m * rng.randint(2, 16)}")
    if "data_path" in yaml_task and rng.random() < 0.1:
        choice = rng.choice(["auto", "device"] + ["gpu"] * (rng.random() < bad))
        draw.argv.append(f"task.data_path={choice}")
        if choice == "gpu":
            draw.bad("task.data_path=gpu")
    return CLASSES.get(str(dataset), 3 if kind == "multiclass" else 2)


def model_overrides(
    space: Space, draw: Draw, rng: random.Random, task: str, bad: float,
) -> None:
    if space.default_model(task) != "mlp":
        if rng.random() < 0.7:
            return  # the task's own model (a CNN for images)
        draw.argv.append("model=mlp")
    elif rng.random() < bad / 4:
        draw.argv.append(f"model={rng.choice(['cnn', 'resnet18'])}")
        draw.bad("an image model on a tabular task")
        return
    if rng.random() < 0.3:
        if rng.random() < bad:
            dims = rng.choice([[0], [-4, 8], [1.5], 8, "wide", [8, "x"], [True]])
            draw.argv.append(f"model.hidden_dims={fmt(dims)}")
            draw.bad("model.hidden_dims not a list of positive integers", early=True)
        else:
            dims = [rng.choice([4, 8, 16, 32]) for _ in range(rng.randint(0, 3))]
            draw.argv.append(f"model.hidden_dims={fmt(dims)}")
    param = space.ranges.get("model.dropout")
    if param is not None and rng.random() < 0.25:
        if rng.random() < bad:
            draw.argv.append(f"model.dropout={fmt(bad_value(param, rng))}")
            draw.bad("model.dropout out of range", early=True)
        else:
            draw.argv.append(f"model.dropout={fmt(round(rng.uniform(0, 0.9), 2))}")
    if rng.random() < 0.1:
        if rng.random() < bad:
            draw.argv.append(f"model.activation={rng.choice(['sigmoidd', 1, '[relu]'])}")
            draw.bad("model.activation names no activation")
        else:
            draw.argv.append(f"model.activation={rng.choice(space.activations)}")


def perturb_overrides(space: Space, draw: Draw, rng: random.Random, kind: str, bad: float) -> None:
    if rng.random() > 0.3:
        return
    fitting = [p for p, fits in space.perturb_fits.items() if fits is None or kind in fits]
    unfit = [p for p in space.perturb_fits if p not in fitting]
    if unfit and rng.random() < bad / 2:
        name = rng.choice(unfit)
        draw.argv.append(f"perturb={name}")
        draw.bad(f"perturb={name} does not fit {kind}")
        return
    name = rng.choice(fitting)
    draw.argv.append(f"perturb={name}")
    for key, param in space.perturb_params.get(name, {}).items():
        if rng.random() > 0.6:
            continue
        if rng.random() < bad:
            draw.argv.append(f"perturb.{key}={fmt(bad_value(param, rng))}")
            draw.bad(f"perturb.{key} out of range")
        else:
            value = good_value(param, rng)
            if key in ("fraction", "rate") and value == 0.0:
                value = 0.1
            draw.argv.append(f"perturb.{key}={fmt(value)}")
    if rng.random() < bad / 3:
        draw.argv.append("+perturb.nope=1")
        draw.bad("perturb takes no key nope")


def top_level_overrides(
    space: Space, draw: Draw, rng: random.Random, task: str, kind: str, bad: float,
) -> None:
    """seed, seeds, batch_size, trainer.max_epochs, divergence, retries, threads, ..."""
    for key in ("seed", "batch_size", "trainer.max_epochs", "divergence.loss_factor",
                "divergence.metric_factor", "retries", "threads"):
        param = space.ranges.get(key)
        if param is None or rng.random() > 0.25:
            continue
        if key == "batch_size" and any(a.startswith("batch_size=") for a in draw.argv):
            continue
        if rng.random() < bad:
            draw.argv.append(f"{key}={fmt(bad_value(param, rng))}")
            draw.bad(f"{key} out of range", early=True)
            continue
        value = good_value(param, rng)
        if key == "trainer.max_epochs":
            value = rng.choice([1, 2])
        elif key == "batch_size":
            value = rng.choice([1, 2, 7, 16, 64, 100, 500])
        elif key == "threads":
            value = rng.choice([0, 1])
        elif key == "seed":
            value = rng.choice([0, 1, 7, 12345, 2**31 - 1])
        elif key == "retries":
            value = rng.randint(0, 2)
        elif key.startswith("divergence.") and (rng.random() < 0.8 or not bad):
            value = rng.choice([None, 10, 100.0, 1000, 1e6])  # near 1, most runs are diverged
        draw.argv.append(f"{key}={fmt(value)}")
    if rng.random() < 0.12:
        if kind not in ("regression", "binary", "multiclass") and rng.random() > bad:
            pass  # seeds= trains those kinds only: refused below, now and then
        elif space.tasks[task].get("kind") == "auto" and not bad:
            pass
        elif rng.random() < bad:
            seeds = rng.choice([0, -1, [1, 1], [-2, 3]])  # more in KNOWN_BUGS
            draw.argv.append(f"seeds={fmt(seeds)}")
            draw.bad("seeds neither a count nor distinct seeds", early=True)
        else:
            seeds = rng.choice([2, 3, [0, 5], [3, 1, 2]])
            draw.argv.append(f"seeds={fmt(seeds)}")
            draw.results = seeds if isinstance(seeds, int) else len(seeds)
            if kind not in ("regression", "binary", "multiclass"):
                draw.bad(f"seeds= on a {kind} task", early=True)
            elif space.tasks[task].get("kind") == "auto":
                draw.unsure("seeds= with task.kind=auto")
    for key, good, wrong in (("resume", [True, False], ["yes please", 2]),
                             ("skip_unfit", [False], ["sometimes"]),
                             ("compile", [False], ["fast", [False]]),
                             ("tags", [["a", "b"], []], [])):
        if rng.random() > 0.05 or any(a.startswith(f"{key}=") for a in draw.argv):
            continue
        if wrong and rng.random() < bad:
            draw.argv.append(f"{key}={fmt(rng.choice(wrong))}")
            draw.unsure(f"{key} of a wrong type")  # not in validation.RANGES
        else:
            draw.argv.append(f"{key}={fmt(rng.choice(good))}")
    if rng.random() < 0.05:
        draw.argv.append(f"logger={rng.choice(['csv', 'none'])}")
    elif rng.random() < bad / 5:
        draw.argv += ["logger=wandb", f"logger.mode={rng.choice(['bogus', 'sometimes'])}"]
        draw.bad("logger.mode names no wandb mode", early=True)


# Mistakes a user makes with groups, keys and Hydra's syntax: each must be one line.
STRUCTURAL = [
    ["foo=1"], ["+foo=1"], ["++foo=1"], ["+task.nope=1"], ["task.nope=1"], ["+model.nope=1"],
    ["+trainer.nope=1"], ["tsk=regression"], ["+tsk=regression"], ["loss=hubr"],
    ["task=regresion"], ["optimizer=adm"], ["model=mpl"], ["perturb=outlier"],
    ["logger=wanbd"], ["trainer=cpu"], ["loss="], ["task="], ["optimizer.lr="], ["=1"],
    ["optimizer.lr==1"], ["batch_size=[1,2"], ["seed=}"], ["'task=regression"], ["seed"],
    ["loss=mse,huber"], ["seed=0,1"], ["seed=range(1,3)"], ["~seed"], ["~task"], ["~loss"],
    ["~trainer.max_epochs"], ["~batch_size"], ["optimizer.lr=1e-3 batch_size=2"],
    ["download=false"], ["+download=false"], ["task=regression,binary"], ["+experiment=nope"],
    ["+tune=nope"], ["hydra.nope=1"], ["optimizer=[adam,sgd]"], ["task=[regression,binary]"],
    ["loss={name:mse}"], ["task.kind=clustering"], ["logger.name=tensorboard"],
    ["batch_size=1e400"], ["seed=99999999999999999999999"], ["optimizer.lr=0x10"],
    ["trainer.max_epochs=null"], ["batch_size=null"], ["seed=null"], ["optimizer.lr=null"],
    ["retries=null"], ["loss.reduction=null"], ["loss.name=nope"], ["name=${task.nope}"],
]
# Odd but harmless: Hydra trims the value; a deleted lr is torch's default; names are labels.
ODD = [["seed=0 "], ["~optimizer.lr"], ["optimizer.name=rmsprop"], ["model.name=transformer"],
       ["task.name=null"]]


# Bugs the fuzz found where this test's author could not fix them, drawn in every run. The
# main test passes over them; test_known_bugs_are_still_open fails once one is fixed, so that
# the fix removes its entry here (and the draw joins the others).
KNOWN_BUGS = {
}


# How each known bug shows in a random draw's output, so the main test passes over it there too.
KNOWN_SIGNS = {
}


def known_bug(rec: dict[str, Any]) -> str | None:
    """The KNOWN_BUGS entry a draw's output shows, if any."""
    text = rec["stderr"] + json.dumps(rec["results"])
    return next((bug for bug, signs in KNOWN_SIGNS.items() if any(s in text for s in signs)),
                None)


def structural_draw(rng: random.Random) -> Draw:
    draw = Draw([])
    odd = rng.random() < 0.1
    mistake = rng.choice(ODD if odd else STRUCTURAL)
    if rng.random() < 0.5:  # alone, or among valid overrides
        draw.argv += rng.sample(["loss=huber", "optimizer=sgd", "seed=3", "batch_size=32"], 2)
    draw.argv += mistake
    rng.shuffle(draw.argv)
    if odd:
        draw.unsure(f"odd input {mistake}")
    else:
        draw.bad(f"bad input {mistake}", early=True)
    return draw


def image_draw(space: Space, rng: random.Random, task: str, loss: str) -> Draw:
    """An image task: never a download here, so no data (a folder that does not exist)."""
    kind = space.kind_of(task)
    draw = Draw([f"task={task}", f"loss={loss}", "task.download=false",
                 f"task.data_dir={space.missing_dir}"])
    if loss == "custom":
        draw.argv.append("loss._target_=torch.nn.CrossEntropyLoss")
    if rng.random() < 0.3:
        draw.argv.append(f"batch_size={rng.choice([8, 64])}")
    if rng.random() < 0.2 and "augment" in space.tasks[task]:
        draw.argv.append(f"task.augment={fmt(rng.random() < 0.5)}")
    if rng.random() < 0.2 and "val_size" in space.tasks[task]:
        draw.argv.append(f"task.val_size={rng.choice([0, 100, -5, 'many'])}")
    draw.bad("no image files" if space.fits(loss, kind) else f"{loss} does not fit {kind}")
    return draw


def config_draw(
    space: Space, rng: random.Random, task: str, loss: str | None = None, bad: float = 0.15,
) -> Draw:
    """A run on a tabular task: every part valid unless drawn bad (with chance `bad` each)."""
    kind = space.kind_of(task)
    draw = Draw([])
    classes = task_overrides(space, draw, rng, task, kind, bad)
    if loss is None:
        roll = rng.random()
        fitting = space.losses_for(kind)
        if roll < bad / 2:
            loss = rng.choice([o for o in space.losses if o not in fitting] or fitting)
        else:
            loss = rng.choice(fitting)
    if loss == "auto" and kind == "auto":
        draw.unsure("loss=auto with a kind the catalogue lacks")
    skipped = False
    if kind not in space.registry.get(space.loss_name(loss), {}) and loss not in ("custom", "auto"):
        if rng.random() < 0.25:
            draw.argv.append("skip_unfit=true")
            skipped = True  # recorded as skipped, exit 0
        else:
            draw.bad(f"{loss} does not fit {kind}", early=True)
    loss_overrides(space, draw, rng, loss, kind, classes, bad)
    optimizer_overrides(space, draw, rng, bad)
    model_overrides(space, draw, rng, task, bad)
    perturb_overrides(space, draw, rng, kind, bad)
    top_level_overrides(space, draw, rng, task, kind, bad)
    if rng.random() < 0.2:
        draw.argv.append(f"output_dir={rng.choice(['run', 'nested/run'])}")
    if skipped:
        draw.results = None
        if draw.expect == "error" and not draw.early:
            draw.unsure("a skipped run's other parts are not checked")
            draw.expect = "either"
    rng.shuffle(draw.argv)
    return draw


def offline_draw(space: Space, rng: random.Random, task: str) -> Draw:
    """A source that downloads (OpenML), offline from an empty cache: one line, no network."""
    draw = Draw([f"task={task}", "task.download=false", f"task.data_home={space.missing_dir}"])
    dataset = rng.choice([31, "credit-g", None, "no-such-set"])
    if dataset is not None:
        draw.argv.append(f"task.dataset={dataset}")
    if rng.random() < 0.3:
        draw.argv.append(f"loss={rng.choice(['auto', 'ce', 'mse'])}")
    draw.bad("not in the cache, and no download")
    return draw


def draw_all(space: Space, count: int, seed: int) -> list[Draw]:
    """Every task x every loss once (valid, but for the loss not fitting), then random draws
    up to `count`: a third all valid, the rest with bad parts, structural mistakes, image
    tasks without their files and offline sources."""
    rng = random.Random(seed)
    draws = []
    for task in space.tabular_tasks:
        for loss in space.losses:
            draws.append(config_draw(space, rng, task, loss, bad=0.0))
    for i, loss in enumerate(space.losses):
        draws.append(image_draw(space, rng, space.image_tasks[i % len(space.image_tasks)], loss))
    for bug, known in KNOWN_BUGS.items():
        for expect, argv in known:
            draws.append(Draw(list(argv), expect, [bug], known=bug))
    while len(draws) < count:
        roll = rng.random()
        if roll < 0.15:
            draws.append(structural_draw(rng))
        elif roll < 0.2:
            task = rng.choice(space.image_tasks)
            draws.append(image_draw(space, rng, task, rng.choice(space.losses_for(
                space.kind_of(task)))))
        elif roll < 0.22 and space.offline_tasks:
            draws.append(offline_draw(space, rng, rng.choice(space.offline_tasks)))
        else:
            bad = 0.0 if roll < 0.5 else 0.3
            draws.append(config_draw(space, rng, rng.choice(space.tabular_tasks), bad=bad))
    return draws


# ------------------------------------------------------------------------------ the driver


def cheap(argv: list[str]) -> list[str]:
    """The draw's overrides after the cheap defaults it does not set itself."""
    given = {a.lstrip("+~").partition("=")[0] for a in argv}
    return [f"{k}={v}" for k, v in CHEAP.items() if k not in given] + argv


def collect(folder: Path) -> dict[str, Any]:
    """What a draw left in its folder: each results.json (parsed) and any stray temp file."""
    found = []
    for path in sorted(folder.rglob("results.json")):
        text = path.read_text()
        try:
            data = json.loads(text)
        except ValueError:
            found.append({"path": str(path), "parsed": False, "text": text[:200]})
            continue
        found.append({"path": str(path), "parsed": True, "status": data.get("status"),
                      "reason": data.get("reason"), "metrics": data.get("metrics")})
    stray = [str(p) for p in folder.rglob(".results.json.*")]
    return {"results": found, "stray": stray}


def cache_yaml_parsing() -> None:
    """Parse each config file's text once per process: Hydra reads ~40 files per compose, twice
    per call, and PyYAML is a tenth of a draw's time. The text decides the result (a plain
    copy is handed out each time), so the configs Hydra composes are the same."""
    import copy

    import yaml
    from omegaconf import OmegaConf
    from omegaconf._utils import get_yaml_loader

    parsed: dict[str, Any] = {}

    def load(file_: Any) -> Any:
        text = file_.read() if hasattr(file_, "read") else Path(file_).read_text("utf-8")
        if text not in parsed:
            parsed[text] = yaml.load(text, Loader=get_yaml_loader())
        obj = copy.deepcopy(parsed[text])
        return OmegaConf.create() if obj is None else OmegaConf.create(obj)

    OmegaConf.load = staticmethod(load)  # type: ignore[method-assign]


def driver(draws_file: str, workdir: str, out_file: str) -> None:
    """Run each draw ([index, argv] in draws_file) through `lossbench.__main__.main` in this
    one process; one JSON line per draw in out_file."""
    import contextlib
    import io
    import traceback
    import warnings

    from hydra.core.global_hydra import GlobalHydra

    import lossbench.__main__ as cli
    from lossbench import gc_tuning, sweep

    # main() freezes the collector's objects for a fast exit; here the process goes on, and
    # each draw's garbage frozen would never be freed.
    gc_tuning.freeze_before_exit = lambda: None
    cache_yaml_parsing()
    draws = json.loads(Path(draws_file).read_text())
    with open(out_file, "w") as out:
        for i, argv in draws:
            folder = Path(workdir) / f"d{i:04d}"
            folder.mkdir(parents=True)
            os.chdir(folder)
            os.environ["LOSSBENCH_OUT"] = str(folder)
            cli._STATUSES.clear()
            sweep.LAST_SWEEP = sweep.CURRENT_SWEEP = None
            GlobalHydra.instance().clear()
            sys.argv = [cli.__file__, *argv]
            stdout, stderr = io.StringIO(), io.StringIO()
            code: Any = 0
            start, cpu = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                    warnings.catch_warnings():
                try:
                    cli.main()
                except SystemExit as err:
                    code = err.code
                except BaseException:  # what a real process would print before exit 1
                    traceback.print_exc()
                    code = 1
            if code is None:
                code = 0
            elif not isinstance(code, int):
                print(code, file=stderr)
                code = 1
            record = {"i": i, "code": code, "stdout": stdout.getvalue(),
                      "stderr": stderr.getvalue(), "seconds": time.perf_counter() - start,
                      "cpu": time.process_time() - cpu,
                      **collect(folder)}
            out.write(json.dumps(record) + "\n")
            out.flush()


def environment(home: Path) -> dict[str, str]:
    """A user's environment in CI: no wandb key, no full errors, a fresh HOME."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WANDB_", "LOSSBENCH_", "HYDRA_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(CI="1", HOME=str(home), LOSSBENCH_DATA_DIR=str(home / "no_data"))
    return env


def run_in_subprocess(argv: list[str], folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """One draw as a real `python -m lossbench` process, in its own folder."""
    folder.mkdir(parents=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lossbench", *argv], cwd=folder,
                          env={**env, "LOSSBENCH_OUT": str(folder)}, capture_output=True,
                          text=True, timeout=300)
    return {"code": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
            "seconds": time.perf_counter() - start, **collect(folder)}


# ------------------------------------------------------------------------------ the checks


def finite_metrics(metrics: Any) -> bool:
    if not isinstance(metrics, dict) or not metrics.get("best"):
        return False
    for values in metrics.values():
        for key, value in (values or {}).items():
            if key != "epoch" and not (isinstance(value, int | float) and math.isfinite(value)):
                return False
    return True


def problems(draw: Draw, rec: dict[str, Any]) -> list[str]:
    """What is wrong with how a draw ended (empty when it ended as the CLI promises)."""
    found = []
    code, out, err = rec["code"], rec["stdout"], rec["stderr"]
    if "Traceback" in out + err:
        found.append("a traceback")
    if code not in (0, 2):
        found.append(f"exit {code}")
    for r in rec["results"]:
        if not r["parsed"]:
            found.append(f"a half-written results.json: {r['path']}")
    if rec["stray"]:
        found.append(f"temp files left: {rec['stray']}")
    parsed = [r for r in rec["results"] if r["parsed"]]
    if code == 0:
        if "lossbench: error" in err:
            found.append("exit 0 with an error line")
        if len(parsed) != (draw.results or max(1, len(parsed))):
            found.append(f"{len(parsed)} results.json, expected {draw.results or 'some'}")
        for r in parsed:
            if r["status"] not in STATUSES_OK:
                found.append(f"exit 0 with status {r['status']}: {r['reason']}")
            elif r["status"] == "ok" and not finite_metrics(r["metrics"]):
                found.append(f"status ok with metrics that are not all finite: {r['metrics']}")
            elif r["status"] != "ok" and not r["reason"]:
                found.append(f"status {r['status']} without a reason")
    elif code == 2:
        lines = err.strip().splitlines()
        if len(lines) != 1:
            found.append(f"{len(lines)} lines on stderr")
        if not lines or not lines[0].startswith("lossbench: error: "):
            found.append("stderr does not start with 'lossbench: error: '")
        for r in parsed:
            reason = str(r["reason"] or "")
            if r["status"] != "failed" or not reason or "\n" in reason:
                found.append(f"exit 2 beside a results.json of status {r['status']}: {reason!r}")
            elif reason not in err:
                found.append(f"the error line does not give the recorded reason {reason!r}")
        hint = err.partition("use +")[2].split(")")[0].split()[:1]
        if hint:  # Hydra's "to append to your config use +key=value": it must be accepted
            from lossbench.__main__ import check_appended_keys

            refused = check_appended_keys([f"+{hint[0]}"])
            if refused:
                found.append(f"the hint +{hint[0]} is refused: {refused}")
    if draw.expect == "ok" and code != 0 and not found:
        found.append("a valid command was refused")
    if draw.expect == "error" and code == 0:
        found.append(f"bad input was accepted ({'; '.join(draw.why)})")
    return found


def describe(draw: Draw, rec: dict[str, Any], found: list[str]) -> str:
    tail = (rec["stderr"].strip() or rec["stdout"].strip())[-1500:]
    return (f"{draw.command()}\n  expected {draw.expect} ({'; '.join(draw.why) or 'all valid'})"
            f", got exit {rec['code']}: {'; '.join(found)}\n  stderr: {tail}")


# ------------------------------------------------------------------------------ the tests


def pick_for_subprocess(draws: list[Draw]) -> list[int]:
    """IN_SUBPROCESS draws of each sort, spread over the list: valid runs, mistakes refused
    before Hydra composes or while it does (a process that never imports torch: cheap), bad
    values refused inside the run, and a draw that may end either way."""
    def structural(d: Draw) -> bool:
        return d.expect == "error" and d.why[0].startswith("bad input")

    sorts = [(lambda d: d.expect == "ok", 3), (structural, 4),
             (lambda d: d.expect == "error" and not structural(d), 2),
             (lambda d: d.expect == "either", 1)]
    picks: list[int] = []
    for wanted, n in sorts:
        chosen = [i for i, d in enumerate(draws) if wanted(d) and not d.known]
        picks += chosen[:: max(1, len(chosen) // n)][:n]
    rest = [i for i, d in enumerate(draws) if i not in picks and not d.known]  # a sort too rare
    return picks + rest[:: max(1, len(rest) // 10)][: IN_SUBPROCESS - len(picks)]


def _fuzz(tmp_path_factory: Any) -> dict[str, Any]:
    keep = os.environ.get("LOSSBENCH_FUZZ_KEEP")  # a folder to keep the draws' files in
    if keep:
        import tempfile

        Path(keep).mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=f"seed{SEED}_", dir=keep))
    else:
        root = tmp_path_factory.mktemp("cli_fuzz")
    space = Space(root / "data")
    draws = draw_all(space, DRAWS, SEED)
    argvs = [cheap(d.argv) for d in draws]
    (root / "draws.json").write_text(json.dumps([d.__dict__ for d in draws], indent=1))
    env = environment(root / "home")
    start = time.perf_counter()
    drivers = []
    for k in range(DRIVERS):
        mine = [[i, argv] for i, argv in enumerate(argvs) if i % DRIVERS == k]
        (root / f"draws{k}.json").write_text(json.dumps(mine))
        drivers.append(subprocess.Popen(
            [sys.executable, __file__, str(root / f"draws{k}.json"), str(root / "in_process"),
             str(root / f"records{k}.jsonl")], cwd=root, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    separate = {i: run_in_subprocess(argvs[i], root / "subprocess" / f"s{i:04d}", env)
                for i in pick_for_subprocess(draws)}
    ended = [(p.communicate(timeout=900), p.returncode) for p in drivers]
    seconds = time.perf_counter() - start
    records = sorted((json.loads(line) for k in range(DRIVERS)
                      for line in (root / f"records{k}.jsonl").read_text().splitlines()),
                     key=lambda r: r["i"])
    return {"draws": draws, "records": records, "separate": separate, "seconds": seconds,
            "drivers": [(code, out, err) for (out, err), code in ended], "root": root,
            "space": space}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every draw run once in the driver; a few again as their own processes, meanwhile."""
    return _fuzz(tmp_path_factory)


def test_driver_ran_every_draw(fuzz) -> None:
    done = {r["i"] for r in fuzz["records"]}
    undone = [d.command() for i, d in enumerate(fuzz["draws"]) if i not in done]
    for code, out, err in fuzz["drivers"]:
        assert code == 0 and "Traceback" not in out + err, (
            f"a driver ended with exit {code} after {len(done)} of {len(fuzz['draws'])} draws;"
            f" the first not done: {undone[:1]}\n{err[-3000:]}")
    assert len(done) == len(fuzz["draws"]) >= 300
    print(f"{len(done)} draws (seed {SEED}) in {fuzz['seconds']:.0f} s")


def test_every_draw_ends_in_results_or_one_line(fuzz) -> None:
    failures, known = [], []
    for draw, rec in zip(fuzz["draws"], fuzz["records"], strict=False):
        found = problems(draw, rec)
        if found and (draw.known or known_bug(rec)):
            known.append(f"{draw.known or known_bug(rec)}: {draw.command()}")
        elif found:
            failures.append(describe(draw, rec, found))
    print(f"{len(known)} draws show known bugs:", *known, sep="\n  ")
    assert not failures, (f"{len(failures)} of {len(fuzz['records'])} draws (seed {SEED}) broke "
                          f"the CLI's promise:\n" + "\n".join(failures[:25]))


@pytest.mark.parametrize("bug", [
    pytest.param(bug, marks=pytest.mark.xfail(strict=True, reason=bug)) for bug in KNOWN_BUGS])
def test_known_bugs_are_still_open(fuzz, bug: str) -> None:
    """XPASS (a failure, strict) once a KNOWN_BUGS entry is fixed: then remove the entry."""
    for draw, rec in zip(fuzz["draws"], fuzz["records"], strict=False):
        if draw.known == bug:
            assert not problems(draw, rec), describe(draw, rec, problems(draw, rec))


def test_draws_cover_the_config_space(fuzz) -> None:
    """Runs and refusals both drawn, and every loss trained on each tabular task it fits."""
    draws, records = fuzz["draws"], fuzz["records"]
    codes = [r["code"] for r in records]
    assert codes.count(0) >= 60 and codes.count(2) >= 100, (codes.count(0), codes.count(2))
    ran = {(arg(d, "task"), arg(d, "loss")) for d, r in zip(draws, records, strict=False)
           if r["code"] == 0 and any(x["status"] == "ok" for x in r["results"])}
    space = fuzz["space"]
    pairs = {(t, o) for t in space.tabular_tasks for o in space.losses_for(space.kind_of(t))}
    missing = sorted(pairs - ran)
    assert len(missing) <= len(pairs) // 10, f"never trained to ok: {missing}"


def arg(draw: Draw, key: str) -> str | None:
    return next((a.partition("=")[2] for a in draw.argv if a.startswith(f"{key}=")), None)


def normalised(rec: dict[str, Any], folder: str) -> tuple[Any, ...]:
    lines = [line.replace(folder, "<out>") for line in rec["stderr"].strip().splitlines()]
    return rec["code"], lines[-1:] if rec["code"] == 2 else [], sorted(
        str(r.get("status")) for r in rec["results"])


def test_in_process_driver_agrees_with_real_processes(fuzz) -> None:
    assert len(fuzz["separate"]) >= IN_SUBPROCESS - 2
    for i, alone in fuzz["separate"].items():
        rec = fuzz["records"][i]
        ours = normalised(rec, str(fuzz["root"] / "in_process" / f"d{i:04d}"))
        theirs = normalised(alone, str(fuzz["root"] / "subprocess" / f"s{i:04d}"))
        assert ours == theirs, (f"{fuzz['draws'][i].command()}\n  in process: {ours}\n"
                                f"  own process: {theirs}")


if __name__ == "__main__":
    driver(*sys.argv[1:4])
