"""Your own model, optimizer, LR schedule and callbacks by `_target_`, through the real CLI;
schedules checked against torch's own schedulers, early stopping against its rule."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import Cli

USER_PARTS = '''
    import json
    import os

    import pytorch_lightning as pl
    from torch import nn


    class Net(nn.Module):
        """A user's network: lossbench passes in_features and out_features."""

        def __init__(self, in_features, out_features, width=16):
            super().__init__()
            self.sizes = (in_features, out_features, width)
            self.body = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(),
                                      nn.Linear(width, out_features))

        def forward(self, x):
            return self.body(x)


    class CountBatches(pl.Callback):
        """Counts the per-batch hooks Lightning calls; writes them at the end of training."""

        def __init__(self):
            self.batches = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batches += 1

        def on_train_end(self, trainer, pl_module):
            with open(os.environ["COUNT_FILE"], "w") as f:
                json.dump({"batches": self.batches, "epochs": trainer.current_epoch}, f)
'''


@pytest.fixture
def user(tmp_path: Path) -> Cli:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "user_parts.py").write_text(textwrap.dedent(USER_PARTS))
    return Cli(tmp_path, lib)


def one(folder: Path) -> dict:
    (path,) = folder.rglob("results.json")
    return json.loads(path.read_text())


def test_a_users_model_by_target(user) -> None:
    proc = user("model._target_=user_parts.Net", "+model.width=8", "logger=none",
                "trainer.max_epochs=3", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    results = one(user.cwd / "run")
    assert results["status"] == "ok"
    assert results["instantiated"]["model"] == "user_parts.Net"
    assert results["instantiated"]["optimizer"] == "torch.optim.Adam"


def test_the_model_gets_the_data_and_head_sizes() -> None:
    """Tabular: in_features and out_features; images: in_channels and image_size, normalised
    inside; an MLP on images gets them flattened."""
    from lossbench.data.tabular import TaskData
    from lossbench.parts import build_model

    x = torch.zeros(6, 10)
    table = TaskData("regression", "t", x, torch.zeros(6), x, torch.zeros(6), x, torch.zeros(6))
    mlp = build_model({"_target_": "lossbench.models.MLP", "hidden_dims": [5]}, table, 1)
    assert mlp[0].in_features == 10 and mlp[-1].out_features == 1
    images = torch.zeros(4, 3, 12, 12, dtype=torch.uint8)
    data = TaskData("multiclass", "i", images, torch.zeros(4), images, torch.zeros(4), images,
                    torch.zeros(4), num_classes=7, input_mean=(0.5,) * 3, input_std=(0.2,) * 3)
    cnn = build_model({"_target_": "lossbench.vision_models.SmallCNN", "width": 4}, data, 7)
    assert cnn(images).shape == (4, 7)
    flat = build_model({"_target_": "lossbench.models.MLP", "hidden_dims": [5]}, data, 7)
    assert flat[1][0].in_features == 3 * 12 * 12 and flat(images).shape == (4, 7)
    # The normalising layer is torch's (x / 255 - mean) / std.
    expected = (images.float() / 255 - 0.5) / 0.2
    assert torch.allclose(cnn[0](images), expected, atol=1e-5)


def test_any_torch_optimizer_by_target(cli) -> None:
    proc = cli("optimizer._target_=torch.optim.RAdam", "+optimizer.decoupled_weight_decay=true",
               "logger=none", "trainer.max_epochs=2", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    assert one(cli.cwd / "run")["instantiated"]["optimizer"] == "torch.optim.RAdam"


@pytest.mark.parametrize("args, named", [
    (["+optimizer.momentum=0.9"], "optimizer torch.optim.adam.Adam rejects its arguments"),
    (["optimizer._target_=torch.nn.Linear"], "is not a torch.optim.Optimizer"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler"),
    (["scheduler._target_=torch.optim.lr_scheduler.Nope"], "cannot be imported"),
    (["callbacks=lr_monitor", "logger=none"], "callbacks=lr_monitor logs to a logger"),
    (["model._target_=torch.nn.Conv2d"], "needs image data"),
    (["seeds=2", "callbacks=early_stopping"], "not with seeds="),
])
def test_bad_parts_fail_in_one_line_before_training(cli, args: list[str], named: str) -> None:
    proc = cli(*args, *(["logger=none"] if "logger=none" not in args else []))
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def history_lr(cli: Cli, *args: str) -> tuple[dict, list[float]]:
    proc = cli(*args, "logger=none", "output_dir=run")
    assert proc.returncode == 0, proc.stderr
    results = one(cli.cwd / "run")
    return results, [row["train/lr"] for row in results["history"]]


def test_cosine_follows_torchs_closed_form(cli) -> None:
    _, lrs = history_lr(cli, "scheduler=cosine", "trainer.max_epochs=12")
    lr0, steps = 0.003, 12
    expected = [lr0 * (1 + math.cos(math.pi * e / steps)) / 2 for e in range(steps)]
    assert lrs == pytest.approx(expected, rel=1e-6)


def test_step_decay_per_epoch(cli) -> None:
    _, lrs = history_lr(cli, "scheduler=step", "scheduler.step_size=3", "scheduler.gamma=0.5",
                        "trainer.max_epochs=7")
    assert lrs == pytest.approx([0.003 * 0.5 ** (e // 3) for e in range(7)], rel=1e-6)


def test_onecycle_steps_per_batch_like_torchs_own(cli) -> None:
    results, lrs = history_lr(cli, "scheduler=onecycle", "trainer.max_epochs=4")
    steps_per_epoch = math.ceil(265 / 64)  # diabetes: 265 training rows, batches of 64
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight], lr=0.003)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.003, total_steps=4 * steps_per_epoch, pct_start=0.3)
    expected = []
    for _ in range(4):
        for _ in range(steps_per_epoch):
            optimizer.step()
            reference.step()
        expected.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx(expected, rel=1e-6)


def test_early_stopping_stops_patience_epochs_after_the_best(cli) -> None:
    results, _ = history_lr(cli, "callbacks=early_stopping", "callbacks.early_stopping.patience=5",
                            "trainer.max_epochs=200")
    stop = results["stopped_early"]
    best = results["metrics"]["best"]["epoch"]
    assert stop is not None and stop["monitor"] == "val/mae" and stop["patience"] == 5
    # Lightning's rule: stop once the monitored value has not improved for `patience` epochs.
    assert stop["epoch"] == best + 5 == len(results["history"]) - 1
    maes = [row["val/mae"] for row in results["history"]]
    assert min(maes) == maes[best] and all(m >= maes[best] for m in maes[best:])


def test_a_callback_with_batch_hooks_sees_every_batch(user) -> None:
    count = user.cwd / "count.json"
    proc = user("+callbacks.counter._target_=user_parts.CountBatches", "logger=none",
                "trainer.max_epochs=3", "output_dir=run", env={"COUNT_FILE": str(count)})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(count.read_text())
    assert seen["batches"] == 3 * math.ceil(265 / 64)
    assert one(user.cwd / "run")["instantiated"]["callbacks"] == {
        "counter": "user_parts.CountBatches"}
