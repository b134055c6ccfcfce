"""A folder of your own images in torchvision's ImageFolder layout (one subfolder per class)
as SourceData: uint8 N×C×H×W tensors resized to `task.image_size`."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.data.sources import SourceData
from lossbench.validation import ConfigError

CHANNELS = {"auto": None, "gray": "L", "grey": "L", "L": "L", "1": "L", "rgb": "RGB",
            "RGB": "RGB", "3": "RGB"}


def image_size(value: Any) -> tuple[int, int]:
    """task.image_size: one side (32) or [height, width]."""
    sides = list(value) if isinstance(value, list | tuple) else [value, value]
    if len(sides) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 4 <= s <= 1024 for s in sides):
        raise ConfigError(f"task.image_size must be an integer in [4, 1024] or [height, width] "
                          f"of them, got {value!r}")
    return int(sides[0]), int(sides[1])


def folder_layout(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(file, class index)]) from torchvision's own ImageFolder scan."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not root.exists():
        raise ConfigError(f"task.path {root}: no such folder")
    if not root.is_dir():
        raise ConfigError(f"task.path {root} is a file; task=image_folder reads a folder with "
                          f"one subfolder of images per class (task=table reads tables)")
    try:
        classes, index = find_classes(str(root))
    except FileNotFoundError:
        raise ConfigError(f"task.path {root} has no class subfolders: put each class's images "
                          f"in a folder of its own (photos/cat/1.png, photos/dog/2.png)") from None
    if len(classes) < 2:
        raise ConfigError(f"task.path {root} has {len(classes)} class folder ({classes[0]}); "
                          f"a classification needs at least 2")
    try:
        samples = make_dataset(str(root), index, extensions=IMG_EXTENSIONS,
                               allow_empty=True)
    except TypeError:  # torchvision before allow_empty
        samples = make_dataset(str(root), index, extensions=IMG_EXTENSIONS)
    if not samples:
        raise ConfigError(f"task.path {root}: no images in its class folders "
                          f"({', '.join(classes[:10])}); readable: {', '.join(IMG_EXTENSIONS)}")
    found = {c for _, c in samples}
    empty = [name for name, i in index.items() if i not in found]
    if len(found) < 2:
        raise ConfigError(f"task.path {root}: only class {classes[next(iter(found))]!r} has "
                          f"images; a classification needs at least 2 classes with images")
    if empty:
        raise ConfigError(f"task.path {root}: class folder(s) without images: "
                          f"{', '.join(empty[:10])} (remove them or add images)")
    return classes, samples


def _read(path: str, size: tuple[int, int], mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ConfigError(f"cannot read image {path}: {type(err).__name__}: "
                          f"{' '.join(str(err).split())[:160]}") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _mode_of(samples: list[tuple[str, int]]) -> str:
    """Gray when every image is (first 64 looked at), else RGB."""
    from PIL import Image

    for path, _ in samples[:64]:
        try:
            with Image.open(path) as image:
                if image.mode not in ("L", "1", "I", "I;16", "LA"):
                    return "RGB"
        except OSError:
            continue  # _read names the unreadable file
    return "L"


def load_image_folder(task: dict[str, Any]) -> SourceData:
    value = task.get("path")
    if value in (None, "", "???"):
        raise ConfigError("task.path must be set: a folder with one subfolder of images per "
                          "class, e.g. task.path=photos/")
    root = Path(str(value)).expanduser().resolve()
    size = image_size(task.get("image_size", 32))
    channels = str(task.get("channels", "auto"))
    if channels not in CHANNELS:
        raise ConfigError(f"task.channels must be auto, gray or rgb, got {channels!r}")
    if not root.is_dir():
        folder_layout(root)  # the one-line error for a missing folder or a file
    latest = max((e.stat().st_mtime_ns for e in os.scandir(root)), default=0)
    return _load(str(root), size, channels, latest)


@functools.lru_cache(maxsize=2)
def _load(root_text: str, size: tuple[int, int], channels: str, stamp: int) -> SourceData:
    """Decoded once per process per folder and size (a sweep's jobs share it)."""
    import torch

    root = Path(root_text)
    classes, samples = folder_layout(root)
    mode = CHANNELS[channels] or _mode_of(samples)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes without the GIL
        images = list(pool.map(lambda s: _read(s[0], size, mode), samples))
    x = torch.from_numpy(np.stack(images)).contiguous()
    y = np.array([c for _, c in samples], dtype=np.int64)
    return SourceData(
        name=root.name, features=x, target=y, class_names=tuple(classes),
        info={"source": "image_folder", "path": str(root), "image_size": list(size),
              "channels": "gray" if mode == "L" else "rgb", "images": len(samples)},
    )
