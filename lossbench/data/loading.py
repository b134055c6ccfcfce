"""The data a run trains on: which loader a task names, and how batches reach the device."""

from __future__ import annotations

import os
from typing import Any

from lossbench.validation import ConfigError


def load_data(config: dict[str, Any]):
    """The task's splits as tensors (on the CPU; the caller moves them once)."""
    from lossbench.data.tabular import make_task_data

    task = config["task"]
    try:
        if task.get("source") == "torchvision":
            from lossbench.data.images import make_image_task_data

            return make_image_task_data(
                task["kind"], task["dataset"], config["seed"], task.get("val_size", 5000),
                task.get("data_dir"), task.get("download", True), perturb=config.get("perturb"),
                split=task.get("split", "samples"), options=task,
            )
        return make_task_data(
            task["kind"], task["dataset"], config["seed"],
            task.get("val_fraction", 0.2), task.get("test_fraction", 0.2),
            perturb=config.get("perturb"), split=task.get("split", "samples"), options=task,
            input_scale=float(task.get("input_scale", 1.0)),
        )
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None


def keep_on_device(choice: str, data: Any, device: Any) -> bool:
    """Small data lives on the device as tensors (the fast path); large data streams."""
    if choice in ("device", "stream"):
        return choice == "device"
    if choice != "auto":
        raise ConfigError(f"task.data_path must be auto, device or stream, got '{choice}'")
    if not data.is_image:
        return True
    from lossbench.data.vision import fits_on_device

    return fits_on_device(data.nbytes(), device)


def streaming_loader(data: Any, batch_size: int, seed: int, device: Any, order: Any = None):
    """A DataLoader with workers, pinned memory and persistent workers, for data that won't fit.

    Its batches are the on-device path's (`BatchIndexSampler`), m-per-class ones included."""
    from torch.utils.data import DataLoader, TensorDataset

    from lossbench.data.batches import BatchIndexSampler, TensorBatches

    # Whole batches are indexed at once (no per-sample collate): workers only slice tensors.
    sampler = BatchIndexSampler(
        TensorBatches(data.x_train, data.y_train, batch_size, seed=seed, order=order))
    workers = min(4, max(1, (os.cpu_count() or 1) - 1))
    return DataLoader(
        TensorDataset(data.x_train, data.y_train), sampler=sampler, batch_size=None,
        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=True,
    )
