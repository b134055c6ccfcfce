"""Several seeds of one configuration trained at once, in one process, as one vectorised model.

A 5-seed comparison of a loss on a tabular task costs five runs of fixed overhead (process,
imports, Trainer, a Python-bound step loop of tiny matrix products). Here K seeds share one
Trainer and one step loop: the K models' weights are stacked along a leading seed axis and
run through `torch.func.vmap` + `functional_call`, so a step costs one vectorised forward and
backward instead of K.

Each seed keeps everything a separate `lossbench.run.run` of that seed would have: its own
split (the data are loaded per seed; equal sizes stack into (K, N, F)), its own
initialisation (`pl.seed_everything(seed)` right before `build_model`), its own batch order
(a `TensorBatches` per seed), its own loss module (a balanced `pos_weight` depends on the
split), its own best-validation weights, and its own divergence: a seed whose weights or loss
turn NaN/inf is recorded as diverged at that epoch and frozen (weights, optimizer state and
loss zeroed), while the others go on. One optimizer over the stacked weights equals K
optimizers, because Adam, AdamW and SGD are elementwise and the summed loss gives each
model exactly its own gradient; gradient clipping is done per seed.

With dropout 0 the results match separate runs of the same seeds up to float rounding. Each
seed writes its own results.json (the same keys as `run`, plus `multiseed`) into
`<root>/<name>`, where `<name>` is the seed's resolved run name (`multiclass-ce-s0` by
default, the suffix a single run's folder has) and `<root>` is `output_dir`, Hydra's job
folder, or `<out_root>/runs/<time>_<task>-<loss>-seeds<...>`. Only tabular tasks
(regression, binary, multiclass) are supported; `compile` is ignored. Experiment loggers
(csv, wandb) get each seed's history after training, one logger run per seed.
"""

from __future__ import annotations

import copy
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lossbench.data.batches import TensorBatches
from lossbench.data.loading import load_data
from lossbench.data.tabular import TaskData
from lossbench.divergence import DivergenceRule, trivial_val_error
from lossbench.divergence import reason as divergence_reason
from lossbench.environment import (
    git_commit,
    hydra_runtime,
    quiet_lightning,
    set_threads,
    to_plain,
    versions,
)
from lossbench.loss_config import loss_from_config
from lossbench.parts import build_optimizer, build_scheduler
from lossbench.results import config_hash, find_complete, write_results
from lossbench.run import (
    build_trainer,
    finish_stray_wandb,
    fit,
    one_line_reason,
    wandb_summary,
)
from lossbench.tasks import SELECTION, compute_metrics, head_size, is_better, squeeze_head
from lossbench.validation import ConfigError, validate_config

SUPPORTED_KINDS = ("regression", "binary", "multiclass")


@dataclass
class SeedRun:
    """One seed's config, folder and results, filled in as the shared run proceeds."""

    seed: int
    config: dict[str, Any]
    out_dir: Path
    results: dict[str, Any] = field(default_factory=dict)


