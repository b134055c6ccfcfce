"""`task=image_folder`: a folder of one's own images, one subfolder per class.

The tests write real images as PNG files: scikit-learn's handwritten digits, the way a user's
photos lie on disk (photos/<class>/<file>.png).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lossbench.config import compose_config
from lossbench.data.loading import keep_on_device, load_data
from lossbench.environment import to_plain
from lossbench.validation import ConfigError, validate_config

CLASSES = ("zero", "one", "two", "three", "four", "five")
PER_CLASS = 20


def write_digits(folder: Path, classes=CLASSES, per_class=PER_CLASS, rgb=False) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        images = digits.images[digits.target == label][:per_class]
        for i, pixels in enumerate(images):
            image = Image.fromarray(np.rint(pixels * 255 / 16).astype(np.uint8), mode="L")
            (image.convert("RGB") if rgb else image).save(folder / name / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits(tmp_path_factory.mktemp("images") / "photos")


def config(*overrides: str) -> dict:
    cfg = to_plain(compose_config(["logger=none", "task=image_folder", *overrides]))
    validate_config(cfg)
    return cfg


def test_a_folder_trains_the_cnn_through_the_cli(photos, new_cli) -> None:
    proc = new_cli("image_folder").start(
        "task=image_folder", f"task.path={photos}", "task.image_size=16", "logger=none",
        "trainer.max_epochs=3", "threads=1").wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = list(Path(proc.cwd).rglob("results.json"))
    results = json.loads(found[0].read_text())
    assert results["status"] == "ok", results["reason"]
    data = results["data"]
    assert data["source"] == "image_folder" and data["class_names"] == sorted(CLASSES)
    assert data["image_shape"] == [1, 16, 16] and data["channels"] == "gray"
    assert data["split"] == {"train": 72, "val": 24, "test": 24}
    assert results["data_path"] == "device"  # 120 small images fit
    assert results["config"]["model"]["name"] == "cnn"
    assert results["metrics"]["best"]["test/acc"] > 1 / len(CLASSES)


def test_images_are_resized_as_pil_resizes_them(photos) -> None:
    data = load_data(config(f"task.path={photos}", "task.image_size=[12,10]"))
    assert tuple(data.x_train.shape[1:]) == (1, 12, 10)
    assert data.x_train.dtype.is_floating_point is False
    everything = np.concatenate([data.numpy(s)[0] for s in ("train", "val", "test")])
    first = Image.open(photos / "five" / "000.png").convert("L")
    expected = np.asarray(first.resize((10, 12), Image.Resampling.BILINEAR))
    assert any(np.array_equal(image[0], expected) for image in everything)
    labels = np.concatenate([data.numpy(s)[1] for s in ("train", "val", "test")])
    assert np.bincount(labels).tolist() == [PER_CLASS] * len(CLASSES)  # every image once
    assert np.bincount(data.numpy("test")[1]).tolist() == [4] * len(CLASSES)  # stratified


def test_rgb_images_keep_three_channels(tmp_path: Path) -> None:
    folder = write_digits(tmp_path / "rgb", classes=("a", "b"), per_class=10, rgb=True)
    data = load_data(config(f"task.path={folder}", "task.image_size=8", "task.kind=auto"))
    assert data.x_train.shape[1] == 3 and data.kind == "binary"  # auto: 2 classes
    assert len(data.input_mean) == 3


def test_the_embedding_task_splits_classes_apart(photos, run_in, tmp_path: Path) -> None:
    cfg = config(f"task.path={photos}", "task.kind=embedding", "task.split=class_disjoint",
                 "task.image_size=8")
    assert cfg["loss"]["name"] == "triplet"
    data = load_data(cfg)
    seen = set(data.numpy("train")[1].tolist())
    held_out = set(data.numpy("val")[1].tolist()) | set(data.numpy("test")[1].tolist())
    assert seen == {0, 1, 2} and held_out == {3, 4, 5}
    results = run_in(tmp_path, "task=image_folder", f"task.path={photos}",
                     "task.kind=embedding", "task.split=class_disjoint", "task.image_size=8",
                     "batch_size=16")
    assert results["status"] == "ok", results["reason"]
    assert 0 <= results["metrics"]["best"]["test/map_at_r"] <= 1
    assert results["data"]["kind"] == "embedding"


def test_streamed_and_resnet_runs(photos, run_in, tmp_path: Path) -> None:
    streamed = run_in(tmp_path / "stream", "task=image_folder", f"task.path={photos}",
                      "task.image_size=8", "task.data_path=stream", "trainer.max_epochs=1")
    assert streamed["status"] == "ok" and streamed["data_path"] == "stream"
    resnet = run_in(tmp_path / "resnet", "task=image_folder", f"task.path={photos}",
                    "task.image_size=8", "model=resnet18", "trainer.max_epochs=1")
    assert resnet["status"] == "ok", resnet["reason"]


def test_on_the_device_when_it_fits(photos) -> None:
    import torch

    data = load_data(config(f"task.path={photos}", "task.image_size=8"))
    assert keep_on_device("auto", data, torch.device("cpu"))
    assert not keep_on_device("stream", data, torch.device("cpu"))


def test_label_noise_touches_training_labels_only(photos) -> None:
    clean = load_data(config(f"task.path={photos}", "task.image_size=8"))
    noisy = load_data(config(f"task.path={photos}", "task.image_size=8", "perturb=label_noise",
                             "perturb.rate=0.25"))
    assert noisy.perturb["n_affected"] == 18
    assert (noisy.numpy("train")[1] != clean.numpy("train")[1]).sum() == 18
    np.testing.assert_array_equal(noisy.numpy("test")[1], clean.numpy("test")[1])


def test_bad_folders_are_one_line(tmp_path: Path) -> None:
    one = write_digits(tmp_path / "one", classes=("only",), per_class=5)
    empty = tmp_path / "empty"
    for name in ("cats", "dogs"):
        (empty / name).mkdir(parents=True)
        (empty / name / "notes.txt").write_text("no image here")
    broken = write_digits(tmp_path / "broken", classes=("a", "b"), per_class=6)
    (broken / "b" / "bad.png").write_bytes(b"\x89PNG not really")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (8, 8)).save(flat / "lonely.png")
    cases = {
        tmp_path / "missing": "no such folder",
        one: "1 class folder (only)",
        empty: "no images in its class folders",
        broken: f"cannot read image {broken / 'b' / 'bad.png'}",
        flat: "has no class subfolders",
        flat / "lonely.png": "is a file",
    }
    for path, expected in cases.items():
        with pytest.raises(ConfigError) as err:
            load_data(config(f"task.path={path}", "task.image_size=8"))
        assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_cli_missing_folder_is_one_line(new_cli) -> None:
    proc = new_cli("image_folder_missing").start(
        "task=image_folder", "task.path=photos/", "logger=none").wait()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such folder" in lines[0] and "photos" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
