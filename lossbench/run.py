"""One experiment, start to end: config in, trained and evaluated model, results.json out."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossbench.data.loading import keep_on_device, load_data, streaming_loader
from lossbench.environment import (
    git_commit,
    hydra_runtime,
    output_dir_for,
    quiet_lightning,
    set_threads,
    to_plain,
    versions,
)
from lossbench.loss_config import loss_from_config, loss_label
from lossbench.results import FINISHED, config_hash, find_complete, write_results
from lossbench.validation import ConfigError, validate_config

log = logging.getLogger(__name__)


def one_line_reason(err: BaseException) -> str:
    """Bad input speaks for itself; anything else is prefixed with its exception type."""
    text = str(err).strip().splitlines()
    if text and isinstance(err, ConfigError):
        return text[0]
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def base_results(
    config: dict[str, Any], runtime: dict[str, Any] | None, out_dir: Path
) -> dict[str, Any]:
    """What results.json says of a run before it trains (a failed run keeps just this)."""
    return {
        "status": "failed", "reason": None,
        "task": config["task"].get("name"), "kind": config["task"].get("kind"),
        "dataset": config["task"].get("dataset"),
        "loss": loss_label(config["loss"]),
        "seed": config.get("seed"),
        "overrides": runtime["overrides"] if runtime else [],
        "config": config, "config_hash": config_hash(config),
        "output_dir": str(out_dir.resolve()),
    }


def reuse_finished(config: dict[str, Any], out_dir: Path, digest: str) -> dict[str, Any] | None:
    """A finished run of the same config (this folder, or anywhere under out_root with resume),
    copied into this folder so the sweep folder is complete; None when there is none."""
    previous = find_complete([out_dir], digest)
    root = Path(config.get("out_root") or "outputs")
    if previous is None and config.get("resume") and root.is_dir():
        previous = FINISHED.find(root, digest)  # out_root scanned once per process
    if previous is None:
        return None
    path, done = previous
    done = {k: v for k, v in done.items() if k != "schema"}
    done.update(resumed_from=str(path), output_dir=str(out_dir.resolve()))
    write_results(out_dir, done)
    return done


def save(
    out_dir: Path, results: dict[str, Any], wall_s: float, stack: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stamp wall time, versions and commit (and the stack a job trained in), then write
    results.json atomically."""
    results["wall_s"] = round(wall_s, 3)
    try:
        results["versions"] = versions()
    except Exception:  # a broken install must not cost the results
        results["versions"] = {"python": platform.python_version()}
    results["git"] = git_commit()
    if stack is not None:
        results["stack"] = stack
    try:
        write_results(out_dir, results)
    except OSError as err:
        results["status"] = "failed"
        results["reason"] = f"cannot write results in {out_dir}: {err.strerror or err}"
    return results