def run_seeds(cfg: Any, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Train `cfg` once per seed, all seeds at once; write and return one results dict each.

    Like `run`, a failure is recorded in every seed's results (status `failed`, one-line
    `reason`) rather than raised; an unsupported task kind raises ValueError before anything
    is written. A seed whose complete results already lie in its folder (or, with
    `resume=true`, anywhere under `out_root`) is reused, not trained again.
    """
    start = time.perf_counter()
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    base = to_plain(cfg)
    _check_supported(base)
    runtime = hydra_runtime()
    runs = _prepare_runs(cfg, seeds, runtime)
    pending = [r for r in runs if not _reuse(r)]
    try:
        if pending:
            _validate_and_train(pending, runtime)
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        finish_stray_wandb()
        for r in pending:
            r.results.update(status="failed", reason=one_line_reason(err))
    finally:
        total = time.perf_counter() - start
        for r in pending:
            _finish(r, total, [p.seed for p in pending], len(pending))
    for r in pending:
        if r.results["status"] in ("ok", "diverged"):
            _replay_history(_logger(r, runtime), r.results)
    return [r.results for r in runs]


def _check_supported(config: dict[str, Any]) -> None:
    if config.get("callbacks"):
        raise ValueError("callbacks (early stopping) stop each run on its own metric: not with "
                         "seeds=; sweep seed=0,1,2 instead")
    if "Plateau" in str((config.get("scheduler") or {}).get("_target_")):
        raise ValueError("scheduler=plateau follows each run's own metric: not with seeds=; "
                         "sweep seed=0,1,2 instead")
    kind = config["task"].get("kind")
    if kind not in SUPPORTED_KINDS or config["task"].get("source") == "torchvision":
        raise ValueError(
            f"seeds= trains tabular tasks ({', '.join(SUPPORTED_KINDS)}) together, "
            f"not task '{config['task'].get('name')}'; sweep seed=0,1,2 instead"
        )


def seed_config(cfg: Any, seed: int) -> dict[str, Any]:
    """The resolved config `run` would get for `seed`: interpolations (the name) follow it."""
    from omegaconf import DictConfig, open_dict

    if isinstance(cfg, DictConfig):
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.seed = seed
        return to_plain(cfg)
    config = {**copy.deepcopy(dict(cfg)), "seed": seed}
    suffix = f"-s{cfg.get('seed')}"  # a resolved default name, `<task>-<loss>-s<seed>`
    if str(config.get("name", "")).endswith(suffix):
        config["name"] = f"{config['name'][: -len(suffix)]}-s{seed}"
    return config


def _root_dir(config: dict[str, Any], seeds: list[int], runtime: dict[str, Any] | None) -> Path:
    """Where the seeds' folders go: output_dir, Hydra's job folder, or a new folder of runs."""
    if config.get("output_dir"):
        return Path(config["output_dir"])
    if runtime:
        return Path(runtime["output_dir"])
    stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    label = config["loss"].get("name")
    name = f"{config['task']['name']}-{label}-seeds{'_'.join(map(str, seeds))}"
    return Path(config.get("out_root") or "outputs") / "runs" / f"{stamp}_{name}"


def _prepare_runs(cfg: Any, seeds: list[int], runtime: dict[str, Any] | None) -> list[SeedRun]:
    """Per seed: its config, its folder, and the results skeleton `run` starts from."""
    configs = [seed_config(cfg, s) for s in seeds]
    root = _root_dir(configs[0], seeds, runtime)
    names = [str(c.get("name") or "").replace(os.sep, "_") for c in configs]
    if len(set(names)) < len(names) or not all(names):
        names = [f"seed{s}" for s in seeds]
    runs = []
    for seed, config, name in zip(seeds, configs, names, strict=True):
        out_dir = root / name
        config = {**config, "output_dir": str(out_dir)}  # rerunning this config lands here
        runs.append(SeedRun(seed, config, out_dir, _skeleton(config, runtime, out_dir)))
    return runs


def _skeleton(
    config: dict[str, Any], runtime: dict[str, Any] | None, out_dir: Path,
) -> dict[str, Any]:
    overrides = [o for o in (runtime or {}).get("overrides", []) if not o.startswith("seed=")]
    return {
        "status": "failed", "reason": None,
        "task": config["task"].get("name"), "kind": config["task"].get("kind"),
        "dataset": config["task"].get("dataset"),
        "loss": config["loss"].get("label") or config["loss"].get("name"),
        "seed": config.get("seed"),
        "overrides": [*overrides, f"seed={config['seed']}"] if runtime else [],
        "config": config, "config_hash": config_hash(config),
        "output_dir": str(out_dir.resolve()),
    }


def _reuse(r: SeedRun) -> bool:
    """Take a finished run of the same config instead of training it (as `run` does)."""
    search = [r.out_dir]
    if r.config.get("resume"):
        search.append(Path(r.config.get("out_root") or "outputs"))
    previous = find_complete(search, r.results["config_hash"])
    if previous is None:
        return False
    path, done = previous
    done = {**done, "resumed_from": str(path), "output_dir": r.results["output_dir"]}
    done.pop("schema", None)
    write_results(r.out_dir, done)
    r.results = done
    return True


def _validate_and_train(pending: list[SeedRun], runtime: dict[str, Any] | None) -> None:
    """Check the config as `run` does (bad input fails before any data loads), then train."""
    for r in pending:
        r.out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(r.out_dir, os.W_OK):
            raise ConfigError(f"output folder {r.out_dir} is not writable")
        validate_config(r.config)
    config = pending[0].config
    try:
        loss_from_config(config["loss"], config["task"]["kind"])
    except ConfigError as err:
        if config.get("skip_unfit") and "does not fit task" in str(err):
            for r in pending:
                r.results.update(status="skipped", reason=str(err))
            return
        raise
    _train(pending, runtime)


def _finish(r: SeedRun, total: float, trained: list[int], k: int) -> None:
    """Wall time shared out, versions, git; then the seed's results.json."""
    r.results["wall_s"] = round(total / k, 3)
    try:
        r.results["versions"] = versions()
    except Exception:
        r.results["versions"] = {"python": platform.python_version()}
    r.results["git"] = git_commit()
    r.results["multiseed"] = {"seeds": trained, "wall_s_total": round(total, 3)}
    try:
        write_results(r.out_dir, r.results)
    except OSError as err:
        r.results["status"] = "failed"
        r.results["reason"] = f"cannot write results in {r.out_dir}: {err.strerror or err}"


