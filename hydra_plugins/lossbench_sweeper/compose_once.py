"""Hydra's basic sweeper, but a job's config is composed once, and stacks launch as one job.

The basic sweeper composes every job's config to validate the batch, then the basic launcher
composes it again to run it: ~0.13 s a job, as much as training a small model. This sweeper
composes the batch once (Hydra composes one job of each shape of overrides, batch_compose),
keeps the configs and hands each to the launcher once. Launchers that compose in
other processes (joblib, submitit) compose there as before: the kept configs never travel.
From the same configs it plans the batch's stacks (lossbench.stack_plan) and launches one job
per stack, for any launcher.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where a dataclass with string annotations looks itself up.
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_loader import ConfigLoader
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig

# Validated configs kept at most at once; a longer batch composes the rest again to run them.
MAX_KEPT = 512


class ComposeOnceLoader(ConfigLoader):
    """Hydra's config loader, handing out each kept sweep config to the first caller for it."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.kept: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def keep(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> DictConfig:
        """Compose a job's config now (errors surface before any job runs) and keep it."""
        config = self.loader.load_sweep_config(master_config, list(sweep_overrides))
        self.hand_out(master_config, sweep_overrides, config)
        return config

    def hand_out(
        self, master_config: DictConfig, sweep_overrides: Sequence[str], config: DictConfig,
    ) -> None:
        """Keep a job's composed config for the launcher's call for these overrides."""
        if len(self.kept) < MAX_KEPT:
            self.kept[(id(master_config), tuple(sweep_overrides))] = config

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        kept = self.kept.pop((id(master_config), tuple(sweep_overrides)), None)
        if kept is not None:
            return kept
        return self.loader.load_sweep_config(master_config, sweep_overrides)

    def load_configuration(
        self, config_name: str | None, overrides: list[str], run_mode: RunMode,
        from_shell: bool = True, validate_sweep_overrides: bool = True,
    ) -> DictConfig:
        return self.loader.load_configuration(
            config_name, overrides, run_mode, from_shell, validate_sweep_overrides)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # Sent to another process (joblib, submitit): it composes its own configs.
        return {"loader": self.loader, "kept": {}}


@dataclass
class LossbenchSweeperConf(BasicSweeperConf):
    """The basic sweeper's options, for this sweeper."""

    _target_: str = "hydra_plugins.lossbench_sweeper.compose_once.LossbenchSweeper"


class LossbenchSweeper(BasicSweeper):
    """The basic sweeper (same options, same jobs in the same order), composing once, and
    launching stacks: jobs that differ only in seed, loss, perturbation or data set are
    one launch unit (lossbench.stack_plan), trained together by the unit's first job; every
    job keeps its own folder, `.hydra/` files and results.json. Any launcher gets the units."""

    next_job = 0  # the planned job number of the next batch's first job

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.compose_once = ComposeOnceLoader(hydra_context.config_loader)
        hydra_context = replace(hydra_context, config_loader=self.compose_once)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def in_process(self) -> bool:
        """Whether the jobs run in this process (other launchers compose in their own)."""
        return isinstance(self.launcher, BasicLauncher)

    def sweep(self, arguments: list[str]) -> Any:
        if self.in_process():
            from lossbench.gc_tuning import freeze_imports

            # Import what the jobs need before any job's config exists (see gc_tuning).
            freeze_imports()
        return super().sweep(arguments)

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        """The next batch, as the launch units it is planned into (`plan_batch`)."""
        return self.plan_batch(super().get_job_batch())

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing left to check: `plan_batch` composed every job of the batch."""

    def plan_batch(self, batch: Sequence[Sequence[str]]) -> list[list[str]]:
        """Compose every job of the batch (bad input stops the sweep here), plan its stacks,
        write their plans and the sweep manifest; the overrides of the units to launch."""
        from lossbench.stack_plan import (
            clear_old_plans,
            group_stacks,
            launch_units,
            plan_jobs,
            write_plan,
        )
        from lossbench.sweep import write_manifest

        from .batch_compose import BatchComposer

        assert self.config is not None
        self.compose_once.kept.clear()  # a previous batch's leftovers are not wanted again
        composer = BatchComposer(self.compose_once.loader, self.config)
        configs = [composer.compose(o) for o in batch]
        jobs = plan_jobs(configs, self.next_job)
        stacks = group_stacks(jobs, per_task=not self.in_process())
        by_num = {job.num: cfg for job, cfg in zip(jobs, configs, strict=True)}
        clear_old_plans(jobs, stacks)
        for members in stacks:
            write_plan(members, by_num)
        units = launch_units(jobs, stacks)
        if self.in_process():  # the launcher gets the configs composed here
            for job, overrides in units:
                cfg = by_num[job.num]
                if job.subdir is not None:
                    cfg.hydra.sweep.subdir = job.subdir
                self.compose_once.hand_out(self.config, overrides, cfg)
        self.planned = [*getattr(self, "planned", []), *(j.manifest_entry() for j in jobs)]
        self.stacks = [*getattr(self, "stacks", []), *([j.num for j in s] for s in stacks)]
        self.units = getattr(self, "units", 0) + len(units)
        self.next_job += len(batch)
        total = sum(len(b) for b in self.overrides or []) or len(self.planned)
        write_manifest(self.config, self.planned, self.stacks, total, self.units)
        return [overrides for _, overrides in units]
