"""Check a composed config before anything trains: one line per problem, naming what is allowed."""

from __future__ import annotations

from typing import Any

from lossbench.losses.registry import Param
from lossbench.task_kinds import TASK_KINDS


class ConfigError(ValueError):
    """Bad user input; the CLI prints its one-line message and exits non-zero."""


LOGGERS = ("wandb", "csv", "none")
WANDB_MODES = ("offline", "online", "disabled")

# Dotted config key -> the values it may take. Ranges only: every default lives in conf/*.yaml
# (Param's default stays None here, so the two cannot disagree).
RANGES: dict[str, Param] = {
    "seed": Param(None, low=0, high=2**32 - 1, kind="int"),  # scikit-learn's random_state
    "batch_size": Param(None, low=1, kind="int"),
    "threads": Param(None, low=0, kind="int"),
    "optimizer.lr": Param(None, low=0.0, low_open=True),
    "optimizer.weight_decay": Param(None, low=0.0),
    # momentum >= 1 (or a beta >= 1) only diverges; eps = 0 divides by zero
    "optimizer.momentum": Param(None, low=0.0, high=1.0, high_open=True),
    "optimizer.eps": Param(None, low=0.0, low_open=True),
    "optimizer.betas.0": Param(None, low=0.0, high=1.0, high_open=True),
    "optimizer.betas.1": Param(None, low=0.0, high=1.0, high_open=True),
    "divergence.loss_factor": Param(None, low=1.0, low_open=True, allow_none=True),
    "divergence.metric_factor": Param(None, low=1.0, low_open=True, allow_none=True),
    "retries": Param(None, low=0, kind="int"),
    "trainer.max_epochs": Param(None, low=1, kind="int"),
    "model.dropout": Param(None, low=0.0, high=1.0, high_open=True),
    "task.input_scale": Param(None, low=0.0, low_open=True),
    "task.val_size": Param(None, low=1, kind="int"),
    "task.val_fraction": Param(None, low=0.0, high=1.0, low_open=True, high_open=True),
    "task.test_fraction": Param(None, low=0.0, high=1.0, low_open=True, high_open=True),
}


_ABSENT = object()


def _get(cfg: dict[str, Any], dotted: str, absent: Any = None) -> Any:
    """The value at a dotted key (`optimizer.betas.0` indexes a list); `absent` when absent."""
    node: Any = cfg
    for key in dotted.split("."):
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return absent
    return node


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {key} '{value}' (choose from: {', '.join(allowed)})")


def _missing(node: Any, prefix: str = "") -> str | None:
    """The first key left at Hydra's mandatory `???`, dotted."""
    if isinstance(node, dict):
        for key, value in node.items():
            found = _missing(value, f"{prefix}{key}.")
            if found:
                return found
    elif node == "???":
        return prefix.rstrip(".")
    return None


MISSING_HINTS = {
    "loss._target_": "your nn.Module by import path, e.g. loss._target_=my_pkg.MyLoss",
    "task.path": "your file (task=table: CSV, TSV or Parquet) or folder of class subfolders "
                 "(task=image_folder), e.g. task.path=data.csv",
    "task.target": "the column to predict, e.g. task.target=price",
    "task.dataset": "an OpenML data id or name, e.g. task.dataset=31 or task.dataset=credit-g",
}


def validate_config(cfg: dict[str, Any]) -> None:
    """Raise ConfigError for the first problem in a resolved config (a plain dict)."""
    missing = _missing(cfg)
    if missing:
        hint = MISSING_HINTS.get(missing, f"e.g. {missing}=...")
        raise ConfigError(f"{missing} must be set: {hint}")
    if _get(cfg, "task.kind") == "auto" or _get(cfg, "loss.name") == "auto":
        from lossbench.data.sources import resolve_task

        resolve_task(cfg)  # kind=auto: the kind the data's target makes; loss=auto: its loss
    _choice("task kind", _get(cfg, "task.kind"), TASK_KINDS)
    _choice("logger", _get(cfg, "logger.name"), LOGGERS)
    if cfg["logger"]["name"] == "wandb":
        _choice("logger.mode", cfg["logger"].get("mode"), WANDB_MODES)
    for key, example in (("seed", 0), ("batch_size", 64), ("trainer.max_epochs", 10)):
        if _get(cfg, key, _ABSENT) is _ABSENT:  # `~trainer.max_epochs` said "KeyError: ..."
            raise ConfigError(f"{key} must be set, e.g. {key}={example}")
    for key, param in RANGES.items():
        value = _get(cfg, key, _ABSENT)  # an explicit null is checked (retries=null was 0)
        if value is not _ABSENT:
            try:
                param.check(key, value)
            except ValueError as err:
                raise ConfigError(str(err)) from None
    if _get(cfg, "loss.reduction") == "none":  # the registry's "none" is for library use
        raise ConfigError("loss.reduction must be mean or sum to train (none leaves one loss "
                          "per sample), got 'none'")
    betas = _get(cfg, "optimizer.betas")
    if betas is not None and (not isinstance(betas, list) or len(betas) != 2):
        raise ConfigError(f"optimizer.betas must be a list of two numbers in [0, 1), got {betas!r}")
    hidden = _get(cfg, "model.hidden_dims")
    if hidden is not None and (
        not isinstance(hidden, list)
        or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden)
    ):
        raise ConfigError(f"model.hidden_dims must be a list of positive integers, got {hidden!r}")
    if str(_get(cfg, "model._target_")) == "lossbench.models.MLP":  # else a KeyError in training
        from lossbench.models import ACTIVATIONS

        activation = _get(cfg, "model.activation")
        if activation is not None and (not isinstance(activation, str)
                                       or activation not in ACTIVATIONS):
            raise ConfigError(f"unknown model.activation {activation!r} "
                              f"(choose from: {', '.join(ACTIVATIONS)})")
    from lossbench.parts import check_parts

    check_parts(cfg)
    fractions = (_get(cfg, "task.val_fraction") or 0) + (_get(cfg, "task.test_fraction") or 0)
    if fractions >= 0.9:
        raise ConfigError(
            f"task.val_fraction + task.test_fraction must be < 0.9, got {fractions:g}"
        )
