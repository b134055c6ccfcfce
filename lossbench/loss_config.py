"""A loss config (conf/loss/*.yaml, or `loss._target_=`) -> the TaskLoss that trains with it."""

from __future__ import annotations

import importlib
from typing import Any

from lossbench.task_kinds import KINDS
from lossbench.validation import ConfigError

NATURAL_TARGET = {k: v.natural_target for k, v in KINDS.items()}


LOSS_META_KEYS = ("name", "label", "_target_", "input", "target", "tasks")


def _import_loss_class(path: str) -> type:
    from torch import nn

    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"loss._target_='{path}' cannot be imported ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"loss._target_='{path}' is not a torch.nn.Module subclass")
    return cls


def loss_label(loss_cfg: dict[str, Any]) -> str:
    """How results and reports name a loss: its label, a user class's name, or its name."""
    if loss_cfg.get("label"):
        return str(loss_cfg["label"])
    target = loss_cfg.get("_target_")
    if target and loss_cfg.get("name") in (None, "custom"):
        try:  # a class registered with @register_loss goes by its registered name
            return _import_loss_class(str(target)).lossbench_spec.name
        except (ConfigError, AttributeError):
            return str(target).rpartition(".")[2]
    return str(loss_cfg.get("name"))


def balanced_pos_weight(data: Any) -> float:
    """negatives / positives in the training split: BCE's pos_weight that evens the classes."""
    positives = float(data.y_train.sum())
    return (len(data.y_train) - positives) / max(positives, 1.0)


def loss_from_config(
    loss_cfg: dict[str, Any], kind: str, data: Any = None, check_values: bool = False
):
    """The TaskLoss a loss config names: a registered name, or a user's class by import path.

    `pos_weight: balanced` is computed from `data` (1.0 while only validating the config).
    """
    from lossbench.losses import LossSpec, build_loss
    from lossbench.losses.adapter import build_from_spec
    from lossbench.losses.registry import TASK_KINDS

    # null means "the loss's own default" (focal's alpha differs between binary and multiclass)
    hparams = {
        k: v for k, v in loss_cfg.items() if k not in LOSS_META_KEYS and v is not None
    }
    if hparams.get("pos_weight") == "balanced":
        hparams["pos_weight"] = balanced_pos_weight(data) if data is not None else 1.0
    try:
        target = loss_cfg.get("_target_")
        if not target:
            return build_loss(loss_cfg["name"], kind, check_values=check_values, **hparams)
        cls = _import_loss_class(target)
        spec = getattr(cls, "lossbench_spec", None) or LossSpec(
            name=loss_cfg.get("name") or cls.__name__, factory=cls,
            tasks=tuple(loss_cfg.get("tasks") or TASK_KINDS),
            input=loss_cfg.get("input") or "raw",
            target=loss_cfg.get("target") or NATURAL_TARGET[kind], open_params=True,
        )
        if kind not in spec.tasks:
            raise ConfigError(f"loss '{target}' does not fit task '{kind}' (fits: {spec.tasks})")
        return build_from_spec(spec, kind, check_values=check_values, **hparams)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from None