# --- training --------------------------------------------------------------------------------


def _train(pending: list[SeedRun], runtime: dict[str, Any] | None) -> None:
    """Build the K seeds' data, models and losses; fit them together; fill in their results."""
    from lossbench.parts import build_model
    from lossbench.run import instantiated
    from lossbench.tasks import task_extras

    quiet_lightning()
    config = pending[0].config
    threads = set_threads(config, runtime)
    kind = config["task"]["kind"]
    datas = [load_data(r.config) for r in pending]
    _check_equal_sizes(datas, [r.seed for r in pending])
    losses = [
        loss_from_config(r.config["loss"], kind, d) for r, d in zip(pending, datas, strict=True)]
    trainer = build_trainer(config, None, Path(config["output_dir"]), clips_itself=False)
    device = trainer.strategy.root_device
    datas = [d.to(device) for d in datas]
    extras = task_extras(kind)
    models = []
    for r, data in zip(pending, datas, strict=True):
        pl.seed_everything(r.seed, workers=False, verbose=False)
        outputs = head_size(data, int(config["model"].get("embedding_dim", 32)))
        models.append(build_model(config["model"], data, outputs))
    baselines = [
        extras.baselines(d, m) if extras.baselines else {}
        for d, m in zip(datas, models, strict=True)
    ]
    module = SeedStackModule(
        models, losses, datas, config["optimizer"], divergence=config.get("divergence"),
        scheduler=config.get("scheduler"))
    batches = SeedBatches([
        TensorBatches(d.x_train, d.y_train, int(config["batch_size"]), seed=r.seed)
        for r, d in zip(pending, datas, strict=True)
    ])
    module.steps_per_epoch = len(batches)
    fit(trainer, module, batches)
    common = {"device": str(device), "threads": threads, "data_path": "device",
              "stopped_early": None, "instantiated": instantiated(config)}
    for k, (r, data) in enumerate(zip(pending, datas, strict=True)):
        r.results.update(_seed_results(module, k, data, baselines[k]), **common)
    _final_metrics(module, trainer.current_epoch - 1, [r.results["metrics"] for r in pending])


def _seed_results(
    module: SeedStackModule, k: int, data: TaskData, baselines: dict[str, Any],
) -> dict[str, Any]:
    """Seed k's training keys of the results, in the order `run` writes them."""
    metric, mode = SELECTION[data.kind]
    diverged = module.diverged_epoch[k]
    divergence = module.divergence[k]
    return {
        "status": "diverged" if diverged is not None else "ok",
        "reason": divergence_reason(divergence) if divergence is not None else None,
        "divergence": divergence,
        "selection": {"metric": f"val/{metric}", "mode": mode},
        "data": getattr(data, "info", None) or {"source": "bundled", "dataset": data.dataset},
        "perturb": data.perturb,
        "metrics": {},
        "baselines": baselines,
        "history": module.history[k],
        "epochs": len(module.history[k]) + int(diverged is not None),
        "diverged_epoch": diverged,
    }


