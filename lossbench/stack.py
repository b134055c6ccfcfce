"""Jobs that differ only in seed, loss, loss hyperparameters or perturbation, trained at once.

A sweep of losses x seeds x settings on a tabular task costs one run of fixed overhead per job
(Trainer, a Python-bound step loop of tiny matrix products). Here K jobs share one Trainer and
one step loop: the K models' weights are stacked along a leading member axis and run through
`torch.func.vmap` + `functional_call` (an MLP as batched matrix products, `LinearChain`), so
a step costs one vectorised forward and backward instead of K. Each member's loss is its own
loss module with its own hyperparameters (members with equal losses share one call,
lossbench.stack_losses), so any tabular loss stacks. The optimizer is fused where torch has
a fused kernel for it, and the per-epoch metrics are computed for all members at once.

Each member keeps everything a separate run would have: its own split and perturbation (the
data are loaded per member; equal sizes stack into (K, N, F)), its own initialisation
(`pl.seed_everything(seed)` right before `build_model`), its own batch order (a
`TensorBatches` per member), its own best-validation weights, and its own divergence: a
member whose weights or loss turn NaN/inf is recorded as diverged at that epoch and frozen
(weights, optimizer state and loss zeroed), while the others go on. One optimizer over the
stacked weights equals K optimizers, because Adam, AdamW and SGD are elementwise and the
summed loss gives each model exactly its own gradient; gradient clipping is done per member.

With dropout 0 the results match separate runs up to float rounding; with dropout each
member draws its own masks (`vmap(randomness="different")`, or dropout on the stacked
activations), so results are equal in distribution, not in value. What a stack may hold is
lossbench.stack_plan's `stack_key` (configs that agree on everything but its MEMBER_KEYS) and
`data_shape` here. Results, reuse, save and logger naming are lossbench.run's pipeline
(`run_jobs`), which groups the jobs; this module is the stacked training only.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lossbench.data.batches import OncePerEpoch, TensorBatches
from lossbench.data.tabular import TaskData
from lossbench.divergence import DivergenceRule, trivial_val_error
from lossbench.environment import hydra_runtime, quiet_lightning, set_threads, to_plain
from lossbench.loss_config import loss_from_config
from lossbench.member import MemberRecord
from lossbench.models import MLP
from lossbench.module import LEAN_PRECISION
from lossbench.parts import build_optimizer, build_scheduler, optimizer_class
from lossbench.run import build_trainer, fit, run_jobs, wandb_summary
from lossbench.stack_losses import StackLosses
from lossbench.stack_plan import stack_refusal
from lossbench.tasks import SELECTION, head_size, squeeze_head, stacked_metrics

if TYPE_CHECKING:
    from lossbench.run import Job

EVAL_FLOATS = 1 << 20  # members x rows x features evaluated in one forward, at most


def run_seeds(cfg: Any, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """`seeds=`: train `cfg` once per seed, all seeds in one stack; one results dict each.

    Each seed's results are those of the job `seed=<s>` (same config, hash and label), in
    `<root>/<name>`: `<root>` is `output_dir`, Hydra's job folder, or a new folder of runs.
    An unsupported config raises ValueError before anything is written.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds= takes at least one seed, and distinct seeds; got {seeds}")
    base = to_plain(cfg)
    refusal = stack_refusal(base)
    if refusal is not None:
        raise ValueError(f"{refusal}: not with seeds=; sweep seed=0,1,2 instead")
    runtime = hydra_runtime()
    configs = [seed_config(cfg, s) for s in seeds]
    root = _root_dir(configs[0], seeds, runtime)
    names = [str(c.get("name") or "").replace(os.sep, "_") for c in configs]
    if len(set(names)) < len(names) or not all(names):
        names = [f"seed{s}" for s in seeds]
    jobs = []
    for config, name in zip(configs, names, strict=True):
        config["output_dir"] = str(root / name)  # rerunning this config lands here
        jobs.append((config, _seed_runtime(runtime, config["seed"])))
    return run_jobs(jobs)


