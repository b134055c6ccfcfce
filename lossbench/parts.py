"""The parts a run is built of, each from a `_target_` config: model, optimizer, LR schedule,
Lightning callbacks. lossbench's own (mlp, cnn, resnet18; adam, adamw, sgd; cosine, step, ...)
are named configs of the same mechanism, so a user's class goes exactly where they go.

What lossbench adds to a config, because only it knows them: the model's input and output
sizes (`in_features`/`out_features`, or `in_channels`/`image_size`/`out_features` for
images), the parameters an optimizer updates, the steps a per-step schedule runs, and the
metric an early-stopping callback watches (the task's selection metric, the same for every
loss). Keys lossbench itself reads (`name`, `embedding_dim`, `interval`) are not passed on.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from lossbench.validation import ConfigError

# Config keys that are lossbench's, never constructor arguments.
OWN_KEYS = ("_target_", "_partial_", "name", "embedding_dim", "interval")


def import_target(path: str, key: str) -> Any:
    """The class or function a `_target_` names; one line when it cannot be imported."""
    module_name, _, attr = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{key}._target_='{path}' cannot be imported ({err})") from None


def arguments(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config's constructor arguments (lists as tuples: torch wants betas=(0.9, 0.999))."""
    return {
        k: tuple(v) if isinstance(v, list) and k == "betas" else v
        for k, v in cfg.items() if k not in OWN_KEYS
    }


def accepts(target: Any, name: str) -> bool:
    """Whether `target(...)` takes a keyword `name` (or any keyword, through **kwargs)."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def call(target: Any, key: str, args: dict[str, Any], *positional: Any) -> Any:
    """`target(*positional, **args)`; a wrong argument is one line naming what it takes."""
    try:
        return target(*positional, **args)
    except TypeError as err:
        try:
            takes = ", ".join(p for p in inspect.signature(target).parameters if p != "self")
        except (TypeError, ValueError):
            takes = "see its documentation"
        raise ConfigError(
            f"{key} {_name(target)} rejects its arguments ({err}); it takes: {takes}") from None
    except ValueError as err:  # torch's own range checks: "Invalid learning rate: -1"
        raise ConfigError(f"{key} {_name(target)}: {str(err).splitlines()[0]}") from None


def _name(target: Any) -> str:
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"


def qualified_name(cfg: dict[str, Any] | None) -> str | None:
    """What results.json records as the class a config instantiated."""
    return str(cfg["_target_"]) if cfg and cfg.get("_target_") else None


# --- model -------------------------------------------------------------------------------------


def build_model(cfg: dict[str, Any], data: Any, out_features: int) -> Any:
    """The model `model._target_` names, sized for the data and the task's head.

    Image models receive uint8 images normalised inside the model; a model that takes
    `in_features` but not `in_channels` (an MLP) gets them flattened."""
    from torch import nn

    from lossbench.models import NormalizeImages

    target = import_target(cfg.get("_target_"), "model")
    if not callable(target):
        raise ConfigError(f"model._target_='{cfg.get('_target_')}' is not callable")
    args = model_arguments(cfg, target)
    if not data.is_image:
        if not accepts(target, "in_features"):
            raise ConfigError(
                f"model {cfg.get('name') or _name(target)} needs image data (it takes no "
                f"in_features); use model=mlp for {data.dataset}")
        model = call(target, "model", {
            "in_features": data.num_features, "out_features": out_features, **args})
        return _checked(model, cfg)
    channels, height, width = data.x_train.shape[1:]
    flatten = not accepts(target, "in_channels")
    sizes = {"out_features": out_features}
    if flatten:
        sizes["in_features"] = channels * height * width
    else:
        sizes["in_channels"] = channels
        if accepts(target, "image_size"):
            sizes["image_size"] = (height, width)
    model = _checked(call(target, "model", {**sizes, **args}), cfg)
    return nn.Sequential(NormalizeImages(data.input_mean, data.input_std, flatten), model)


def model_arguments(cfg: dict[str, Any], target: Any) -> dict[str, Any]:
    """The model config's constructor arguments. `model._target_=my.Net` on top of the default
    mlp config leaves the mlp's own keys (hidden_dims, ...) in place: those the class does not
    take are left out. Every other key is the user's and goes through, so a misspelt one
    fails in one line."""
    from importlib import resources

    import yaml

    args = arguments(cfg)
    named = resources.files("lossbench.conf").joinpath(f"model/{cfg.get('name')}.yaml")
    if not named.is_file():
        return args
    own = yaml.safe_load(named.read_text()) or {}
    if own.get("_target_") == cfg.get("_target_"):
        return args
    return {k: v for k, v in args.items() if k not in own or accepts(target, k)}


def _checked(model: Any, cfg: dict[str, Any]) -> Any:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise ConfigError(f"model._target_='{cfg.get('_target_')}' made a "
                          f"{type(model).__name__}, not a torch.nn.Module")
    return model


# --- optimizer ---------------------------------------------------------------------------------


def optimizer_class(cfg: dict[str, Any]) -> Any:
    import torch

    target = import_target(cfg.get("_target_") or "", "optimizer")
    if not (isinstance(target, type) and issubclass(target, torch.optim.Optimizer)):
        raise ConfigError(
            f"optimizer._target_='{cfg.get('_target_')}' is not a torch.optim.Optimizer")
    return target


def build_optimizer(params: Any, cfg: dict[str, Any]) -> Any:
    """The optimizer `optimizer._target_` names (`_partial_`: its params come from here)."""
    return call(optimizer_class(cfg), "optimizer", arguments(cfg), params)


# --- learning-rate schedule --------------------------------------------------------------------

INTERVALS = ("epoch", "step")


def build_scheduler(
    cfg: dict[str, Any] | None, optimizer: Any, steps_per_epoch: int, max_epochs: int,
    mode: str = "min",
) -> tuple[Any, str] | None:
    """The schedule `scheduler._target_` names and whether it steps per `epoch` or `step`;
    None for `scheduler=none`. A per-step schedule's `total_steps` is filled in when unset,
    and a metric-driven one (plateau) left at `mode: null` follows the selection metric."""
    if not cfg or not cfg.get("_target_"):
        return None
    interval = cfg.get("interval", "epoch")
    if interval not in INTERVALS:
        raise ConfigError(f"scheduler.interval must be epoch or step, got {interval!r}")
    target = import_target(cfg["_target_"], "scheduler")
    args = arguments(cfg)
    if accepts(target, "total_steps") and args.get("total_steps") is None \
            and "epochs" not in args:
        args["total_steps"] = steps_per_epoch * max_epochs if interval == "step" else max_epochs
    if accepts(target, "mode") and "mode" in args and args["mode"] is None:
        args["mode"] = mode
    return call(target, "scheduler", args, optimizer), interval


def reacts_to_metric(scheduler: Any) -> bool:
    """ReduceLROnPlateau and its kind step on a metric value, the others on a count."""
    import torch

    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


# --- callbacks ---------------------------------------------------------------------------------


def build_callbacks(cfg: dict[str, Any] | None, monitor: str, mode: str) -> list[Any]:
    """Lightning callbacks, one per entry of the `callbacks` node; an early-stopping callback
    left at `monitor: null` watches the task's selection metric on validation."""
    import pytorch_lightning as pl

    built = []
    for key, node in (cfg or {}).items():
        if not isinstance(node, dict) or not node.get("_target_"):
            raise ConfigError(f"callbacks.{key} needs a _target_ (a pytorch_lightning Callback)")
        target = import_target(node["_target_"], f"callbacks.{key}")
        args = arguments(node)
        if accepts(target, "monitor") and args.get("monitor", "absent") is None:
            args["monitor"] = monitor
            if accepts(target, "mode") and args.get("mode") is None:
                args["mode"] = mode
        callback = call(target, f"callbacks.{key}", args)
        if not isinstance(callback, pl.Callback):
            raise ConfigError(f"callbacks.{key}._target_='{node['_target_']}' is not a "
                              "pytorch_lightning Callback")
        built.append(callback)
    return built


