"""The path every source's data takes to a TaskData: split (seeded, stratified), perturb the
training split only, preprocess with statistics of the training split only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from lossbench.data.sources import SourceData


@dataclass(frozen=True)
class TaskData:
    """One task's splits as tensors, plus what evaluation needs to undo the scaling."""

    kind: str
    dataset: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    perturb: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    # The task config's keys (m_per_class, ndcg_k, ...), read by task plugins.
    options: dict[str, Any] = field(default_factory=dict)
    # Images stay uint8 (4x less memory); the model normalises them with these statistics.
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    # Where the data came from and what was made of it (results.json's "data"): source, kind
    # and why, rows and rows dropped, class names, columns.
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (
            self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test))

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def to(self, device: torch.device | str) -> TaskData:
        """All splits on `device`, once: training then slices batches there without copies."""
        moved = {
            f"{xy}_{s}": getattr(self, f"{xy}_{s}").to(device)
            for xy in "xy" for s in ("train", "val", "test")
        }
        return replace(self, **moved)

    def numpy(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.split(name)
        return x.cpu().numpy(), y.cpu().numpy()


def split_indices(
    y: np.ndarray, seed: int, val_fraction: float, test_fraction: float, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test indices fixed by `seed` alone, so every loss sees the same split."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    strat = y if stratify else None
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    strat = y[rest] if stratify else None
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=strat
    )
    return train, val, test


def class_disjoint_indices(
    y: np.ndarray, seed: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Metric learning's protocol: train on the first half of the classes, evaluate on the rest.

    The held-out classes' samples are split into val and test (stratified, fixed by `seed`).
    """
    from sklearn.model_selection import train_test_split

    classes = np.unique(y)
    if len(classes) < 4:
        raise ValueError(f"task.split=class_disjoint needs at least 4 classes, got {len(classes)}")
    held_out = np.isin(y, classes[len(classes) // 2 :])
    rest = np.flatnonzero(held_out)
    val, test = train_test_split(
        rest, test_size=test_fraction / (val_fraction + test_fraction), random_state=seed,
        stratify=y[rest],
    )
    return np.flatnonzero(~held_out), val, test



def build_task_data(
    source: SourceData,
    kind: str,
    seed: int,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    perturb: dict[str, Any] | None = None,
    split: str = "samples",
    options: dict[str, Any] | None = None,
    input_scale: float = 1.0,
    kind_reason: str | None = None,
    target: str = "the target",
    min_frequency: int | float | None = 5,
) -> TaskData:
    """Split, perturb the training split only, preprocess with training statistics only.

    Rows without a target are dropped first (and counted). Tables go through scikit-learn's
    ColumnTransformer (lossbench.data.preprocess); images stay uint8 and the model normalises
    them with the training split's channel statistics. `input_scale` multiplies the
    preprocessed features of every split: extreme inputs that saturate a sigmoid, for
    stability experiments.
    """
    from lossbench.data.sources import CLASS_KINDS, check_split_sizes, encode_target

    targets = encode_target(source, kind, target)
    y = targets.y
    classify = kind in CLASS_KINDS
    check_split_sizes(y, kind, val_fraction, test_fraction, targets.class_names)
    if split == "class_disjoint" and kind == "embedding":
        train, val, test = class_disjoint_indices(y, seed, val_fraction, test_fraction)
    elif split == "samples":
        train, val, test = split_indices(y, seed, val_fraction, test_fraction, stratify=classify)
    else:
        allowed = "samples, class_disjoint" if kind == "embedding" else "samples"
        raise ValueError(f"task.split must be one of {allowed}, got {split!r}")
    num_classes = len(targets.class_names) if classify else None
    # Perturbations move labels and drop rows but never change features: they are drawn on
    # row indices, so every source (tables, frames, images) shares them.
    y_train = y[train]
    perturb_info: dict[str, Any] = {"name": "none"}
    if perturb and perturb.get("name", "none") != "none":
        from lossbench.data.perturb import perturb_train

        params = {k: v for k, v in perturb.items() if k != "name"}
        result = perturb_train(
            perturb["name"], train, y_train, seed=seed, task_kind=kind,
            num_classes=num_classes, **params,
        )
        train, y_train, perturb_info = result.x, result.y, result.info
    rows = {name: targets.keep[idx] for name, idx in (("train", train), ("val", val),
                                                       ("test", test))}
    features, extra = _features(source, rows, input_scale, min_frequency)
    input_mean, input_std = extra.pop("input_mean", None), extra.pop("input_std", None)

    if classify:
        dtype = np.float32 if kind == "binary" else np.int64  # binary losses take float 0/1
        target_mean, target_std = 0.0, 1.0

        def targets_of(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a.astype(dtype))
    else:
        target_mean, target_std = float(y_train.mean()), float(y_train.std())

        def targets_of(a: np.ndarray) -> Tensor:
            return torch.from_numpy((a - target_mean) / target_std).float()

    info = {
        **source.info, "dataset": source.name, "kind": kind,
        "kind_reason": kind_reason or f"task.kind={kind} was given",
        "rows": int(len(source.target)),
        "rows_dropped": int(len(source.target) - len(targets.keep)),
        "split": {name: int(len(idx)) for name, idx in rows.items()},
        **extra,
    }
    if classify:
        info["class_names"] = targets.class_names
        if kind == "binary":
            info["positive_class"] = targets.class_names[1]
    return TaskData(
        kind=kind, dataset=source.name,
        x_train=features["train"], y_train=targets_of(y_train),
        x_val=features["val"], y_val=targets_of(y[val]),
        x_test=features["test"], y_test=targets_of(y[test]),
        num_classes=num_classes, target_mean=target_mean, target_std=target_std,
        perturb=perturb_info, options=dict(options or {}),
        input_mean=input_mean, input_std=input_std, info=info,
    )


def _features(
    source: SourceData, rows: dict[str, np.ndarray], input_scale: float,
    min_frequency: int | float | None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Each split's model inputs, and what results.json says of them."""
    if isinstance(source.features, Tensor) and source.features.dim() == 4:
        from lossbench.data.vision import channel_stats

        images = source.features
        split = {name: images[torch.from_numpy(idx)] for name, idx in rows.items()}
        mean, std = channel_stats(split["train"])
        shape = list(images.shape[1:])
        return split, {"image_shape": shape, "input_mean": mean, "input_std": std}
    from lossbench.data.preprocess import fit_preprocessor, take_rows

    table = source.features
    prep = fit_preprocessor(take_rows(table, rows["train"]), source.categorical, min_frequency)
    split = {
        name: torch.from_numpy(prep.transform(take_rows(table, idx)) * np.float32(input_scale))
        for name, idx in rows.items()
    }
    return split, {"columns": prep.columns, "features": int(split["train"].shape[1])}


def make_task_data(
    kind: str,
    dataset: str,
    seed: int,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    perturb: dict[str, Any] | None = None,
    split: str = "samples",
    options: dict[str, Any] | None = None,
    input_scale: float = 1.0,
) -> TaskData:
    """A bundled data set (lossbench.data.bundled) as a TaskData of `kind`."""
    from lossbench.data.bundled import check_fits, load_bundled

    check_fits(dataset, kind)
    source = load_bundled(dataset)
    reason = source.kind_reason if kind == source.kind else None
    return build_task_data(
        source, kind, seed, val_fraction, test_fraction, perturb, split, options, input_scale,
        kind_reason=reason,
    )
