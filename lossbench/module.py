"""One LightningModule for every task: model + registered loss, judged by the task's metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from lossbench.data.tabular import TaskData
from lossbench.divergence import DivergenceRule, trivial_val_error
from lossbench.member import MemberRecord
from lossbench.parts import build_optimizer, build_scheduler, reacts_to_metric
from lossbench.tasks import SELECTION, compute_metrics, squeeze_head

# Precisions a module steps in with torch directly (mixed precision goes through Lightning).
LEAN_PRECISION = ("32-true", "32", "64-true", "64")


def all_finite(tensors: Iterable[Tensor]) -> Tensor:
    """Whether every element is finite, as a device tensor: one check over all, no host sync."""
    return torch.cat([t.detach().reshape(-1) for t in tensors]).isfinite().all()


def copied_state(model: nn.Module) -> dict[str, Tensor]:
    """A copy of `model`'s state_dict (5x cheaper than deepcopy, same metadata for loading)."""
    state = model.state_dict()
    for name, value in state.items():
        state[name] = value.clone()
    return state


class LossbenchModule(pl.LightningModule):
    """Trains `model` with `loss`; evaluates the validation split once per epoch on the device.

    The training loss is summed on the device and read with the metrics at the end of the
    epoch, so a step never waits on the host. The best-validation weights are kept in memory
    (no checkpoint files): selection uses the task's fixed metric, never the loss value.
    """

    def __init__(
        self, model: nn.Module, loss: nn.Module, data: TaskData, optimizer: dict[str, Any],
        divergence: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.loss, self.data, self.optimizer_cfg = model, loss, data, optimizer
        # The LR schedule, stepped here (manual optimization): per step in `_step`, per
        # epoch at the epoch's end. `steps_per_epoch` is set by the caller before fit.
        self.scheduler_cfg = scheduler
        self.steps_per_epoch = 1
        self.scheduler: Any = None
        self._step_scheduler: Any = None  # the scheduler when it steps per optimizer step
        self.augment: Any = None  # callable on a training batch of inputs, on the device
        self.publish_metrics = False  # set when the run has callbacks that read the metrics
        # One step is zero_grad, backward, (clip), step: Lightning's automatic-optimization
        # closure machinery costs more than the math on small models.
        self.automatic_optimization = False
        self.gradient_clip_val: float | None = None
        # On-device data on one device: Lightning sees one "batch" per epoch and the module
        # loops over the real mini-batches, so Lightning's per-batch hooks run once an epoch.
        self.epoch_batches: Any = None
        self.eval_batch_size = 1024
        self.squeeze = squeeze_head(data.kind)
        self.selection = SELECTION[data.kind][0]
        # History, best weights and divergence: as a stack keeps them for each member.
        self.record = MemberRecord(data.kind, DivergenceRule.from_config(divergence))
        self.trivial_error = trivial_val_error(data)
        self._loss_sum: Tensor | None = None
        self._steps = 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        return out.squeeze(-1) if self.squeeze else out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = build_optimizer(self.model.parameters(), self.optimizer_cfg)
        built = build_scheduler(
            self.scheduler_cfg, optimizer, self.steps_per_epoch, int(self.trainer.max_epochs),
            SELECTION[self.data.kind][1])
        if built is not None:
            self.scheduler, interval = built
            self._step_scheduler = self.scheduler if interval == "step" else None
        return optimizer

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One optimisation step per batch, or a whole epoch when `epoch_batches` is set.

        In the epoch loop, plain float32 steps call torch directly (backward, step); mixed
        precision goes through Lightning's optimizer and backward, which own the grad scaler.
        The loop keeps its running sum in locals: setting a module attribute costs ~10 us.
        """
        if self.epoch_batches is None:
            loss = self._step(*batch, self.optimizers())
            self._add_losses(loss, 1)
            return loss
        lean = self.trainer.precision in LEAN_PRECISION
        optimizer = self.optimizers(use_pl_optimizer=not lean)
        total, steps = None, 0
        for x, y in self.epoch_batches:
            loss = self._step(x, y, optimizer, lean)
            total = loss if total is None else total + loss
            steps += 1
        self._add_losses(total, steps)
        return loss

    def _step(self, x: Tensor, y: Tensor, optimizer: Any, lean: bool = False) -> Tensor:
        """One optimisation step on a batch; returns its loss, detached."""
        if self.augment is not None:
            x = self.augment(x)
        loss = self.loss(self(x), y)
        optimizer.zero_grad()
        if lean:
            loss.backward()
        else:
            self.manual_backward(loss)
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val)
        optimizer.step()
        if self._step_scheduler is not None:
            self._step_scheduler.step()
        return loss.detach()

    def _add_losses(self, total: Tensor | None, steps: int) -> None:
        """Add `steps` steps' summed loss to the epoch's running sum (on the device)."""
        if total is not None:
            self._loss_sum = total if self._loss_sum is None else self._loss_sum + total
            self._steps += steps

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, Tensor]:
        """Task metrics on a whole split: forward in chunks of `eval_batch_size`, metrics once."""
        was_training = self.model.training
        self.model.eval()
        x, y = self.data.split(split)
        step = self.eval_batch_size
        outputs = torch.cat([
            self(x[i : i + step].to(self.device, non_blocking=True)) for i in range(0, len(x), step)
        ])
        metrics = compute_metrics(outputs, y.to(self.device), self.data)
        self.model.train(was_training)
        return {f"{split}/{k}": v for k, v in metrics.items()}

    def on_train_epoch_end(self) -> None:
        metrics = self.evaluate("val")
        train_loss = self._loss_sum / max(self._steps, 1)
        finite = all_finite(self.model.parameters())
        diagnostics = getattr(self.loss.inner, "epoch_diagnostics", None)
        if diagnostics is not None:  # e.g. the fraction of active triplets, mean embedding norm
            metrics.update({f"train/{k}": v for k, v in diagnostics().items()})
        names = ["train/loss", *metrics]
        lr = float(self.optimizers(use_pl_optimizer=False).param_groups[0]["lr"])
        trivial = self.trivial_error if self.trivial_error is not None else finite
        # One host sync per epoch: every number this epoch needs, read together.
        values = torch.stack([
            train_loss.float(), *(v.float() for v in metrics.values()), finite.float(),
            trivial.float(),
        ]).tolist()
        *values, is_finite, trivial_value = values
        row = {**dict(zip(names, values, strict=True)), "train/lr": lr}
        self._loss_sum, self._steps = None, 0
        epoch = self.current_epoch
        trivial = trivial_value if self.trivial_error is not None else None
        if not self.record.record(epoch, row, is_finite >= 1, trivial):
            self.trainer.should_stop = True
            return
        if self.logger is not None:  # straight to the logger: self.log costs ms per call
            self.logger.log_metrics({**row, "epoch": epoch}, step=epoch)
        # Callbacks that monitor a metric (early stopping) run after this hook and read it here
        # (only when there are callbacks: a tensor per metric is a cost on a 3 ms epoch).
        if self.publish_metrics:
            self.trainer.callback_metrics.update({k: torch.tensor(v) for k, v in row.items()})
        value = row[f"val/{self.selection}"]
        if self.record.improved(value):
            self.record.keep_best(epoch, value, copied_state(self.model))
        if self.scheduler is not None and self._step_scheduler is None:
            if reacts_to_metric(self.scheduler):
                self.scheduler.step(value)
            else:
                self.scheduler.step()
