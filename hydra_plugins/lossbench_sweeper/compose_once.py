"""Hydra's basic sweeper, but a job's config is composed once, not twice.

The basic sweeper composes every job's config to validate the batch, then the basic launcher
composes it again to run it: ~0.13 s a job, as much as training a small model. This sweeper
keeps the configs it validated and hands each to the launcher once. Launchers that compose in
other processes (joblib, submitit) compose there as before: the kept configs never travel.
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
        if len(self.kept) < MAX_KEPT:
            self.kept[(id(master_config), tuple(sweep_overrides))] = config
        return config

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
    planning stacks: with the basic launcher, jobs that differ only in seed, loss or
    perturbation train together (lossbench.stack) when the first of them runs; every job
    keeps its own Hydra job, folder, callbacks and results.json."""

    next_job = 0  # the Hydra job number of the next batch's first job

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

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job of the batch (bad input stops the sweep here), plan its stacks
        (in this process only) and write the sweep manifest."""
        assert self.config is not None
        in_process = self.in_process()
        self.compose_once.kept.clear()  # a previous batch's leftovers are not wanted again
        if in_process:
            configs = [self.compose_once.keep(self.config, o) for o in batch]
        else:  # the launcher's processes compose their own
            configs = [self.compose_once.loader.load_sweep_config(self.config, list(o))
                       for o in batch]
        from lossbench.stack import plan_stacks
        from lossbench.sweep import manifest_jobs, write_manifest

        jobs = manifest_jobs(configs, self.next_job)
        stacks = plan_stacks(configs, self.next_job) if in_process else []
        self.planned = [*getattr(self, "planned", []), *jobs]
        self.stacks = [*getattr(self, "stacks", []), *stacks]
        self.next_job += len(batch)
        total = sum(len(b) for b in self.overrides or []) or len(self.planned)
        write_manifest(self.config, self.planned, self.stacks, total)