def seed_config(cfg: Any, seed: int) -> dict[str, Any]:
    """The resolved config of the job `seed=<seed>`: interpolations (the name) follow it, and
    `seeds` is null, so the stored config trains that seed alone and hashes as its job."""
    from omegaconf import DictConfig, open_dict

    if isinstance(cfg, DictConfig):
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.seed = seed
            cfg.seeds = None
        return to_plain(cfg)
    config = {**copy.deepcopy(dict(cfg)), "seed": seed, "seeds": None}
    suffix = f"-s{cfg.get('seed')}"  # a resolved default name, `<task>-<loss>-s<seed>`
    if str(config.get("name", "")).endswith(suffix):
        config["name"] = f"{config['name'][: -len(suffix)]}-s{seed}"
    return config


def _seed_runtime(runtime: dict[str, Any] | None, seed: int) -> dict[str, Any] | None:
    """The Hydra job as the job `seed=<seed>` would see it: `seeds=` is no override of it."""
    if runtime is None:
        return None
    overrides = [o for o in runtime["overrides"] if o.partition("=")[0].lstrip("+~") not in (
        "seed", "seeds")]
    return {**runtime, "overrides": [*overrides, f"seed={seed}"]}


def _root_dir(config: dict[str, Any], seeds: list[int], runtime: dict[str, Any] | None) -> Path:
    """Where the seeds' folders go: output_dir, Hydra's job folder, or a new folder of runs."""
    from datetime import datetime

    if config.get("output_dir"):
        return Path(config["output_dir"])
    if runtime:
        return Path(runtime["output_dir"])
    stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    label = config["loss"].get("name")
    name = f"{config['task']['name']}-{label}-seeds{'_'.join(map(str, seeds))}"
    return Path(config.get("out_root") or "outputs") / "runs" / f"{stamp}_{name}"


# --- training --------------------------------------------------------------------------------


def data_shape(data: TaskData, config: dict[str, Any]) -> tuple[Any, ...]:
    """What members must share to stack: kind, input shape, head, and split sizes (the same
    number of batches an epoch, and whole splits stacked for evaluation)."""
    sizes = tuple(len(data.split(s)[0]) for s in ("train", "val", "test"))
    head = head_size(data, int(config["model"].get("embedding_dim", 32)))
    return (data.kind, tuple(data.x_train.shape[1:]), head, sizes)


def train_stack(pending: list[Job], datas: list[TaskData]) -> None:
    """The K members' models and losses, on their loaded data (equal `data_shape`s) fitted
    together; fills in their results."""
    from lossbench.parts import build_model
    from lossbench.tasks import task_extras

    quiet_lightning()
    config = pending[0].config
    for j in pending:
        j.results["attempts"] = 1  # a stack is not retried: a failed one trains job by job
    threads = set_threads(config, pending[0].runtime)
    kind = datas[0].kind
    losses = [
        loss_from_config(j.config["loss"], kind, d) for j, d in zip(pending, datas, strict=True)]
    trainer = build_trainer(config, None, pending[0].out_dir)
    device = trainer.strategy.root_device
    # Members of one task, seed and perturbation share their data (run_jobs loads it once):
    # it moves to the device once, and its baselines (a model of the data alone) fit once.
    on_device = {id(d): d.to(device) for d in datas}
    shared = [id(d) for d in datas]
    datas = [on_device[i] for i in shared]
    extras = task_extras(kind)
    models = []
    for j, data in zip(pending, datas, strict=True):
        pl.seed_everything(int(j.config["seed"]), workers=False, verbose=False)
        outputs = head_size(data, int(config["model"].get("embedding_dim", 32)))
        models.append(build_model(config["model"], data, outputs))
    fitted: dict[int, dict[str, Any]] = {}
    for i, data in zip(shared, datas, strict=True):
        if i not in fitted:
            fitted[i] = extras.baselines(data, None) if extras.baselines else {}
    baselines = [copy.deepcopy(fitted[i]) for i in shared]
    module = SeedStackModule(
        models, losses, datas, config["optimizer"], divergence=config.get("divergence"),
        scheduler=config.get("scheduler"))
    module.epoch_batches = SeedBatches([
        TensorBatches(d.x_train, d.y_train, int(config["batch_size"]), seed=int(j.config["seed"]))
        for j, d in zip(pending, datas, strict=True)
    ])
    module.steps_per_epoch = len(module.epoch_batches)
    module.gradient_clip_val = config["trainer"].get("gradient_clip_val")
    module.gradient_clip_algorithm = config["trainer"].get("gradient_clip_algorithm")
    fit(trainer, module, OncePerEpoch())
    common = {"device": str(device), "threads": threads, "data_path": "device"}
    metrics = _final_metrics(module, trainer.current_epoch - 1)
    for k, (j, data) in enumerate(zip(pending, datas, strict=True)):
        j.results.update(
            module.records[k].results(data, metrics[k], baselines[k], j.config), **common)