def is_rank_zero() -> bool:
    """False in the extra processes a DDP run starts (they train, but write nothing)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


@dataclass
class Job:
    """One job on its way through the pipeline: its config, Hydra job, folder and results."""

    config: dict[str, Any]
    runtime: dict[str, Any] | None
    out_dir: Path
    results: dict[str, Any]
    logger: Any = None
    done: bool = False  # reused, skipped or failed before training: nothing left to do


def run(cfg: Any) -> dict[str, Any]:
    """Train and evaluate one (task, loss, seed); write and return its results.

    Never raises for a failed run: the results say `failed` with a one-line `reason` (bad
    input included), so a sweep goes on. `HYDRA_FULL_ERROR=1` re-raises, for debugging.
    An interrupted run (Ctrl-C) writes nothing, so resume runs it again.
    """
    return run_jobs([(to_plain(cfg), hydra_runtime())])[0]


def run_jobs(
    jobs: Sequence[tuple[dict[str, Any], dict[str, Any] | None]],
) -> list[dict[str, Any]]:
    """The job pipeline: skeleton, reuse, checks, training, save and logger, once for all.

    Each job is a resolved config and its Hydra job (None outside Hydra). Jobs that can
    share a stack (lossbench.stack_plan.stack_key, once task.kind=auto is read) and whose
    data turn out to have equal shapes train as one stack (lossbench.stack), each with its
    own results; their `wall_s` is their share of the stack's wall time (`stack` says so).
    Every other job trains alone (`_train`), and so does each job of a stack that failed as
    a whole. A single run is the one-job case.
    """
    import pytorch_lightning  # noqa: F401  (import time is process start, not this run's wall_s)

    start = time.perf_counter()
    prepared = [_prepare(config, runtime) for config, runtime in jobs]
    for job in prepared:
        _admit(job, start)
    pending = [job for job in prepared if not job.done]
    alone = _train_stacks(pending) if len(pending) > 1 else pending
    for job in alone:
        _train_alone(job, start if len(pending) == 1 else time.perf_counter())
    return [job.results for job in prepared]


def _train_stacks(pending: list[Job]) -> list[Job]:
    """Train the jobs that can stack, in stacks of equal data shapes; the jobs left over."""
    from lossbench.stack import data_shape
    from lossbench.stack_plan import stack_key

    by_key: dict[str | None, list[Job]] = {}
    for job in pending:
        by_key.setdefault(stack_key(job.config), []).append(job)
    alone = by_key.pop(None, [])
    loaded_data: dict[str, Any] = {}  # members of one task, seed and perturbation: one load
    for group in by_key.values():
        by_shape: dict[Any, list[tuple[Job, Any, float]]] = {}
        for job in group:
            loaded = time.perf_counter()
            which = json.dumps([job.config["task"], job.config["seed"],
                                job.config.get("perturb")], sort_keys=True, default=str)
            try:
                if which not in loaded_data:
                    loaded_data[which] = load_data(job.config)
                data = loaded_data[which]
            except Exception:  # it fails again alone, with its own reason and retries
                alone.append(job)
                continue
            shape = data_shape(data, job.config)
            by_shape.setdefault(shape, []).append((job, data, time.perf_counter() - loaded))
        for members in by_shape.values():
            if len(members) == 1:
                alone.append(members[0][0])
                continue
            alone.extend(_train_stack(members))
    alone.sort(key=pending.index)
    return alone


def _train_stack(members: list[tuple[Job, Any, float]]) -> list[Job]:
    """Train jobs (with their loaded data) as one stack, save each and log each; the jobs to
    train one by one instead when the stack failed as a whole."""
    from lossbench.stack import replay_history, train_stack

    start = time.perf_counter() - sum(loading for _, _, loading in members)
    jobs = [job for job, _, _ in members]
    try:
        train_stack(jobs, [data for _, data, _ in members])
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        finish_stray_wandb()
        log.warning("a stack of %d jobs failed (%s); training them one by one", len(jobs),
                    one_line_reason(err))
        for job in jobs:
            job.results = base_results(job.config, job.runtime, job.out_dir)
        return jobs
    total = time.perf_counter() - start
    stack = {"members": len(jobs), "wall_s_total": round(total, 3), "wall_s_is_share": True}
    for job in jobs:
        save(job.out_dir, job.results, total / len(jobs), stack)
    for job in jobs:
        replay_history(job)
    return []


def _prepare(config: dict[str, Any], runtime: dict[str, Any] | None) -> Job:
    out_dir = output_dir_for(config, runtime)
    return Job(config, runtime, out_dir, base_results(config, runtime, out_dir))


def _admit(job: Job, start: float) -> None:
    """Reuse a finished run, or check the job before any data loads; `done` unless it trains."""
    config, results = job.config, job.results
    try:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(job.out_dir, os.W_OK):
            raise ConfigError(f"output folder {job.out_dir} is not writable")
        finished = reuse_finished(config, job.out_dir, results["config_hash"])
        if finished is not None:
            job.results, job.done = finished, True
            return
        validate_config(config)  # resolves task.kind=auto and loss=auto in place
        results.update(kind=config["task"]["kind"], loss=loss_label(config["loss"]))
        try:
            loss_from_config(config["loss"], config["task"]["kind"])  # refuse before data loads
        except ConfigError as err:
            if not (config.get("skip_unfit") and "does not fit task" in str(err)):
                raise
            results.update(status="skipped", reason=str(err))
            save(job.out_dir, results, time.perf_counter() - start)
            job.done = True
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _fail(job, err)
        if is_rank_zero():
            save(job.out_dir, results, time.perf_counter() - start)
        job.done = True


def _fail(job: Job, err: BaseException) -> None:
    job.results.update(status="failed", reason=one_line_reason(err))
    finish_stray_wandb()
    log.info("run failed: %s\n%s", job.results["reason"], traceback.format_exc())


def _train_alone(job: Job, start: float) -> None:
    """Train one job with its own module and Trainer, save it, close its logger."""
    try:
        trained, job.logger = _train_with_retries(job.config, job.runtime, job.out_dir,
                                                  job.results)
        job.results.update(trained)
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _fail(job, err)
    if is_rank_zero():  # under DDP every process runs this; one writes
        save(job.out_dir, job.results, time.perf_counter() - start)
    from lossbench.loggers import close_logger

    close_logger(job.logger, wandb_summary(job.results))


def _train_with_retries(
    config: dict[str, Any], runtime: dict[str, Any] | None, out_dir: Path,
    results: dict[str, Any],
) -> tuple[dict[str, Any], Any]:
    """`_train`, run again after a failure up to `retries` times (a flaky file system, a
    preempted device). Bad input is never retried, and a diverged run is a result, not a
    failure. results["attempts"] records how many tries it took; the last error is raised."""
    tries = int(config.get("retries") or 0) + 1
    for attempt in range(1, tries + 1):
        results["attempts"] = attempt
        try:
            return _train(config, runtime, out_dir)
        except ConfigError:
            raise
        except Exception as err:
            if attempt == tries or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            finish_stray_wandb()
            # run.log, not the console: a failed run's console says one line, its reason
            log.info("attempt %d of %d failed (%s); trying again", attempt, tries,
                     one_line_reason(err))
    raise AssertionError("unreachable")


def finish_stray_wandb() -> None:
    """A run that failed after wandb started must not leave its wandb run open for the next job."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=1)
        except Exception as err:
            log.warning("wandb could not finish a failed run: %s", err)