def _check_equal_sizes(datas: list[TaskData], seeds: list[int]) -> None:
    sizes = [tuple(len(d.split(s)[0]) for s in ("train", "val", "test")) for d in datas]
    if len(set(sizes)) > 1:
        raise ConfigError(f"seeds {seeds} give splits of different sizes {sizes}; run them apart")


def _final_metrics(module: SeedStackModule, last_epoch: int, out: list[dict[str, Any]]) -> None:
    """Val and test metrics of the last and of the best weights of every seed, one host sync."""
    last = module.evaluate_all(("val", "test"))
    best = module.evaluate_all(("val", "test"), module.best_weights())
    wanted: list[tuple[int, str, dict[str, Tensor]]] = []
    for k in range(module.k):
        if module.diverged_epoch[k] is None:
            wanted.append((k, "last", last[k]))
        if module.best[k]["epoch"] is not None:
            wanted.append((k, "best", best[k]))
    values = iter(_read([v for _, _, metrics in wanted for v in metrics.values()]))
    for k, which, metrics in wanted:  # "last" before "best", as run() writes them
        epoch = last_epoch if which == "last" else module.best[k]["epoch"]
        out[k][which] = {"epoch": epoch, **{name: next(values) for name in metrics}}


def _read(tensors: list[Tensor]) -> list[float]:
    """Many 0-dim device tensors as floats, in one host sync."""
    return torch.stack([t.float() for t in tensors]).tolist() if tensors else []


# --- logging ---------------------------------------------------------------------------------


def _logger(r: SeedRun, runtime: dict[str, Any] | None) -> Any:
    """The seed's experiment logger; built after training, one at a time (one wandb run each)."""
    from lossbench.loggers import build_logger

    config = r.config
    group = (runtime or {}).get("group") or config["task"]["name"]
    tags = [config["task"]["name"], config["loss"]["name"], *config.get("tags", [])]
    return build_logger(config["logger"], r.out_dir, config["name"], group, tags, config)


def _replay_history(logger: Any, results: dict[str, Any]) -> None:
    """Give the seed's logger its per-epoch rows, as a separate run would have logged them."""
    from lossbench.loggers import close_logger

    if logger is None:
        return
    for row in results.get("history") or []:
        logger.log_metrics({k: v for k, v in row.items() if k != "epoch"} | {
            "epoch": row["epoch"]}, step=row["epoch"])
    logger.save()
    logger.finalize("success" if results["status"] == "ok" else "failed")
    close_logger(logger, wandb_summary(results))


# --- the stacked model -----------------------------------------------------------------------


class SeedBatches:
    """K seeds' batches as one: (x (K, B, F), y (K, B)), each seed in its own shuffled order.

    The orders come from the seeds' own `TensorBatches` (its generator and order function),
    so seed k sees the batches a separate run sees; the data are stacked once and each step
    gathers all K batches with one indexing operation.
    """

    def __init__(self, streams: list[TensorBatches]) -> None:
        self.streams = streams
        self.x = torch.stack([s.x for s in streams])
        self.y = torch.stack([s.y for s in streams])
        self.rows = torch.arange(len(streams), device=self.x.device).unsqueeze(1)

    def __len__(self) -> int:
        return len(self.streams[0])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        index = torch.stack([s.order(s.generator) for s in self.streams]).to(self.x.device)
        size = self.streams[0].batch_size
        for i in range(len(self)):
            batch = index[:, i * size : (i + 1) * size]
            yield self.x[self.rows, batch], self.y[self.rows, batch]