BATCH_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad",
)


def wants_batch_hooks(callbacks: list[Any]) -> bool:
    """Whether a callback overrides a per-batch hook. On-device data normally runs a whole
    epoch in one Lightning step (its per-batch machinery costs more than a small model's
    step), so such a callback gets one Lightning step per batch instead, hooks and all.
    Lightning's EarlyStopping and LearningRateMonitor (per epoch) need no per-batch hooks."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor

    for callback in callbacks:
        if isinstance(callback, EarlyStopping | LearningRateMonitor):
            continue
        if any(getattr(type(callback), hook) is not getattr(pl.Callback, hook)
               for hook in BATCH_HOOKS):
            return True
    return False


def stopped_early(callbacks: list[Any]) -> dict[str, Any] | None:
    """Which early-stopping callback ended the run and in which epoch (None: it ran out)."""
    from pytorch_lightning.callbacks import EarlyStopping

    for callback in callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            return {"epoch": int(callback.stopped_epoch), "monitor": callback.monitor,
                    "patience": int(callback.patience),
                    "min_delta": abs(float(callback.min_delta))}
    return None


def check_parts(config: dict[str, Any]) -> None:
    """Everything about the parts that can be checked without data, before any data loads or
    wandb starts: the model imports, the optimizer and schedule build over a dummy weight
    (torch's own range checks included), the callbacks build."""
    import torch

    model = config.get("model") or {}
    if not model.get("_target_"):
        raise ConfigError("model._target_ must be set: a torch.nn.Module class, e.g. "
                          "model._target_=my_models.Net (or model=mlp|cnn|resnet18)")
    import_target(model["_target_"], "model")
    optimizer_cfg = config.get("optimizer") or {}
    optimizer = build_optimizer([torch.zeros(1, requires_grad=True)], optimizer_cfg)
    epochs = int((config.get("trainer") or {}).get("max_epochs") or 1)
    built = build_scheduler(config.get("scheduler"), optimizer, 1, epochs)
    if built is not None:  # some arguments fail only when stepped (StepLR's step_size=0)
        scheduler = built[0]
        try:
            optimizer.step()
            scheduler.step(0.0) if reacts_to_metric(scheduler) else scheduler.step()
        except Exception as err:
            raise ConfigError(f"scheduler {config['scheduler']['_target_']} fails on its first "
                              f"step ({type(err).__name__}: {err}); check its arguments") from None
    callbacks = build_callbacks(config.get("callbacks"), "val/metric", "min")
    from pytorch_lightning.callbacks import LearningRateMonitor

    logger = (config.get("logger") or {}).get("name")
    if logger == "none" and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        raise ConfigError("callbacks=lr_monitor logs to a logger: use logger=wandb or csv "
                          "(results.json records train/lr each epoch either way)")


def instantiated(config: dict[str, Any]) -> dict[str, Any]:
    """The classes a run was built of (model, optimizer, schedule, callbacks), by import path."""
    return {
        "model": qualified_name(config.get("model")),
        "optimizer": qualified_name(config.get("optimizer")),
        "scheduler": qualified_name(config.get("scheduler")),
        "callbacks": {k: qualified_name(v) for k, v in (config.get("callbacks") or {}).items()},
    }