def wandb_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The figures a wandb run's summary shows: status, wall time, best/last metrics."""
    flat = {"status": results["status"], "wall_s": results.get("wall_s")}
    for which, metrics in (results.get("metrics") or {}).items():
        for key, value in (metrics or {}).items():
            flat[f"{which}/{key}"] = value
    return flat


def build_trainer(
    config: dict[str, Any], logger: Any, out_dir: Path, callbacks: list[Any] | None = None,
):
    """Lightning's Trainer, lean for small data: no checkpoint files, no sanity or val loops
    (validation runs inside the module, once per epoch), no model summary. The modules use
    manual optimization and clip their own gradients (Lightning refuses to)."""
    import pytorch_lightning as pl

    cfg = config["trainer"]
    progress = cfg.get("progress_bar", "auto")
    if progress == "auto":
        import sys

        progress = sys.stderr.isatty() and not os.environ.get("CI")
    trainer = pl.Trainer(
        max_epochs=cfg["max_epochs"], accelerator=cfg.get("accelerator", "auto"),
        devices=cfg.get("devices", 1), precision=cfg.get("precision", "32-true"),
        strategy=cfg.get("strategy", "auto"),
        logger=logger if logger is not None else False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=bool(progress),
        num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=1_000_000,
        default_root_dir=str(out_dir), callbacks=callbacks or [],
    )
    if trainer.strategy.root_device.type == "cpu":
        # Lightning sets this on import; with it every optimizer step's CUDA check probes NVML
        # (a dlopen on a machine without a driver, ~0.1 ms a step): not for a CPU run.
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    return trainer