class SeedStackModule(pl.LightningModule):
    """K copies of one architecture as stacked weights (K, ...), trained and judged per seed.

    The template model holds no weights of its own (it lives on the meta device, outside
    the module tree); `functional_call` runs it with seed k's slice of the stacked weights.
    """

    def __init__(
        self, models: list[nn.Module], losses: list[nn.Module], datas: list[TaskData],
        optimizer: dict[str, Any], divergence: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.k, self.kind, self.datas = len(models), datas[0].kind, datas
        self.optimizer_cfg, self.scheduler_cfg = optimizer, scheduler
        self.steps_per_epoch = 1
        self.__dict__["template"] = copy.deepcopy(models[0]).to("meta")
        self.names = [n for n, _ in models[0].named_parameters()]
        self.weights = nn.ParameterList([
            nn.Parameter(torch.stack([dict(m.named_parameters())[n].detach() for m in models]))
            for n in self.names
        ])
        self.buffer_names = [n for n, _ in models[0].named_buffers()]
        for i, n in enumerate(self.buffer_names):
            self.register_buffer(f"stacked_buffer{i}", torch.stack([
                dict(m.named_buffers())[n] for m in models]))
        self.losses = nn.ModuleList(losses)
        self.squeeze = squeeze_head(self.kind)
        self.selection = SELECTION[self.kind][0]
        self.eval_batch_size = 1024
        self.history: list[list[dict[str, float]]] = [[] for _ in models]
        self.best: list[dict[str, Any]] = [
            {"epoch": None, "value": None, "state": None} for _ in models]
        self.diverged_epoch: list[int | None] = [None] * self.k
        self.divergence: list[dict[str, Any] | None] = [None] * self.k
        self.rule = DivergenceRule.from_config(divergence)
        trivial = [trivial_val_error(d) for d in datas]
        self.trivial_error = None if trivial[0] is None else torch.stack(trivial)
        self.first_loss: list[float | None] = [None] * self.k  # first epoch's training loss
        self._alive = torch.ones(self.k, dtype=torch.bool)
        self.optimizer: torch.optim.Optimizer | None = None
        self._inputs: dict[str, Tensor] = {}  # each split's inputs stacked (K, N, F), once
        self._loss_sum: Tensor | None = None
        self._steps = 0

    def _stacked_buffers(self) -> list[Tensor]:
        return [getattr(self, f"stacked_buffer{i}") for i in range(len(self.buffer_names))]

    def _one(self, weights: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(self.template, weights, (x,))
        return out.squeeze(-1) if self.squeeze else out

    def forward(self, x: Tensor, weights: list[Tensor] | None = None) -> Tensor:
        """(K, B, F) inputs -> (K, B) or (K, B, C) outputs, seed k by model k."""
        self.template.train(self.training)
        stacked = dict(zip(self.names, self.weights if weights is None else weights, strict=True))
        stacked.update(zip(self.buffer_names, self._stacked_buffers(), strict=True))
        return vmap(self._one, randomness="different")(stacked, x)

    def configure_optimizers(self) -> Any:
        """The optimizer over the stacked weights; a count-driven LR schedule (the same for
        every member) is Lightning's to step, per epoch or per step."""
        self.optimizer = build_optimizer(list(self.weights), self.optimizer_cfg)
        built = build_scheduler(
            self.scheduler_cfg, self.optimizer, self.steps_per_epoch,
            int(self.trainer.max_epochs), SELECTION[self.kind][1])
        if built is None:
            return self.optimizer
        scheduler, interval = built
        return {"optimizer": self.optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        out = self(x)
        per_seed = torch.stack([loss(out[k], y[k]) for k, loss in enumerate(self.losses)])
        if not bool(self._alive.all()):  # host flag, set at an epoch's end: no sync here
            per_seed = torch.where(self._alive.to(per_seed.device), per_seed, 0.0)
        detached = per_seed.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._steps += 1
        return per_seed.sum()  # seed k's weights get exactly the gradient of seed k's loss

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip each seed's gradient norm on its own, as K separate Trainers would."""
        if not gradient_clip_val:
            return
        if gradient_clip_algorithm == "value":  # elementwise: the same for stacked weights
            self.clip_gradients(optimizer, gradient_clip_val, "value")
            return
        grads = [w.grad for w in self.weights if w.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
        scale = (gradient_clip_val / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))

    @torch.no_grad()
    def evaluate_all(
        self, splits: Sequence[str], weights: list[Tensor] | None = None,
    ) -> list[dict[str, Tensor]]:
        """Per seed, the task metrics on each whole split (seed k on its own split)."""
        was_training = self.training
        self.eval()
        per_seed: list[dict[str, Tensor]] = [{} for _ in range(self.k)]
        for split in splits:
            if split not in self._inputs:
                self._inputs[split] = torch.stack([d.split(split)[0] for d in self.datas])
            x = self._inputs[split]
            step = self.eval_batch_size
            out = torch.cat([
                self(x[:, i : i + step], weights) for i in range(0, x.shape[1], step)], dim=1)
            for k, data in enumerate(self.datas):
                metrics = compute_metrics(out[k], data.split(split)[1], data)
                per_seed[k].update({f"{split}/{m}": v for m, v in metrics.items()})
        self.train(was_training)
        return per_seed

    def best_weights(self) -> list[Tensor]:
        """Stacked best-validation weights (a seed without any keeps its current ones)."""
        return [
            torch.stack([
                b["state"][name] if b["state"] is not None else w[k].detach()
                for k, b in enumerate(self.best)
            ])
            for name, w in zip(self.names, self.weights, strict=True)
        ]

    def on_train_epoch_end(self) -> None:
        if self.end_epoch(self.current_epoch):
            self.trainer.should_stop = True

    def end_epoch(self, epoch: int) -> bool:
        """Record every live seed's epoch (one host sync); True when no seed is left alive."""
        metrics = self.evaluate_all(("val",))
        train_loss = self._loss_sum / max(self._steps, 1)
        finite = torch.stack([w.isfinite().flatten(1).all(1) for w in self.weights]).all(0)
        names = ["train/loss", *metrics[0]]
        lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else None
        trivial = self.trivial_error if self.trivial_error is not None else finite
        columns = [train_loss.float(), *(
            torch.stack([m[n] for m in metrics]).float() for n in metrics[0])]
        table = torch.stack([*columns, finite.float(), trivial.float()], dim=1).tolist()
        self._loss_sum, self._steps = None, 0
        for k, values in enumerate(table):
            if self.diverged_epoch[k] is None:
                *row, is_finite, trivial_value = values
                self._record(
                    k, epoch, {**dict(zip(names, row, strict=True)), "train/lr": lr},
                    is_finite >= 1,
                    trivial_value if self.trivial_error is not None else None,
                )
        return not bool(self._alive.any())

    def _record(
        self, k: int, epoch: int, row: dict[str, float], finite: bool, trivial: float | None,
    ) -> None:
        value = row[f"val/{self.selection}"]
        error = value if SELECTION[self.kind][1] == "min" else None
        fired = self.rule.check(row["train/loss"], self.first_loss[k], finite, error, trivial)
        if fired is not None:
            self.diverged_epoch[k] = epoch
            self.divergence[k] = {**fired, "epoch": epoch}
            self._freeze(k)
            return
        if self.first_loss[k] is None:
            self.first_loss[k] = row["train/loss"]
        self.history[k].append({"epoch": epoch, **row})
        if is_better(self.kind, value, self.best[k]["value"]):
            weights = zip(self.names, self.weights, strict=True)
            state = {n: w[k].detach().clone() for n, w in weights}
            self.best[k] = {"epoch": epoch, "value": value, "state": state}

    @torch.no_grad()
    def _freeze(self, k: int) -> None:
        """Stop a diverged seed for good: zero weights, optimizer state and (per step) loss.

        Zero weights give finite outputs and, with the loss masked, zero gradients, so no
        optimizer moves them again and no NaN reaches the shared sums.
        """
        self._alive[k] = False
        for w in self.weights:
            w[k] = 0
        for state in self.optimizer.state.values() if self.optimizer is not None else ():
            for value in state.values():
                if isinstance(value, Tensor) and value.dim() > 0:
                    value[k] = 0
