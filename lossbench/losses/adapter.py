"""Turn a task's raw head output and natural labels into exactly what a registered loss takes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.losses.registry import LossSpec, spec_for


def _check_shapes(kind: str, outputs: Tensor, targets: Tensor) -> None:
    """Refuse shapes torch would broadcast silently (MSELoss on (N,1) vs (N,) only warns)."""
    if not outputs.is_floating_point():
        raise ValueError(f"outputs must be a floating-point tensor, got {outputs.dtype}")
    if kind == "multiclass":
        if outputs.dim() != 2 or targets.shape != outputs.shape[:1]:
            raise ValueError(
                f"multiclass expects outputs (N, C) and class indices (N,), got "
                f"{tuple(outputs.shape)} and {tuple(targets.shape)}"
            )
        if outputs.shape[1] < 2:
            raise ValueError(f"multiclass needs at least 2 classes, got {outputs.shape[1]}")
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise ValueError(
                f"multiclass targets must be integer class indices, got {targets.dtype}"
            )
    elif kind == "embedding":
        if outputs.dim() != 2 or targets.shape != outputs.shape[:1]:
            raise ValueError(
                f"embedding expects outputs (N, D) and labels (N,), got "
                f"{tuple(outputs.shape)} and {tuple(targets.shape)}"
            )
    elif outputs.dim() != 1 or targets.shape != outputs.shape:
        raise ValueError(
            f"{kind} expects outputs (N,) and targets (N,), got "
            f"{tuple(outputs.shape)} and {tuple(targets.shape)}"
        )
    if outputs.shape[0] == 0:
        raise ValueError("empty batch: outputs have no rows")


def _check_values(kind: str, outputs: Tensor, targets: Tensor) -> None:
    """Value checks that need a host sync: on for API users, off in lossbench's training loop."""
    if kind == "binary" and not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError("binary targets must be 0 or 1")
    if kind == "multiclass":
        n_classes = outputs.shape[1]
        if bool(((targets < 0) | (targets >= n_classes)).any()):
            raise ValueError(f"class indices must be in [0, {n_classes - 1}]")
    if not targets.is_floating_point():
        return
    if not bool(torch.isfinite(targets).all()):
        raise ValueError("targets contain NaN or inf")


class TaskLoss(nn.Module):
    """A registered loss seen through its task: forward(raw outputs, natural labels) -> loss."""

    def __init__(
        self, spec: LossSpec, kind: str, inner: nn.Module, check_values: bool = True
    ) -> None:
        super().__init__()
        self.spec, self.kind, self.inner, self.check_values = spec, kind, inner, check_values

    @property
    def name(self) -> str:
        return self.spec.name

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, task={self.kind!r}, input={self.spec.input!r}, " \
            f"target={self.spec.target!r}"

    def loss_input(self, outputs: Tensor) -> Tensor:
        kind, wanted = self.kind, self.spec.input
        if wanted == "raw":
            return outputs
        if kind == "binary":
            return torch.sigmoid(outputs) if wanted == "probs" else F.logsigmoid(outputs)
        if kind == "multiclass":
            return outputs.softmax(-1) if wanted == "probs" else outputs.log_softmax(-1)
        raise ValueError(f"input '{wanted}' has no meaning for task '{kind}'")

    def loss_target(self, targets: Tensor, outputs: Tensor) -> Tensor:
        wanted = self.spec.target
        if wanted == "labels":
            return targets
        if wanted == "index":
            return targets.long()
        if wanted == "onehot":
            return F.one_hot(targets.long(), outputs.shape[-1]).to(outputs.dtype)
        if wanted == "pm1":
            return targets.to(outputs.dtype) * 2 - 1
        return targets.to(outputs.dtype)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        _check_shapes(self.kind, outputs, targets)
        if self.check_values:
            _check_values(self.kind, outputs, targets)
        try:
            return self.inner(self.loss_input(outputs), self.loss_target(targets, outputs))
        except NotImplementedError as err:  # e.g. a CPU kernel torch lacks for float16
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ValueError(
                f"loss '{self.name}' does not support {outputs.dtype} outputs on "
                f"{outputs.device.type}: {first_line}"
            ) from err


def build_from_spec(
    spec: LossSpec, task: str, check_values: bool = True, **hparams: Any
) -> TaskLoss:
    """Check `hparams` against `spec`, build its module, and wrap it for task kind `task`."""
    kwargs = spec.check_params(hparams)
    try:
        inner = spec.factory(**kwargs)
    except (TypeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"loss '{spec.name}' could not be built: {first_line}") from None
    if not isinstance(inner, nn.Module):
        raise ValueError(
            f"loss '{spec.name}' gave {type(inner).__name__}, not a torch.nn.Module"
        )
    return TaskLoss(spec, task, inner, check_values=check_values)


def build_loss(name: str, task: str, check_values: bool = True, **hparams: Any) -> TaskLoss:
    """The loss `name` for task kind `task`, taking raw head outputs and natural labels.

    Hyperparameters are checked first; a bad one raises a one-line ValueError naming the
    allowed range. `check_values=False` skips checks that synchronise with the device.
    """
    return build_from_spec(spec_for(name, task), task, check_values, **hparams)