def _final_metrics(module: SeedStackModule, last_epoch: int) -> list[dict[str, Any]]:
    """Each member's `metrics`: val and test of its last and its best weights, one host sync."""
    last = module.evaluate_all(("val", "test"))
    best = module.evaluate_all(("val", "test"), module.best_weights())
    table = torch.stack([c.float() for c in (*last.values(), *best.values())], dim=1).tolist()
    out = []
    for record, values in zip(module.records, table, strict=True):
        read = dict(zip(last, values[: len(last)], strict=True)), dict(
            zip(best, values[len(last):], strict=True))
        out.append(record.final_metrics(last_epoch, *read))
    return out


def stacked_optimizer(params: list[Tensor], cfg: dict[str, Any], lean: bool) -> Any:
    """The optimizer over a stack's weights, fused when it can be (Adam, AdamW, SGD in full
    precision, unless the config chooses `fused` or `foreach`): a stack has a few large
    tensors, where torch's fused kernel takes a third of the for-loop's time. The update is
    the same elementwise formula (it differs from the loop's by float rounding only)."""
    target = optimizer_class(cfg)
    if lean and not {"fused", "foreach"} & set(cfg) and "fused" in inspect.signature(
            target).parameters:
        try:
            return build_optimizer(params, {**cfg, "fused": True})
        except Exception:  # a device or dtype fused kernels do not take
            pass
    return build_optimizer(params, cfg)


# --- logging ---------------------------------------------------------------------------------


def replay_history(job: Job) -> None:
    """Give a member's logger its per-epoch rows, as a separate run would have logged them;
    built after training, one at a time (one wandb run each)."""
    from lossbench.loggers import close_logger
    from lossbench.run import job_logger

    if job.results.get("status") not in ("ok", "diverged"):
        return
    logger = job_logger(job.config, job.runtime, job.out_dir)
    if logger is None:
        return
    for row in job.results.get("history") or []:
        logger.log_metrics({k: v for k, v in row.items() if k != "epoch"} | {
            "epoch": row["epoch"]}, step=row["epoch"])
    logger.save()
    logger.finalize("success" if job.results["status"] == "ok" else "failed")
    close_logger(logger, wandb_summary(job.results))


# --- the stacked model -----------------------------------------------------------------------


