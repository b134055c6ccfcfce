"""Tests for image data loading (real torchvision file formats, written small) and image models."""

from __future__ import annotations

import hashlib
import pickle
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from torch import nn

from lossbench.data import vision
from lossbench.data.vision import (
    VisionArrays,
    augment_cifar,
    estimate_bytes,
    fits_on_device,
    load_vision,
)
from lossbench.vision_models import SmallCNN, build_vision_model, resnet18_cifar

MNIST_FAMILY = [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


# ---------------------------------------------------------------- writers of real formats


def _write_idx_images(path: Path, images: np.ndarray) -> None:
    """idx3: big-endian magic 2051 (ubyte, 3 dims), then N, H, W, then the raw bytes."""
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """idx1: big-endian magic 2049 (ubyte, 1 dim), then N, then one byte per label."""
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def _mnist_like(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus a bright 6×6 patch whose position encodes the label, so a CNN can learn it."""
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 60, size=(n, 28, 28))
    for i, y in enumerate(labels):
        r, c = 2 + 8 * (y // 4), 2 + 6 * (y % 4)
        images[i, r : r + 6, c : c + 6] = 250
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(root: Path, folder: str, n_train: int = 96, n_test: int = 32) -> dict:
    """Uncompressed idx files under <root>/<folder>/raw, exactly where torchvision looks."""
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = _mnist_like(n, rng)
        _write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


def _dump(path: Path, obj: dict) -> str:
    """Pickle like the CIFAR release (dict per batch) and return the file's md5."""
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(root: Path, per_batch: int = 8) -> tuple[dict, dict[str, str]]:
    """cifar-10-batches-py: data_batch_1..5, test_batch (rows of 3072 = R,G,B planes), meta."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    md5s, arrays = {}, {"train": [], "test": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for fn in names:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        batch = {"batch_label": fn, "labels": labels, "data": data, "filenames": [""] * per_batch}
        md5s[fn] = _dump(folder / fn, batch)
        arrays["test" if fn == "test_batch" else "train"].append((data, labels))
    meta = {"num_cases_per_batch": per_batch, "label_names": [f"c{i}" for i in range(10)]}
    md5s["batches.meta"] = _dump(folder / "batches.meta", meta)
    return arrays, md5s


@pytest.fixture
def cifar_checksums(monkeypatch: pytest.MonkeyPatch):
    """Point torchvision's CIFAR10 md5 table at our small files.

    CIFAR10.__init__ md5-checks every batch (and batches.meta) against the real release's
    checksums, which fake files can never match. Rather than bypass the check in lossbench
    (that would silently accept corrupt real downloads), the test swaps the expected
    checksums on the class for those of the files it wrote; torchvision's own integrity
    check and pickle loader then run unchanged.
    """

    def install(md5s: dict[str, str]) -> None:
        train = [[f"data_batch_{i}", md5s[f"data_batch_{i}"]] for i in range(1, 6)]
        meta = dict(tvd.CIFAR10.meta, md5=md5s["batches.meta"])
        monkeypatch.setattr(tvd.CIFAR10, "train_list", train)
        monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5s["test_batch"]]])
        monkeypatch.setattr(tvd.CIFAR10, "meta", meta)

    return install


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Refuse every outgoing connection (deterministic even where a network exists)."""
    seen_timeouts: list = []

    def refuse(*args, **kwargs):
        seen_timeouts.append(socket.getdefaulttimeout())
        raise OSError("network disabled in test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(vision, "DOWNLOAD_TIMEOUT_S", 2.0)
    return seen_timeouts


def _expected_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std straight from the written N×C×H×W bytes, in [0,1] scale."""
    scaled = x.astype(np.float64) / 255.0
    return scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3))


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize(("name", "folder"), MNIST_FAMILY)
def test_load_mnist_family(tmp_path: Path, name: str, folder: str) -> None:
    written = write_mnist(tmp_path, folder)
    arrays = load_vision(name, tmp_path, download=False)
    images, labels = written["train"]
    assert arrays.name == name
    assert arrays.x_train.shape == (96, 1, 28, 28) and arrays.x_train.dtype == torch.uint8
    assert arrays.x_test.shape == (32, 1, 28, 28) and arrays.x_test.dtype == torch.uint8
    assert arrays.y_train.dtype == torch.int64 and arrays.y_test.dtype == torch.int64
    assert torch.equal(arrays.x_train[:, 0], torch.from_numpy(images))
    assert arrays.y_train.tolist() == labels.tolist()
    assert arrays.y_test.tolist() == written["t10k"][1].tolist()
    assert arrays.num_classes == 10
    mean, std = _expected_stats(images[:, None])
    assert arrays.mean == pytest.approx(mean.tolist(), abs=1e-9)
    assert arrays.std == pytest.approx(std.tolist(), abs=1e-9)


def test_load_with_download_true_uses_present_files(tmp_path: Path, no_network: list) -> None:
    write_mnist(tmp_path, "MNIST")
    assert load_vision("MNIST", tmp_path, download=True).x_train.shape[0] == 96
    assert no_network == []


def test_load_cifar10(tmp_path: Path, cifar_checksums) -> None:
    written, md5s = write_cifar10(tmp_path)
    cifar_checksums(md5s)
    arrays = load_vision("cifar10", tmp_path, download=False)
    train = np.concatenate([d for d, _ in written["train"]]).reshape(-1, 3, 32, 32)
    assert arrays.x_train.shape == (40, 3, 32, 32) and arrays.x_train.dtype == torch.uint8
    assert arrays.x_test.shape == (8, 3, 32, 32)
    assert arrays.x_train.is_contiguous()
    assert torch.equal(arrays.x_train, torch.from_numpy(train))
    assert arrays.y_train.tolist() == [y for _, ys in written["train"] for y in ys]
    assert arrays.y_test.tolist() == written["test"][0][1]
    assert arrays.num_classes == 10
    mean, std = _expected_stats(train)
    assert arrays.mean == pytest.approx(mean.tolist(), abs=1e-9)
    assert arrays.std == pytest.approx(std.tolist(), abs=1e-9)


def test_cifar_md5_check_stays_on(tmp_path: Path) -> None:
    write_cifar10(tmp_path)  # real release checksums: our files must be rejected
    with pytest.raises(FileNotFoundError) as info:
        load_vision("cifar10", tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg and "rejected by torchvision" in msg


@pytest.mark.parametrize(("name", "folder"), MNIST_FAMILY)
def test_missing_mnist_files_one_line(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_vision(name, tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{name}: expected ")
    assert all(f in msg for f in MNIST_FILES)
    assert str(tmp_path / folder / "raw") in msg
    assert "task.download=true" in msg
    assert info.value.__suppress_context__


def test_missing_cifar_files_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_vision("cifar10", tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert all(f in msg for f in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"))
    assert str(tmp_path / "cifar-10-batches-py") in msg


@pytest.mark.parametrize("name", vision.VISION_DATASETS)
def test_download_without_network_fails_fast_in_one_line(
    tmp_path: Path, name: str, no_network: list
) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_vision(name, tmp_path, download=True)
    msg = str(info.value)
    assert "\n" not in msg and "download failed" in msg and msg.startswith(f"{name}: expected")
    assert no_network and all(t == 2.0 for t in no_network)  # bounded connect timeout was set
    assert socket.getdefaulttimeout() is None  # and restored afterwards


def test_unknown_dataset_name() -> None:
    with pytest.raises(ValueError, match="allowed: mnist, fashion_mnist, cifar10"):
        load_vision("svhn", "/nonexistent", download=False)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOSSBENCH_DATA_DIR", raising=False)
    assert vision.default_data_dir() == Path.home() / ".cache" / "lossbench" / "data"
    monkeypatch.setenv("LOSSBENCH_DATA_DIR", str(tmp_path))
    assert vision.default_data_dir() == tmp_path


# ---------------------------------------------------------------- memory helpers


def _arrays(n: int = 10) -> VisionArrays:
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    y = torch.zeros(n, dtype=torch.int64)
    return VisionArrays("cifar10", x, y, x[:2], y[:2], 10, (0.0,) * 3, (1.0,) * 3)


def test_estimate_bytes_and_fits() -> None:
    arrays = _arrays()
    assert estimate_bytes(arrays) == 12 * 3072 + 12 * 8
    assert estimate_bytes(arrays, image_dtype=torch.float32) == 12 * 3072 * 4 + 12 * 8
    assert fits_on_device(1024, "cpu")
    assert not fits_on_device(3 * 1024**3, "cpu")
    assert not fits_on_device(2048, torch.device("cpu"), cpu_limit_bytes=1024)


# ---------------------------------------------------------------- augmentation


def test_augment_cifar_shape_dtype_determinism() -> None:
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = augment_cifar(x, torch.Generator().manual_seed(3))
    b = augment_cifar(x, torch.Generator().manual_seed(3))
    c = augment_cifar(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    xf = x.float()
    assert augment_cifar(xf, torch.Generator().manual_seed(3)).dtype == torch.float32


def test_augment_cifar_is_crop_and_flip() -> None:
    """Every output is a window of the zero-padded image, possibly mirrored."""
    x = torch.randint(1, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out = augment_cifar(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(8):
        windows = [padded[i, :, r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


# ---------------------------------------------------------------- models


def test_small_cnn_learns_fake_mnist(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST")
    arrays = load_vision("mnist", tmp_path, download=False)
    mean = torch.tensor(arrays.mean).view(1, -1, 1, 1)
    std = torch.tensor(arrays.std).view(1, -1, 1, 1)
    x = (arrays.x_train.float() / 255.0 - mean) / std
    torch.manual_seed(0)
    model = SmallCNN(1, arrays.num_classes, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(x), arrays.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_small_cnn_any_input_size() -> None:
    model = SmallCNN(3, 7, width=4, dropout=0.1)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model(torch.randn(2, 3, 20, 24)).shape == (2, 7)


def test_resnet18_cifar_shape_and_stem() -> None:
    model = resnet18_cifar(10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_weights_skip_fc(tmp_path: Path) -> None:
    source = resnet18_cifar(10)
    path = tmp_path / "r18.pt"
    torch.save(source.state_dict(), path)
    model = resnet18_cifar(5, weights=str(path))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert model.fc.out_features == 5


def test_resnet18_missing_weights_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        resnet18_cifar(10, weights=tmp_path / "nope.pt")
    assert "\n" not in str(info.value) and "nope.pt" in str(info.value)


def test_build_vision_model() -> None:
    assert isinstance(build_vision_model("cnn", 1, 10, width=4), SmallCNN)
    grey = build_vision_model("resnet18", 1, 3)
    assert grey(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="allowed: cnn, resnet18") as info:
        build_vision_model("vit", 3, 10)
    assert "\n" not in str(info.value)
