"""One experiment, start to end: config in, trained and evaluated model, results.json out."""

from __future__ import annotations

import importlib
import logging
import os
import platform
import subprocess
import time
import traceback
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from lossbench.results import config_hash, find_complete, write_results
from lossbench.validation import ConfigError, validate_config

log = logging.getLogger(__name__)

NATURAL_TARGET = {
    "regression": "float", "binary": "float", "multiclass": "index",
    "embedding": "labels", "ranking": "float",
}
LOSS_META_KEYS = ("name", "label", "_target_", "input", "target", "tasks")


def to_plain(cfg: Any) -> dict[str, Any]:
    """A resolved plain dict of a DictConfig (or a dict), the form stored in results.json."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def _hydra_runtime() -> dict[str, Any] | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    return {
        "output_dir": hc.runtime.output_dir,
        "overrides": list(hc.overrides.task),
        "group": Path(hc.sweep.dir).name if multirun else None,
        "n_jobs": int(hc.launcher.get("n_jobs", 1) or 1) if multirun else 1,
    }


def output_dir_for(config: dict[str, Any], runtime: dict[str, Any] | None) -> Path:
    if config.get("output_dir"):
        return Path(config["output_dir"])
    if runtime:
        return Path(runtime["output_dir"])
    stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    return Path(config.get("out_root") or "outputs") / "runs" / f"{stamp}_{config['name']}"


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


def load_data(config: dict[str, Any]):
    """The task's splits as tensors (on the CPU; the caller moves them once)."""
    from lossbench.data.tabular import make_task_data

    task = config["task"]
    try:
        if task.get("source") == "torchvision":
            from lossbench.data.images import make_image_task_data

            return make_image_task_data(
                task["kind"], task["dataset"], config["seed"], task.get("val_size", 5000),
                task.get("data_dir"), task.get("download", True), perturb=config.get("perturb"),
            )
        return make_task_data(
            task["kind"], task["dataset"], config["seed"],
            task.get("val_fraction", 0.2), task.get("test_fraction", 0.2),
            perturb=config.get("perturb"), split=task.get("split", "samples"), options=task,
            input_scale=float(task.get("input_scale", 1.0)),
        )
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None


def quiet_lightning() -> None:
    """Silence Lightning's CPU chatter: availability lines, tips, worker and interval warnings."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*does not have many workers.*", ".*log_every_n_steps.*", ".*LeafSpec.*",
        ".*Trying to infer the `batch_size`.*", ".*TensorBatches.*", ".*train_dataloader.*",
        ".*`isinstance.*treespec.*", ".*torch.tensor results are registered.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def versions() -> dict[str, str]:
    import pytorch_lightning
    import torch

    from lossbench import __version__

    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "lightning": pytorch_lightning.__version__, "lossbench": __version__,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def set_threads(config: dict[str, Any], runtime: dict[str, Any] | None) -> int:
    """Torch threads for this job: jobs running side by side share the cores, never fight."""
    import torch

    threads = int(config.get("threads") or 0)
    if threads == 0:
        parallel = runtime["n_jobs"] if runtime else 1
        threads = max(1, (os.cpu_count() or 1) // max(parallel, 1))
    torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # scikit-learn's BLAS too: baselines must not oversubscribe
    return threads


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text and isinstance(err, ConfigError) else (
        f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    )


def run(cfg: Any) -> dict[str, Any]:
    """Train and evaluate one (task, loss, seed); write and return its results.

    Never raises for a failed run: the results say `failed` with a one-line `reason` (bad
    input included), so a sweep goes on. `HYDRA_FULL_ERROR=1` re-raises, for debugging.
    """
    import pytorch_lightning  # noqa: F401  (import time is process start, not this run's wall_s)

    start = time.perf_counter()
    config = to_plain(cfg)
    runtime = _hydra_runtime()
    out_dir = output_dir_for(config, runtime)
    results: dict[str, Any] = {
        "status": "failed", "reason": None,
        "task": config["task"].get("name"), "kind": config["task"].get("kind"),
        "dataset": config["task"].get("dataset"),
        "loss": loss_label(config["loss"]),
        "seed": config.get("seed"),
        "overrides": runtime["overrides"] if runtime else [],
        "config": config, "config_hash": config_hash(config),
        "output_dir": str(out_dir.resolve()),
    }
    logger = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise ConfigError(f"output folder {out_dir} is not writable")
        search = [out_dir]
        if config.get("resume"):
            search.append(Path(config.get("out_root") or "outputs"))
        previous = find_complete(search, results["config_hash"])
        if previous is not None:
            path, done = previous
            done = {**done, "resumed_from": str(path), "output_dir": results["output_dir"]}
            done.pop("schema", None)
            write_results(out_dir, done)
            return done
        validate_config(config)
        kind = config["task"]["kind"]
        try:
            loss_from_config(config["loss"], kind)  # bad input is refused before any data loads
        except ConfigError as err:
            if config.get("skip_unfit") and "does not fit task" in str(err):
                results.update(status="skipped", reason=str(err))
                return results
            raise
        results.update(_train(config, runtime, out_dir, results))
        logger = results.pop("_logger", None)
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        results["reason"] = _one_line(err)
        results["status"] = "failed"
        _finish_stray_wandb()
        log.info("run failed: %s\n%s", results["reason"], traceback.format_exc())
    finally:
        results["wall_s"] = round(time.perf_counter() - start, 3)
        results.pop("_logger", None)
        try:
            results["versions"] = versions()
        except Exception:
            results["versions"] = {"python": platform.python_version()}
        results["git"] = git_commit()
        try:
            write_results(out_dir, results)
        except OSError as err:
            results["status"] = "failed"
            results["reason"] = f"cannot write results in {out_dir}: {err.strerror or err}"
    from lossbench.loggers import close_logger

    close_logger(logger, _summary(results))
    return results


def _finish_stray_wandb() -> None:
    """A run that failed after wandb started must not leave its wandb run open for the next job."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=1)
        except Exception as err:
            log.warning("wandb could not finish a failed run: %s", err)


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    flat = {"status": results["status"], "wall_s": results.get("wall_s")}
    for which, metrics in (results.get("metrics") or {}).items():
        for key, value in (metrics or {}).items():
            flat[f"{which}/{key}"] = value
    return flat


