"""Image data sets (MNIST, Fashion-MNIST, CIFAR-10) loaded through torchvision into tensors."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.datasets as tvd

VISION_DATASETS = ("mnist", "fashion_mnist", "cifar10")

# Socket timeout (seconds) applied while torchvision downloads, so that a firewalled machine
# fails in bounded time instead of hanging in connect(); only used when no default is set.
DOWNLOAD_TIMEOUT_S = 30.0
CPU_TENSOR_LIMIT_BYTES = 2 * 1024**3
CUDA_SAFETY_FACTOR = 0.5
_STATS_CHUNK = 4096


class VisionDataNotFoundError(FileNotFoundError):
    """Data set files are missing (or failed torchvision's checks) and could not be downloaded."""


@dataclass(frozen=True)
class VisionArrays:
    """Whole data set as tensors: images uint8 N×C×H×W, labels int64, per-channel stats."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """C, H, W of one image, which is what a model needs to be built."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def default_data_dir() -> Path:
    """Where data sets live unless told otherwise; LOSSBENCH_DATA_DIR overrides for clusters."""
    env = os.environ.get("LOSSBENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lossbench" / "data"


def _dataset_class(name: str) -> type[tvd.VisionDataset]:
    """Looked up at call time so the torchvision class in use is always the current one."""
    return {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]


def _normalise_name(name: str) -> str:
    """Accept 'Fashion-MNIST' style spellings; reject anything else in one line."""
    key = name.strip().lower().replace("-", "_")
    if key not in VISION_DATASETS:
        raise ValueError(f"unknown vision data set {name!r}; allowed: {', '.join(VISION_DATASETS)}")
    return key


def expected_files(name: str, root: str | Path) -> tuple[Path, tuple[str, ...]]:
    """Folder and file names torchvision reads, taken from the torchvision class itself."""
    cls = _dataset_class(_normalise_name(name))
    root = Path(root)
    if issubclass(cls, tvd.CIFAR10):
        names = [fn for fn, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return root / cls.base_folder, tuple(names)
    names = [os.path.splitext(os.path.basename(fn))[0] for fn, _ in cls.resources]
    return root / cls.__name__ / "raw", tuple(names)


def _one_line(text: str, limit: int = 200) -> str:
    """Collapse a (possibly multi-line) upstream error into a short single line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _not_found(
    name: str, root: Path, download: bool, err: BaseException
) -> VisionDataNotFoundError:
    """Build the one-line error that says what is expected where and how to fix it."""
    folder, files = expected_files(name, root)
    missing = [f for f in files if not (folder / f).is_file()]
    head = f"{name}: expected {', '.join(files)} in {folder}"
    if download:
        reason = f"{type(err).__name__}: {_one_line(str(err))}"
        return VisionDataNotFoundError(
            f"{head} (download failed: {reason}); check network access or place the files there"
        )
    if len(missing) == len(files):
        state = "none found; task.download=false"
    elif missing:
        state = f"missing {', '.join(missing)}; task.download=false"
    else:
        state = (f"files present but rejected by torchvision ({_one_line(str(err))}); "
                 "task.download=false")
    return VisionDataNotFoundError(
        f"{head} ({state}); run with task.download=true or place the files there"
    )


@contextlib.contextmanager
def _download_timeout(seconds: float) -> Iterator[None]:
    """Bound urllib's connects during torchvision downloads (it passes no timeout itself)."""
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _open_split(name: str, root: Path, train: bool, download: bool) -> tvd.VisionDataset:
    """Construct the torchvision data set, turning its many failure modes into one error."""
    cls = _dataset_class(name)
    try:
        if download:
            with _download_timeout(DOWNLOAD_TIMEOUT_S):
                return cls(str(root), train=train, download=True)
        return cls(str(root), train=train, download=False)
    except (RuntimeError, OSError) as err:  # "Dataset not found", URLError, timeouts, md5 failures
        raise _not_found(name, root, download, err) from None


def _images_nchw(ds: tvd.VisionDataset) -> torch.Tensor:
    """MNIST stores N×H×W tensors, CIFAR N×H×W×C numpy arrays; unify to contiguous N×C×H×W."""
    data = torch.as_tensor(ds.data)
    if data.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images from {type(ds).__name__}, got {data.dtype}")
    if data.ndim == 3:
        return data.unsqueeze(1).contiguous()
    return data.permute(0, 3, 1, 2).contiguous()


def _labels(ds: tvd.VisionDataset) -> torch.Tensor:
    """Targets are a tensor (MNIST) or a list (CIFAR); always hand back int64."""
    return torch.as_tensor(ds.targets, dtype=torch.int64).clone()


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in [0,1] scale, chunked in float64 so big sets stay cheap and exact."""
    n, c = x.shape[0], x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, _STATS_CHUNK):
        chunk = x[start : start + _STATS_CHUNK].to(torch.float64).div_(255.0)
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        total_sq += chunk.square().sum(dim=(0, 2, 3)).cpu()
    count = n * x.shape[2] * x.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def load_vision(
    name: str, data_dir: str | Path | None = None, download: bool = True
) -> VisionArrays:
    """Load a whole image data set into memory as tensors, via torchvision's own file readers."""
    key = _normalise_name(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    train = _open_split(key, root, train=True, download=download)
    test = _open_split(key, root, train=False, download=False)
    x_train = _images_nchw(train)
    mean, std = channel_stats(x_train)
    return VisionArrays(
        name=key,
        x_train=x_train,
        y_train=_labels(train),
        x_test=_images_nchw(test),
        y_test=_labels(test),
        num_classes=len(train.classes),
        mean=mean,
        std=std,
    )


def augment_cifar(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop (zero padding) + horizontal flip for a whole N×C×H×W batch on x's device.

    Randomness is drawn on the generator's device and moved to x's, so a CPU generator
    gives the same augmentation whether x lives on CPU or GPU.
    """
    if x.ndim != 4:
        raise ValueError(f"augment_cifar expects N×C×H×W, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    gdev = generator.device
    off_y = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=gdev).to(x.device)
    off_x = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=gdev).to(x.device)
    flip = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = off_y[:, None] + torch.arange(h, device=x.device)
    cols = off_x[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    rows_idx = rows[:, None, :, None].expand(n, c, h, padded.shape[3])
    cropped = padded.gather(2, rows_idx)
    return cropped.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def estimate_bytes(arrays: VisionArrays, image_dtype: torch.dtype | None = None) -> int:
    """Bytes to hold every split on a device; image_dtype counts images after conversion."""
    total = 0
    for images in (arrays.x_train, arrays.x_test):
        itemsize = images.element_size() if image_dtype is None else _itemsize(image_dtype)
        total += images.numel() * itemsize
    for labels in (arrays.y_train, arrays.y_test):
        total += labels.numel() * labels.element_size()
    return total


def _itemsize(dtype: torch.dtype) -> int:
    """Bytes per element of a dtype (torch.dtype.itemsize is not in every supported torch)."""
    return torch.empty((), dtype=dtype).element_size()


def fits_on_device(
    nbytes: int,
    device: torch.device | str,
    cpu_limit_bytes: int = CPU_TENSOR_LIMIT_BYTES,
    cuda_safety_factor: float = CUDA_SAFETY_FACTOR,
) -> bool:
    """Whether a data set may be kept resident as tensors instead of streamed by a DataLoader.

    On CUDA only a fraction of the free memory is allowed, leaving room for the model,
    activations and optimizer state; elsewhere a fixed threshold keeps host RAM in check.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return nbytes <= free * cuda_safety_factor
    return nbytes <= cpu_limit_bytes