class SeedBatches:
    """K seeds' batches as one: (x (K, B, F), y (K, B)), each seed in its own shuffled order.

    The orders come from the seeds' own `TensorBatches` (its generator and order function),
    so seed k sees the batches a separate run sees; the data are stacked once and each step
    gathers all K batches with one indexing operation.
    """

    def __init__(self, streams: list[TensorBatches]) -> None:
        self.streams = streams
        x, y = torch.stack([s.x for s in streams]), torch.stack([s.y for s in streams])
        self.k, self.n = x.shape[:2]
        self.member_shape = (x.shape[2:], y.shape[2:])
        # Flat (K * N, ...) so a step's K batches are one index_select (~3x advanced indexing)
        self.x, self.y = x.reshape(self.k * self.n, *x.shape[2:]), y.reshape(self.k * self.n,
                                                                               *y.shape[2:])
        self.offsets = torch.arange(self.k, device=x.device).unsqueeze(1) * self.n

    def __len__(self) -> int:
        return len(self.streams[0])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        index = torch.stack([s.order(s.generator) for s in self.streams]).to(self.x.device)
        index = index + self.offsets  # member k's rows start at k * N
        size = self.streams[0].batch_size
        x_shape, y_shape = self.member_shape
        for i in range(len(self)):
            batch = index[:, i * size : (i + 1) * size]
            rows, b = batch.reshape(-1), batch.shape[1]
            yield (self.x.index_select(0, rows).view(self.k, b, *x_shape),
                   self.y.index_select(0, rows).view(self.k, b, *y_shape))


