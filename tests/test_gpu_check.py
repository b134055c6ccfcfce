"""scripts/gpu_check.sh --cpu: the GPU check's dry run, end to end, and the figures it writes."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
CIFAR_RUNS = ("fp32", "bf16", "bf16_compile", "bf16_stream")
PLAIN_RUNS = ("fp32", "bf16", "bf16_compile")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    """The dry run once, as a user runs it (its own Python: this one), and its JSON."""
    out = tmp_path_factory.mktemp("gpu_check")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "LOSSBENCH_"))}
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(PYTHON=sys.executable, TMPDIR=str(out.parent))
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu", str(out)], cwd=out, env=env,
                          capture_output=True, text=True, timeout=240)
    path = out / "gpu_check.json"
    assert path.is_file(), f"no gpu_check.json\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, json.loads(path.read_text()) | {"_out": str(out)}


def _finite(values: list[Any]) -> bool:
    return bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in values)


def test_dry_run_passes_every_path(dry_run) -> None:
    proc, figures = dry_run
    logs = Path(figures["_out"]) / "logs"
    tails = {p.name: p.read_text()[-1500:] for p in logs.glob("*.log")}
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}\n{tails}"
    assert figures["ok"] is True, figures["paths"]
    assert figures["mode"] == "cpu" and figures["schema"] == 1
    assert all(step["status"] == "ok" for step in figures["steps"].values()), figures["steps"]
    assert set(figures["paths"]) == (
        {f"cifar10.{n}" for n in CIFAR_RUNS} | {f"plain.{n}" for n in PLAIN_RUNS}
        | {f"tabular.{side}.{k}" for side in ("stacked", "sequential") for k in (1, 2, 4)})
    assert all(figures["paths"].values())
    assert "gpu_check (cpu" in proc.stdout and " ok," in proc.stdout


def test_lossbench_runs_through_the_cli(dry_run) -> None:
    _, figures = dry_run
    n_train = figures["settings"]["n_train"]
    epochs = figures["settings"]["epochs"]
    for name in CIFAR_RUNS:
        run = figures["cifar10"][name]
        assert run["status"] == "ok" and run["finite"], (name, run)
        assert run["device"] == "cpu" and run["epochs"] == epochs
        assert run["data_path"] == ("stream" if name == "bf16_stream" else "device")
        assert run["precision"] == ("32-true" if name == "fp32" else "bf16-mixed")
        assert run["compile"] is (name == "bf16_compile")
        assert {"acc", "nll"} <= set(run["test"]) and _finite(list(run["test"].values()))
        assert 0 <= run["test"]["acc"] <= 1
        assert run["images_per_s"] > 0 and run["epoch_s"] > 0 and run["first_epoch_s"] > 0
        assert run["images_per_s"] == pytest.approx(n_train / run["epoch_s"], rel=1e-2)
        assert len(run["epoch_s_all"]) == epochs - 1
        assert run["steps_per_epoch"] == -(-n_train // figures["settings"]["batch_size"])
        # no GPU: no memory, sync or utilisation figure, and null rather than a made-up 0
        assert run["peak_memory_mib"] is None and run["syncs_per_epoch"] is None
        assert run["gpu_util_pct"] is None
        assert len(run["val_acc_by_epoch"]) == epochs
        # the run's own results.json came back beside the figures
        kept = json.loads((Path(figures["_out"]) / "runs" / name / "results.json").read_text())
        assert kept["status"] == "ok" and kept["config"]["task"]["name"] == "cifar10"
        assert kept["config"]["compile"] is run["compile"]
        assert kept["config"]["trainer"]["precision"] == run["precision"]
        assert kept["config"]["model"]["name"] == figures["settings"]["model"]


def test_plain_loop_and_ratios(dry_run) -> None:
    _, figures = dry_run
    for name in PLAIN_RUNS:
        plain = figures["plain"][name]
        assert plain["finite"] and plain["images_per_s"] > 0 and plain["epoch_s"] > 0
        assert plain["peak_memory_mib"] is None
        for which in ("last", "best"):
            assert _finite(list(plain["test"][which].values()))
    ratios = figures["ratios"]
    assert set(ratios) == {"fp32_vs_plain", "bf16_vs_plain", "bf16_compile_vs_plain",
                           "stream_vs_device"}
    for name, ratio in ratios.items():
        assert ratio is not None and ratio > 0, name
    cifar, plain = figures["cifar10"], figures["plain"]
    assert ratios["bf16_vs_plain"] == pytest.approx(
        cifar["bf16"]["epoch_s"] / plain["bf16"]["epoch_s"], rel=1e-2)


def test_stacked_and_sequential_tabular_runs(dry_run) -> None:
    _, figures = dry_run
    tabular = figures["tabular"]
    assert tabular["task"] == "multiclass" and tabular["device"] == "cpu"
    for side in ("stacked", "sequential"):
        for k in ("1", "2", "4"):
            entry = tabular[side][k]
            assert entry["finite"] and entry["statuses"] == ["ok"], (side, k, entry)
            assert entry["members_per_s"] > 0 and entry["wall_s"] > 0
            assert entry["members_per_s"] == pytest.approx(int(k) / entry["wall_s"], rel=1e-2)
            assert 0 <= entry["test_acc_mean"] <= 1
    assert set(tabular["speedup"]) == {"1", "2", "4"}
    # same seeds, same config: stacked and one-by-one runs reach the same test accuracy
    for k in ("1", "2", "4"):
        assert tabular["stacked"][k]["test_acc_mean"] == pytest.approx(
            tabular["sequential"][k]["test_acc_mean"], abs=0.02)


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return gpu_check


def test_sync_counter_counts_sync_warnings_only_while_armed(gpu_check) -> None:
    """The GPU run counts host syncs from torch's sync-debug warnings (no GPU needed here)."""
    import warnings

    saved = warnings.showwarning
    with warnings.catch_warnings(record=True) as shown:
        counter = gpu_check.SyncCounter()
        try:
            message = "called a synchronizing CUDA operation"
            warnings.warn(message, UserWarning, stacklevel=1)  # not armed: printed, not counted
            counter.armed = True
            for _ in range(3):
                warnings.warn(message, UserWarning, stacklevel=1)  # same place: still counted
            warnings.warn("something else", UserWarning, stacklevel=1)
            counter.armed = False
            warnings.warn(message, UserWarning, stacklevel=1)
        finally:
            warnings.showwarning = saved
    assert counter.count == 3
    passed_on = [str(w.message) for w in shown]
    assert passed_on == [message, "something else", message]


def test_written_cifar_files_are_the_release_format(gpu_check, tmp_path: Path) -> None:
    """The check's data: the files torchvision's CIFAR10 reads, with classes a model can tell."""
    import numpy as np

    md5s = gpu_check.write_cifar10(tmp_path, per_batch=200)
    folder = tmp_path / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    assert sorted(md5s) == sorted(names) and all((folder / n).is_file() for n in names)
    with (folder / "data_batch_1").open("rb") as f:
        batch = pickle.load(f, encoding="latin1")
    assert batch["data"].shape == (200, 3072) and batch["data"].dtype == np.uint8
    assert len(batch["labels"]) == 200 and set(batch["labels"]) <= set(range(10))
    # nearest class mean on the raw pixels, fitted on batch 1, far above chance on the test batch
    x, y = batch["data"].astype(np.float32), np.array(batch["labels"])
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    with (folder / "test_batch").open("rb") as f:
        test = pickle.load(f, encoding="latin1")
    xt, yt = test["data"].astype(np.float32), np.array(test["labels"])
    predicted = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == yt).mean() > 0.5
