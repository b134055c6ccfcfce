"""Image tasks end to end on small files in torchvision's real formats; DDP on two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_vision import cifar_checksums, write_cifar10, write_mnist  # noqa: F401 (fixture)

from lossbench.config import compose_config
from lossbench.run import run


def cli(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """`python -m lossbench ARGS` in `cwd`, as a user runs it; its results files."""
    env = {**os.environ, "CI": "1", "LOSSBENCH_OUT": str(cwd / "outputs")}
    proc = subprocess.run([sys.executable, "-m", "lossbench", *args, "logger=none"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    return proc, [json.loads(p.read_text()) for p in sorted(cwd.rglob("results.json"))]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST", n_train=400, n_test=100)
    return root


def test_mnist_trains_a_cnn_through_the_cli(mnist_dir: Path, tmp_path: Path) -> None:
    proc, results = cli(tmp_path, "task=mnist", f"task.data_dir={mnist_dir}",
                        "task.download=false", "task.val_size=100", "trainer.max_epochs=3")
    assert proc.returncode == 0, proc.stderr
    (result,) = results
    assert result["status"] == "ok"
    assert result["config"]["model"]["name"] == "cnn" and result["loss"] == "ce"
    assert result["data_path"] == "device"
    # The synthetic digits are learnable: far above the class prior.
    assert result["metrics"]["best"]["test/acc"] > result["baselines"]["prior"]["test/acc"] + 0.3


def test_streaming_path_gives_the_same_kind_of_result(mnist_dir: Path, tmp_path: Path) -> None:
    results = run(compose_config([
        "task=mnist", f"task.data_dir={mnist_dir}", "task.download=false", "task.val_size=100",
        "task.data_path=stream", "model=mlp", "trainer.max_epochs=2", "logger=none",
        f"output_dir={tmp_path}",
    ]))
    assert results["status"] == "ok", results["reason"]
    assert results["data_path"] == "stream"
    assert results["metrics"]["last"]["test/acc"] > 0.3


def test_missing_files_with_download_off_is_one_line(tmp_path: Path) -> None:
    proc, _ = cli(tmp_path, "task=fashion_mnist", f"task.data_dir={tmp_path / 'none'}",
                  "task.download=false")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "train-images-idx3-ubyte" in lines[0] and "FashionMNIST/raw" in lines[0]


def test_cifar10_resnet18_with_augmentation(cifar_checksums, tmp_path: Path) -> None:  # noqa: F811
    _, md5s = write_cifar10(tmp_path / "data", per_batch=16)
    cifar_checksums(md5s)
    results = run(compose_config([
        "task=cifar10", f"task.data_dir={tmp_path / 'data'}", "task.download=false",
        "task.val_size=16", "task.augment=true", "batch_size=32", "trainer.max_epochs=1",
        "logger=none", f"output_dir={tmp_path / 'run'}",
    ]))
    assert results["status"] == "ok", results["reason"]
    assert results["config"]["model"]["name"] == "resnet18"
    assert set(results["metrics"]["best"]) >= {"test/acc", "test/nll", "test/ece"}


def test_ddp_on_two_cpu_processes_writes_one_result(tmp_path: Path) -> None:
    proc, results = cli(tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                        "trainer.max_epochs=3")
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in results] == ["ok"]
    assert proc.stdout.count("regression · mse") == 1


def test_ddp_inside_a_sweep_is_refused(tmp_path: Path) -> None:
    proc, results = cli(tmp_path, "-m", "trainer=ddp", "trainer.accelerator=cpu",
                        "trainer.devices=2", "seed=0")
    assert proc.returncode == 1
    assert [r["status"] for r in results] == ["failed"]
    assert "not inside a sweep" in results[0]["reason"]


def test_mnist_embedding_is_class_disjoint_and_trains(mnist_dir: Path, tmp_path: Path) -> None:
    from lossbench.data.images import make_image_task_data

    data = make_image_task_data("embedding", "mnist", seed=0, val_size=50, data_dir=mnist_dir,
                                download=False, split="class_disjoint")
    assert set(data.y_train.tolist()) == {0, 1, 2, 3, 4}
    assert set(data.y_val.tolist()) <= {5, 6, 7, 8, 9}
    assert set(data.y_test.tolist()) <= {5, 6, 7, 8, 9}
    proc, results = cli(tmp_path, "task=mnist_embedding", f"task.data_dir={mnist_dir}",
                        "task.download=false", "task.val_size=50", "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stderr
    (result,) = results
    assert result["status"] == "ok" and result["loss"] == "triplet"
    assert {"raw_features", "untrained_network"} <= set(result["baselines"])
    assert "test/map_at_r" in result["metrics"]["best"]