def fit(trainer: Any, module: Any, batches: Any) -> None:
    """`trainer.fit`, with Ctrl-C kept a KeyboardInterrupt: Lightning turns it into exit(1)
    after its own shutdown, which would end a sweep with no word on how far it got."""
    try:
        trainer.fit(module, train_dataloaders=batches)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def best_and_last(module: Any, last_epoch: int) -> dict[str, Any]:
    """Test (and val) metrics of the last weights and of the best-validation weights."""
    record = module.record
    last = best = None
    if record.alive:
        last = _floats({**module.evaluate("val"), **module.evaluate("test")})
    if record.best["state"] is not None:
        module.model.load_state_dict(record.best["state"])
        best = _floats({**module.evaluate("val"), **module.evaluate("test")})
    return record.final_metrics(last_epoch, last, best)


def _train(
    config: dict[str, Any], runtime: dict[str, Any] | None, out_dir: Path
) -> tuple[dict[str, Any], Any]:
    """The training part of a run: the keys it adds to the results, and its logger."""
    import pytorch_lightning as pl
    import torch

    from lossbench.data.batches import OncePerEpoch, TensorBatches
    from lossbench.module import LossbenchModule
    from lossbench.parts import build_callbacks, build_model, stopped_early, wants_batch_hooks
    from lossbench.tasks import SELECTION, head_size, task_extras

    quiet_lightning()
    if runtime and runtime["group"] and "ddp" in str(config["trainer"].get("strategy")):
        raise ConfigError("trainer=ddp spreads one run over several devices; not inside a sweep")
    threads = set_threads(config, runtime)
    seed, kind = int(config["seed"]), config["task"]["kind"]
    data = load_data(config)
    loss_fn = loss_from_config(config["loss"], kind, data)
    logger = job_logger(config, runtime, out_dir)
    metric, mode = SELECTION[kind]
    callbacks = build_callbacks(config.get("callbacks"), f"val/{metric}", mode)
    trainer = build_trainer(config, logger, out_dir, callbacks=callbacks)
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
    module = LossbenchModule(
        model, loss_fn, data, config["optimizer"], divergence=config.get("divergence"),
        scheduler=config.get("scheduler"))
    module.gradient_clip_val = config["trainer"].get("gradient_clip_val")
    if config["task"].get("augment"):
        from lossbench.data.vision import augment_cifar

        generator = torch.Generator().manual_seed(seed)
        module.augment = lambda x: augment_cifar(x, generator)
    # Baselines see the untrained network (the embedding task scores it).
    baselines = extras.baselines(data, module) if extras.baselines else {}
    batch_size = int(config["batch_size"])
    order = extras.batch_order(data, batch_size) if extras.batch_order else None
    if on_device:
        batches = TensorBatches(
            data.x_train, data.y_train, batch_size, seed=seed, order=order,
            rank=trainer.global_rank, world_size=trainer.world_size,
        )
        # DDP needs one forward per backward, and a callback with per-batch hooks wants them:
        # batch by batch. Otherwise one Lightning step walks the whole epoch.
        if trainer.world_size == 1 and not wants_batch_hooks(callbacks):
            module.epoch_batches, batches = batches, OncePerEpoch()
    else:
        batches = streaming_loader(data, batch_size, seed, device, order)
    module.steps_per_epoch = len(module.epoch_batches or batches)
    module.publish_metrics = bool(callbacks)
    fit(trainer, module, batches)

    results = module.record.results(
        data, best_and_last(module, trainer.current_epoch - 1), baselines, config,
        stopped_early(callbacks))
    return {**results, "device": str(device), "threads": threads,
            "data_path": "device" if on_device else "stream"}, logger


def job_logger(config: dict[str, Any], runtime: dict[str, Any] | None, out_dir: Path) -> Any:
    """The job's experiment logger (None for logger=none): named after the run, grouped by
    the sweep folder (or the task), tagged with task and loss."""
    from lossbench.loggers import build_logger

    group = (runtime or {}).get("group") or config["task"]["name"]
    tags = [config["task"]["name"], config["loss"]["name"], *config.get("tags", [])]
    return build_logger(config["logger"], out_dir, config["name"], group, tags, config)


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    import torch

    names = list(metrics)
    values = torch.stack([metrics[n].float() for n in names]).tolist()
    return dict(zip(names, values, strict=True))
