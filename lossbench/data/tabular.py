"""scikit-learn's bundled data sets as seeded, standardised train/val/test tensors (no download)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Which bundled data sets each task kind can use (the first is the default).
DATASETS: dict[str, tuple[str, ...]] = {
    "regression": ("diabetes",),
    "ranking": ("diabetes",),
    "binary": ("breast_cancer",),
    "multiclass": ("digits", "wine", "iris"),
    "embedding": ("digits", "wine", "iris"),
}


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


@functools.cache
def load_arrays(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets of a bundled scikit-learn data set, parsed once per process (a
    sweep's jobs share it) and read-only, so no caller can change another's copy."""
    from sklearn import datasets

    loaders = {
        "diabetes": datasets.load_diabetes,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
    }
    if dataset not in loaders:
        raise ValueError(f"unknown dataset '{dataset}' (choose from: {', '.join(loaders)})")
    x, y = loaders[dataset](return_X_y=True)
    x = x.astype(np.float32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


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
    """Split, perturb the training split only, standardise with training statistics only.

    `input_scale` multiplies the standardised features of every split: extreme inputs that
    saturate a sigmoid, for stability experiments.
    """
    if dataset not in DATASETS.get(kind, ()):
        allowed = ", ".join(DATASETS.get(kind, ()))
        raise ValueError(
            f"dataset '{dataset}' does not fit task kind '{kind}' (allowed: {allowed})"
        )
    x, y = load_arrays(dataset)
    classify = kind in ("binary", "multiclass", "embedding")
    if split == "class_disjoint" and kind == "embedding":
        train, val, test = class_disjoint_indices(y, seed, val_fraction, test_fraction)
    elif split == "samples":
        train, val, test = split_indices(y, seed, val_fraction, test_fraction, stratify=classify)
    else:
        allowed = "samples, class_disjoint" if kind == "embedding" else "samples"
        raise ValueError(f"task.split must be one of {allowed}, got {split!r}")
    x_train, y_train = x[train], y[train]
    perturb_info: dict[str, Any] = {"name": "none"}
    if perturb and perturb.get("name", "none") != "none":
        from lossbench.data.perturb import perturb_train

        params = {k: v for k, v in perturb.items() if k != "name"}
        num_classes = int(y.max()) + 1 if classify else None
        result = perturb_train(
            perturb["name"], x_train, y_train, seed=seed, task_kind=kind,
            num_classes=num_classes, **params,
        )
        x_train, y_train, perturb_info = result.x, result.y, result.info

    mean, std = x_train.mean(0), x_train.std(0)
    std[std == 0] = 1.0  # constant pixels in digits

    def features(a: np.ndarray) -> Tensor:
        return torch.from_numpy((a - mean) / std * input_scale).float()

    if classify:
        def labels(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a.astype(np.int64))

        target_mean, target_std = 0.0, 1.0
        num_classes = int(y.max()) + 1
        targets = labels
    else:
        target_mean, target_std = float(y_train.mean()), float(y_train.std())
        num_classes = None

        def targets(a: np.ndarray) -> Tensor:
            return torch.from_numpy((a - target_mean) / target_std).float()

    if kind == "binary":
        def targets(a: np.ndarray) -> Tensor:  # noqa: F811  (binary losses take float 0/1)
            return torch.from_numpy(a.astype(np.float32))

    return TaskData(
        kind=kind, dataset=dataset,
        x_train=features(x_train), y_train=targets(y_train),
        x_val=features(x[val]), y_val=targets(y[val]),
        x_test=features(x[test]), y_test=targets(y[test]),
        num_classes=num_classes, target_mean=target_mean, target_std=target_std,
        perturb=perturb_info, options=dict(options or {}),
    )
