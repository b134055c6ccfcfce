"""The data a run trains on: which loader a task names, and how batches reach the device."""

from __future__ import annotations

import os
from typing import Any

from lossbench.validation import ConfigError


def load_data(config: dict[str, Any]):
    """The task's splits as tensors (on the CPU; the caller moves them once), from the source
    the task names (lossbench.data.sources: bundled, table, openml, image_folder, torchvision)."""
    from lossbench.data.sources import load_task_data

    try:
        return load_task_data(config)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err).strip().splitlines()[0] if str(err).strip() else
                          type(err).__name__) from None


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
