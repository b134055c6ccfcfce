"""Image data sets as a TaskData: a seeded validation split carved from torchvision's train set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lossbench.data.tabular import TaskData


def make_image_task_data(
    kind: str, dataset: str, seed: int, val_size: int = 5000,
    data_dir: str | None = None, download: bool = True, perturb: dict[str, Any] | None = None,
    split: str = "samples", options: dict[str, Any] | None = None,
) -> TaskData:
    """Train/val/test uint8 images and int64 labels; the test split is the data set's own.

    `split=class_disjoint` (embedding tasks): training uses the first half of the classes;
    validation and test images come from the other half only.
    """
    from lossbench.data.vision import load_vision

    if split not in ("samples", "class_disjoint") or (split != "samples" and kind != "embedding"):
        allowed = "samples, class_disjoint" if kind == "embedding" else "samples"
        raise ValueError(f"task.split must be one of {allowed}, got {split!r}")
    arrays = load_vision(dataset, data_dir, download)
    held_out = arrays.num_classes // 2  # classes >= this are unseen in training
    pool = torch.arange(len(arrays.y_train))
    test_keep = torch.ones(len(arrays.y_test), dtype=torch.bool)
    if split == "class_disjoint":
        test_keep = arrays.y_test >= held_out
    n = len(pool)
    if not 0 < val_size < n:
        raise ValueError(f"task.val_size must be in [1, {n - 1}] for {dataset}, got {val_size}")
    order = pool[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    if split == "class_disjoint":
        unseen = arrays.y_train[order] >= held_out
        val_idx, train_idx = order[unseen][:val_size], order[~unseen]
    else:
        val_idx, train_idx = order[:val_size], order[val_size:]
    x_train, y_train = arrays.x_train[train_idx], arrays.y_train[train_idx]
    perturb_info: dict[str, Any] = {"name": "none"}
    if perturb and perturb.get("name", "none") != "none":
        from lossbench.data.perturb import perturb_train

        params = {k: v for k, v in perturb.items() if k != "name"}
        result = perturb_train(
            perturb["name"], x_train.numpy(), y_train.numpy(), seed=seed, task_kind=kind,
            num_classes=arrays.num_classes, **params,
        )
        x_train = torch.from_numpy(np.ascontiguousarray(result.x))
        y_train = torch.from_numpy(np.ascontiguousarray(result.y)).long()
        perturb_info = result.info
    return TaskData(
        kind=kind, dataset=dataset,
        x_train=x_train, y_train=y_train,
        x_val=arrays.x_train[val_idx], y_val=arrays.y_train[val_idx],
        x_test=arrays.x_test[test_keep], y_test=arrays.y_test[test_keep],
        num_classes=arrays.num_classes, perturb=perturb_info, options=dict(options or {}),
        input_mean=arrays.mean, input_std=arrays.std,
    )