def _train(
    config: dict[str, Any], runtime: dict[str, Any] | None, out_dir: Path,
    results: dict[str, Any],
) -> dict[str, Any]:
    """The training part of a run; returns the keys it adds to the results."""
    import pytorch_lightning as pl
    import torch

    from lossbench.data.batches import TensorBatches
    from lossbench.loggers import build_logger
    from lossbench.models import build_model
    from lossbench.module import LossbenchModule
    from lossbench.tasks import SELECTION, head_size, task_extras

    quiet_lightning()
    threads = set_threads(config, runtime)
    seed = int(config["seed"])
    kind = config["task"]["kind"]
    data = load_data(config)
    loss_fn = loss_from_config(config["loss"], kind, data)
    group = (runtime or {}).get("group") or config["task"]["name"]
    tags = [config["task"]["name"], config["loss"]["name"], *config.get("tags", [])]
    logger = build_logger(config["logger"], out_dir, config["name"], group, tags, config)
    trainer_cfg = config["trainer"]
    progress = trainer_cfg.get("progress_bar", "auto")
    if progress == "auto":
        import sys

        progress = sys.stderr.isatty() and not os.environ.get("CI")
    trainer = pl.Trainer(
        max_epochs=trainer_cfg["max_epochs"], accelerator=trainer_cfg.get("accelerator", "auto"),
        devices=trainer_cfg.get("devices", 1), precision=trainer_cfg.get("precision", "32-true"),
        gradient_clip_val=trainer_cfg.get("gradient_clip_val"),
        logger=logger if logger is not None else False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=bool(progress),
        num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=1_000_000,
        default_root_dir=str(out_dir),
    )
    device = trainer.strategy.root_device
    on_device = keep_on_device(config["task"].get("data_path", "auto"), data, device)
    if on_device:
        data = data.to(device)
    extras = task_extras(kind)
    pl.seed_everything(seed, workers=False, verbose=False)
    outputs = head_size(data, int(config["model"].get("embedding_dim", 32)))
    model = build_model(config["model"], data, outputs)
    if config.get("compile"):
        model = torch.compile(model)
    module = LossbenchModule(model, loss_fn, data, config["optimizer"])
    if config["task"].get("augment"):
        from lossbench.data.vision import augment_cifar

        generator = torch.Generator().manual_seed(seed)
        module.augment = lambda x: augment_cifar(x, generator)
    # Baselines see the untrained network (the embedding task scores it).
    baselines = extras.baselines(data, module) if extras.baselines else {}
    batch_size = int(config["batch_size"])
    if on_device:
        order = extras.batch_order(data, batch_size) if extras.batch_order else None
        batches = TensorBatches(data.x_train, data.y_train, batch_size, seed=seed, order=order)
    else:
        batches = streaming_loader(data, batch_size, seed, device)
    trainer.fit(module, train_dataloaders=batches)

    metrics: dict[str, Any] = {}
    if module.diverged_epoch is None:
        last = {**module.evaluate("val"), **module.evaluate("test")}
        metrics["last"] = {"epoch": trainer.current_epoch - 1, **_floats(last)}
    if module.best["state"] is not None:
        module.model.load_state_dict(module.best["state"])
        best = {**module.evaluate("val"), **module.evaluate("test")}
        metrics["best"] = {"epoch": module.best["epoch"], **_floats(best)}
    metric, mode = SELECTION[kind]
    diverged = module.diverged_epoch is not None
    return {
        "status": "diverged" if diverged else "ok",
        "reason": f"loss or weights became NaN/inf in epoch {module.diverged_epoch}"
        if diverged else None,
        "selection": {"metric": f"val/{metric}", "mode": mode},
        "perturb": data.perturb,
        "metrics": metrics,
        "baselines": baselines,
        "history": module.history,
        "epochs": len(module.history) + int(diverged),
        "diverged_epoch": module.diverged_epoch,
        "device": str(device), "threads": threads,
        "data_path": "device" if on_device else "stream",
        "_logger": logger,
    }


def keep_on_device(choice: str, data: Any, device: Any) -> bool:
    """Small data lives on the device as tensors (the fast path); large data streams."""
    if choice in ("device", "stream"):
        return choice == "device"
    if choice != "auto":
        raise ConfigError(f"task.data_path must be auto, device or stream, got '{choice}'")
    if not data.is_image:
        return True
    from lossbench.data.vision import fits_on_device

    return fits_on_device(data.nbytes(), device)


def streaming_loader(data: Any, batch_size: int, seed: int, device: Any):
    """A DataLoader with workers, pinned memory and persistent workers, for data that won't fit."""
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    # Whole batches are indexed at once (no per-sample collate): workers only slice tensors.
    sampler = BatchSampler(
        RandomSampler(data.x_train, generator=torch.Generator().manual_seed(seed)),
        batch_size=batch_size, drop_last=False,
    )
    workers = min(4, max(1, (os.cpu_count() or 1) - 1))
    return DataLoader(
        TensorDataset(data.x_train, data.y_train), sampler=sampler, batch_size=None,
        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=True,
    )


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    import torch

    names = list(metrics)
    values = torch.stack([metrics[n].float() for n in names]).tolist()
    return dict(zip(names, values, strict=True))
