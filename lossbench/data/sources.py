"""Data sources (bundled, table, openml, image_folder, torchvision): which one a task names,
what kind of task its target makes, and the one path from its arrays to a TaskData."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossbench.task_kinds import KINDS
from lossbench.validation import ConfigError

CLASS_KINDS = ("binary", "multiclass", "embedding")
NUMERIC_KINDS = ("regression", "ranking")
# The loss `loss=auto` trains with, per kind (tables and OpenML sets pick their kind at run time).
NATURAL_LOSS = {k: v.natural_loss for k, v in KINDS.items()}
# Whole-number targets with at most this many distinct values are classes under kind=auto.
MAX_AUTO_CLASSES = 10


@dataclass(frozen=True)
class SourceData:
    """What a source hands the shared pipeline: one row per sample, before any split.

    `features` is a pandas DataFrame, a 2-D numeric array, or uint8 images N×C×H×W (a tensor);
    `target` holds the raw values (numbers, strings or bools; NaN or None where missing).
    """

    name: str
    features: Any
    target: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    # The kind the source states (a bundled set's catalogue entry), and why.
    kind: str | None = None
    kind_reason: str | None = None
    # Columns to one-hot even when they hold numbers (codes, firm ids, ...).
    categorical: tuple[str, ...] = ()
    class_names: tuple[str, ...] | None = None  # display names of sorted class values


@dataclass(frozen=True)
class Source:
    """One origin of data: how its files become SourceData (torchvision's sets keep their own
    path, lossbench.data.images, since their test split is the data set's own)."""

    name: str
    load: Callable[[dict[str, Any]], SourceData]


def _bundled(task: dict[str, Any]) -> SourceData:
    from lossbench.data.bundled import load_bundled

    return load_bundled(str(task.get("dataset")))


def _table(task: dict[str, Any]) -> SourceData:
    from lossbench.data.table import load_table

    return load_table(task)


def _openml(task: dict[str, Any]) -> SourceData:
    from lossbench.data.openml import load_openml

    return load_openml(task)


def _image_folder(task: dict[str, Any]) -> SourceData:
    from lossbench.data.image_folder import load_image_folder

    return load_image_folder(task)


SOURCES: dict[str, Source] = {
    s.name: s for s in (
        Source("bundled", _bundled),
        Source("table", _table),
        Source("openml", _openml),
        Source("image_folder", _image_folder),
    )
}


def source_name(task: dict[str, Any]) -> str:
    """The source a task config names (`task.source`); bundled sets when it names none."""
    name = task.get("source") or "bundled"
    if name != "torchvision" and name not in SOURCES:
        allowed = ", ".join([*SOURCES, "torchvision"])
        raise ConfigError(f"unknown task.source '{name}' (choose from: {allowed})")
    return name


def load_source(task: dict[str, Any]) -> SourceData:
    """The task's SourceData; bad input (missing file, unknown column) is one ConfigError line."""
    try:
        return SOURCES[source_name(task)].load(task)
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(one_line(str(err))) from None


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# ---------------------------------------------------------------- the kind of a task


def resolve_kind(config: dict[str, Any]) -> str:
    """The task kind of a config: `task.kind`, or with `task.kind=auto` the one its data's
    target makes (a bundled set's catalogue entry; a table's or OpenML set's target column)."""
    return _kind_and_reason(config)[0]


def _kind_and_reason(config: dict[str, Any]) -> tuple[str, str | None]:
    task = config["task"]
    kind = task.get("kind")
    if kind != "auto":
        return kind, task.get("kind_reason")
    if source_name(task) == "torchvision":
        raise ConfigError("task.kind=auto needs a source that infers the kind (bundled, table, "
                          "openml, image_folder); task.source=torchvision needs task.kind= set")
    return infer_kind(load_source(task), task)


def resolve_task(config: dict[str, Any]) -> dict[str, Any]:
    """Make `task.kind=auto` and `loss=auto` concrete in `config`, in place (and return it):
    the kind goes to `task.kind`, why to `task.kind_reason`.

    Idempotent: a config whose kind and loss are already named is left as it is.
    """
    task = config["task"]
    if task.get("kind") == "auto":
        task["kind"], task["kind_reason"] = _kind_and_reason(config)
    loss = config.get("loss") or {}
    if loss.get("name") == "auto" and not loss.get("_target_") and task.get("kind") in NATURAL_LOSS:
        config["loss"] = {**loss, "name": NATURAL_LOSS[task["kind"]]}
    return config


def infer_kind(source: SourceData, task: dict[str, Any] | None = None) -> tuple[str, str]:
    """(kind, why) for `task.kind=auto`: the source's own statement, or what the target holds.

    Two distinct values (or bools) make a binary task; text makes a multiclass one; whole
    numbers with at most MAX_AUTO_CLASSES distinct values are classes; other numbers regress.
    """
    if source.kind is not None:
        return source.kind, source.kind_reason or f"{source.name} is a {source.kind} data set"
    import pandas as pd

    values = pd.Series(source.target).dropna()
    target = target_label(task)
    n = int(values.nunique())
    if n < 2:
        raise ConfigError(_one_class(target, values))
    if values.dtype == bool or n == 2:
        shown = ", ".join(_names(_factorize(values)[1]))
        return "binary", f"{target} has 2 distinct values ({shown})"
    if not _is_numeric(values):
        return "multiclass", f"{target} holds text with {n} distinct values"
    whole = bool(np.all(np.mod(values.to_numpy(dtype=np.float64), 1.0) == 0.0))
    if whole and n <= MAX_AUTO_CLASSES:
        return "multiclass", (f"{target} holds whole numbers with {n} distinct values "
                              f"(<= {MAX_AUTO_CLASSES}); task.kind=regression to regress")
    what = "whole numbers" if whole else "numbers"
    return "regression", f"{target} holds {what} with {n} distinct values"


def target_label(task: dict[str, Any] | None) -> str:
    """How messages name the target: `task.target 'price'`, or the data set's own target."""
    target = (task or {}).get("target")
    return f"task.target {target!r}" if target not in (None, "", "???") else "the target"


def _is_numeric(values: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _names(values: Any) -> list[str]:
    """How a class value reads in results.json: 1.0 as '1', strings as they are."""
    out = []
    for v in values:
        if isinstance(v, float | np.floating) and float(v).is_integer():
            v = int(v)
        out.append(str(v))
    return out


def _one_class(target: str, values: Any, what: str = "one class") -> str:
    if len(values) == 0:
        return f"{target} has no values (every row's target is missing)"
    return f"{target} has {what} ({_names(values.unique()[:1])[0]!r}): nothing to learn"


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class Targets:
    """The rows that have a target, and their values as the kind wants them."""

    keep: np.ndarray  # row indices into the source, missing targets left out
    y: np.ndarray  # float64 for numeric kinds, int64 class indices for class kinds
    class_names: list[str] | None


def encode_target(source: SourceData, kind: str, target: str = "the target") -> Targets:
    """Drop rows without a target; map class values to indices 0..C-1 (sorted, names kept)."""
    import pandas as pd

    series = pd.Series(source.target)
    keep = np.flatnonzero(~series.isna().to_numpy())
    values = series.iloc[keep]
    if kind in NUMERIC_KINDS:
        if not _is_numeric(values):
            example = next((v for v in values if isinstance(v, str)), values.iloc[0]) \
                if len(values) else None
            raise ConfigError(f"task.kind={kind} needs a numeric target; {target} holds "
                              f"{values.dtype} values (e.g. {example!r}): use task.kind=auto")
        numbers = values.to_numpy(dtype=np.float64)
        if values.nunique() < 2:
            raise ConfigError(_one_class(target, values, "a single value"))
        if not np.isfinite(numbers).all():
            raise ConfigError(f"{target} holds infinite values; a {kind} target must be finite")
        return Targets(keep, numbers, None)
    codes, uniques = _factorize(values)
    if len(uniques) < 2:
        raise ConfigError(_one_class(target, values))
    names = list(source.class_names) if source.class_names else _names(uniques)
    if kind == "binary" and len(uniques) != 2:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise ConfigError(f"task.kind=binary needs a target with 2 classes; {target} has "
                          f"{len(uniques)} ({shown}): use task.kind=multiclass")
    return Targets(keep, codes.astype(np.int64), names)


def _factorize(values: Any) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed types (numbers and text): order them as text
        codes, uniques = pd.factorize(values.astype(str), sort=True)
    return np.asarray(codes), np.asarray(uniques)


def check_split_sizes(
    y: np.ndarray, kind: str, val_fraction: float, test_fraction: float,
    class_names: list[str] | None = None,
) -> None:
    """Enough rows that every split gets some (of every class, when the split is stratified)."""
    split = f"{_pct(1 - val_fraction - test_fraction)}/{_pct(val_fraction)}/{_pct(test_fraction)}"
    smallest = min(val_fraction, test_fraction)
    if kind in CLASS_KINDS:
        need = math.ceil(1 / smallest - 1e-9)
        counts = np.bincount(y)
        rare = int(np.argmin(counts))
        if counts[rare] < need:
            name = class_names[rare] if class_names else str(rare)
            raise ConfigError(
                f"too few rows for the split: class {name!r} has {counts[rare]} row(s); "
                f"a stratified {split} split needs at least {need} of each class")
        return
    need = math.ceil(2 / smallest - 1e-9)
    if len(y) < need:
        raise ConfigError(f"too few rows for the split: {len(y)} row(s) with a target; "
                          f"a {split} split needs at least {need}")


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f}"


# ---------------------------------------------------------------- one path to a TaskData


def load_task_data(config: dict[str, Any]):
    """The task's splits as a TaskData, whatever its source (on the CPU; the caller moves it)."""
    from lossbench.data.tabular import build_task_data

    task = config["task"]
    if source_name(task) == "torchvision":
        return _torchvision(config)
    kind, reason = _kind_and_reason(config)
    if source_name(task) == "bundled":
        from lossbench.data.bundled import check_fits

        check_fits(str(task.get("dataset")), kind)
    source = load_source(task)
    if reason is None and source.kind == kind:
        reason = source.kind_reason
    return build_task_data(
        source, kind, int(config["seed"]),
        float(task.get("val_fraction", 0.2)), float(task.get("test_fraction", 0.2)),
        perturb=config.get("perturb"), split=task.get("split", "samples"), options=task,
        input_scale=float(task.get("input_scale", 1.0)), kind_reason=reason,
        target=target_label(task),
        min_frequency=task.get("min_frequency", 5),
    )


def _torchvision(config: dict[str, Any]):
    from dataclasses import replace

    from lossbench.data.images import make_image_task_data

    task = config["task"]
    data = make_image_task_data(
        task["kind"], task["dataset"], config["seed"], task.get("val_size", 5000),
        task.get("data_dir"), task.get("download", True), perturb=config.get("perturb"),
        split=task.get("split", "samples"), options=task,
    )
    split = {s: len(data.split(s)[1]) for s in ("train", "val", "test")}
    return replace(data, info={
        "source": "torchvision", "dataset": data.dataset, "kind": data.kind,
        "rows": sum(split.values()), "split": split,
    })