class LinearChain:
    """A stack of `nn.Sequential`s of Linear layers and elementwise activations (lossbench's
    MLP), run as batched matrix products: `baddbmm` over the member axis does what vmap of
    the model does, in about half the time a step. The stack keeps the Linear weights
    (`transposed`) as (K, in, out), which `baddbmm` takes as they are (~12% off a step's
    forward and backward). Dropout draws each member's own mask."""

    ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.Sigmoid, nn.LeakyReLU, nn.ELU,
                   nn.Identity)

    def __init__(self, layers: list[tuple[str, Any]], transposed: set[str]) -> None:
        self.layers = layers
        self.transposed = transposed  # the parameter names held as (K, in, out)

    @classmethod
    def of(cls, model: nn.Module, names: list[str]) -> LinearChain | None:
        """The chain of `model` (parameters by their index in `names`), or None when it is
        anything else (then the stack runs the model under vmap)."""
        if type(model) not in (nn.Sequential, MLP) or list(model.buffers()):
            return None
        layers: list[tuple[str, Any]] = []
        transposed = set()
        for i, layer in enumerate(model):
            if type(layer) is nn.Linear:
                bias = names.index(f"{i}.bias") if layer.bias is not None else None
                layers.append(("linear", (names.index(f"{i}.weight"), bias)))
                transposed.add(f"{i}.weight")
            elif type(layer) is nn.Dropout:
                layers.append(("dropout", layer.p))
            elif type(layer) in cls.ELEMENTWISE:
                layers.append(("elementwise", layer))
            else:
                return None
        return cls(layers, transposed)

    def forward(self, weights: list[Tensor], x: Tensor, training: bool) -> Tensor:
        for kind, spec in self.layers:
            if kind == "linear":
                weight, bias = weights[spec[0]], spec[1]  # (K, in, out)
                x = (torch.bmm(x, weight) if bias is None
                     else torch.baddbmm(weights[bias].unsqueeze(1), x, weight))
            elif kind == "dropout":
                x = torch.nn.functional.dropout(x, spec, training)
            else:
                x = spec(x)
        return x


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
        self.chain = LinearChain.of(models[0], self.names)  # an MLP: batched matmuls
        transposed = self.chain.transposed if self.chain is not None else set()
        self.weights = nn.ParameterList([
            nn.Parameter(torch.stack([
                dict(m.named_parameters())[n].detach().T if n in transposed
                else dict(m.named_parameters())[n].detach() for m in models]))
            for n in self.names
        ])
        self.buffer_names = [n for n, _ in models[0].named_buffers()]
        for i, n in enumerate(self.buffer_names):
            self.register_buffer(f"stacked_buffer{i}", torch.stack([
                dict(m.named_buffers())[n] for m in models]))
        self.losses = StackLosses(losses)  # one call per group of equal losses
        self.squeeze = squeeze_head(self.kind)
        self.selection = SELECTION[self.kind][0]
        self.eval_batch_size = 1024
        # Each member's history, best weights and divergence, as a single run keeps its own.
        rule = DivergenceRule.from_config(divergence)
        self.records = [MemberRecord(self.kind, rule) for _ in models]
        trivial = [trivial_val_error(d) for d in datas]
        self.trivial_error = None if trivial[0] is None else torch.stack(trivial)
        self._alive = torch.ones(self.k, dtype=torch.bool)
        self.optimizer: torch.optim.Optimizer | None = None
        # Manual optimization, a whole epoch per Lightning step (`training_step`): the
        # caller sets `epoch_batches`, `steps_per_epoch` and the clipping before fit.
        self.automatic_optimization = False
        self.epoch_batches: Any = None
        self.gradient_clip_val: float | None = None
        self.gradient_clip_algorithm: str | None = None
        self.scheduler: Any = None
        self._step_scheduler: Any = None  # the scheduler when it steps per optimizer step
        self._inputs: dict[str, Tensor] = {}  # each split's inputs stacked (K, N, F), once
        self._targets: dict[str, Tensor] = {}  # and its targets (K, N)
        self._loss_sum: Tensor | None = None
        self._steps = 0

    def _stacked_buffers(self) -> list[Tensor]:
        return [getattr(self, f"stacked_buffer{i}") for i in range(len(self.buffer_names))]

    def _one(self, weights: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(self.template, weights, (x,))
        return out.squeeze(-1) if self.squeeze else out

    def forward(self, x: Tensor, weights: list[Tensor] | None = None) -> Tensor:
        """(K, B, F) inputs -> (K, B) or (K, B, C) outputs, seed k by model k."""
        weights = list(self.weights) if weights is None else weights
        if self.chain is not None:
            out = self.chain.forward(weights, x, self.training)
            return out.squeeze(-1) if self.squeeze else out
        self.template.train(self.training)
        stacked = dict(zip(self.names, weights, strict=True))
        stacked.update(zip(self.buffer_names, self._stacked_buffers(), strict=True))
        return vmap(self._one, randomness="different")(stacked, x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The optimizer over the stacked weights, and a count-driven LR schedule (the same
        for every member), stepped here per step or per epoch (manual optimization)."""
        self.optimizer = stacked_optimizer(list(self.weights), self.optimizer_cfg,
                                           lean=self.trainer.precision in LEAN_PRECISION)
        built = build_scheduler(
            self.scheduler_cfg, self.optimizer, self.steps_per_epoch,
            int(self.trainer.max_epochs), SELECTION[self.kind][1])
        if built is not None:
            self.scheduler, interval = built
            self._step_scheduler = self.scheduler if interval == "step" else None
        return self.optimizer

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """A whole epoch: Lightning turns once (`OncePerEpoch`) while the module walks the
        members' batches, as a single run's module does. Float32 steps call torch directly;
        mixed precision goes through Lightning's optimizer and backward (the grad scaler)."""
        lean = self.trainer.precision in LEAN_PRECISION
        optimizer = self.optimizers(use_pl_optimizer=not lean)
        alive = None if bool(self._alive.all()) else self._alive  # host flag: no sync
        total, steps = None, 0
        for x, y in self.epoch_batches:
            per_member = self.losses(self(x), y)
            if alive is not None:  # a frozen member's loss is zero: no gradient, no NaN
                per_member = torch.where(alive.to(per_member.device), per_member, 0.0)
            optimizer.zero_grad()
            # The sum gives member k's weights exactly the gradient of member k's loss.
            if lean:
                per_member.sum().backward()
            else:
                self.manual_backward(per_member.sum())
            self.clip_members(self.gradient_clip_val, self.gradient_clip_algorithm)
            optimizer.step()
            if self._step_scheduler is not None:
                self._step_scheduler.step()
            detached = per_member.detach()
            total = detached if total is None else total + detached
            steps += 1
        if total is not None:
            self._loss_sum = total if self._loss_sum is None else self._loss_sum + total
            self._steps += steps
        return total.sum() if total is not None else torch.zeros(())

    def clip_members(self, clip_val: float | None, algorithm: str | None) -> None:
        """Clip each member's gradient on its own, as separate runs would: by norm (each
        member's norm over all its weights) or by value (elementwise: the same stacked)."""
        if not clip_val:
            return
        grads = [w.grad for w in self.weights if w.grad is not None]
        if algorithm == "value":
            for g in grads:
                g.clamp_(-clip_val, clip_val)
            return
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
        scale = (clip_val / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))

    @torch.no_grad()
    def evaluate_all(
        self, splits: Sequence[str], weights: list[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """The task metrics of every member on each whole split (member k on its own split),
        as columns: {"<split>/<metric>": (K,) tensor}."""
        was_training = self.training
        self.eval()
        columns: dict[str, Tensor] = {}
        for split in splits:
            if split not in self._inputs:
                self._inputs[split] = torch.stack([d.split(split)[0] for d in self.datas])
                self._targets[split] = torch.stack([d.split(split)[1] for d in self.datas])
            x = self._inputs[split]
            # Rows per forward: all K members' activations of a chunk stay in cache (~4 MB);
            # 75 members x 360 digits rows at once took 8 ms, in chunks of ~200 rows 6 ms.
            step = max(1, min(self.eval_batch_size, EVAL_FLOATS // (self.k * x[0, 0].numel())))
            out = torch.cat([
                self(x[:, i : i + step], weights) for i in range(0, x.shape[1], step)], dim=1)
            metrics = stacked_metrics(out, self._targets[split], self.datas)
            columns.update({f"{split}/{m}": v for m, v in metrics.items()})
        self.train(was_training)
        return columns

    def best_weights(self) -> list[Tensor]:
        """Stacked best-validation weights (a seed without any keeps its current ones)."""
        return [
            torch.stack([
                r.best["state"][name] if r.best["state"] is not None else w[k].detach()
                for k, r in enumerate(self.records)
            ])
            for name, w in zip(self.names, self.weights, strict=True)
        ]

    def on_train_epoch_end(self) -> None:
        if self.end_epoch(self.current_epoch):
            self.trainer.should_stop = True
        if self.scheduler is not None and self._step_scheduler is None:
            self.scheduler.step()  # count-driven (plateau is refused in stacks)

    def end_epoch(self, epoch: int) -> bool:
        """Record every live seed's epoch (one host sync); True when no seed is left alive."""
        metrics = self.evaluate_all(("val",))
        train_loss = self._loss_sum / max(self._steps, 1)
        finite = torch.stack([w.isfinite().flatten(1).all(1) for w in self.weights]).all(0)
        names = ["train/loss", *metrics]
        lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else None
        trivial = self.trivial_error if self.trivial_error is not None else finite
        columns = [train_loss, *metrics.values(), finite, trivial]
        table = torch.stack([c.float() for c in columns], dim=1).tolist()
        self._loss_sum, self._steps = None, 0
        for k, values in enumerate(table):
            record = self.records[k]
            if not record.alive:
                continue
            *figures, is_finite, trivial_value = values
            row = {**dict(zip(names, figures, strict=True)), "train/lr": lr}
            error = trivial_value if self.trivial_error is not None else None
            if not record.record(epoch, row, is_finite >= 1, error):
                self._freeze(k)
                continue
            value = row[f"val/{self.selection}"]
            if record.improved(value):
                record.keep_best(epoch, value, {
                    n: w[k].detach().clone() for n, w in zip(self.names, self.weights,
                                                              strict=True)})
        return not bool(self._alive.any())

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
