"""A sweep's jobs planned into launch units: a stack of compatible jobs is one unit.

The sweeper composes every job of a batch anyway (to refuse bad input before any job runs).
From those configs it plans which jobs can train together (`stack_key`), and hands the
launcher one job per unit: the stack's first job, or a job that trains alone. That holds
for every launcher: the basic one runs the units in turn, joblib and submitit run them in
their own processes (a SLURM array task trains a whole stack), and no member job pays for
a Hydra job of its own.

Each member still gets everything its own job would have: the folder Hydra would give it
(with `.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml`, written here), its
results.json, wandb run and progress line. The unit's first job finds the others in
`stack.json` in its folder (`planned_members`) and trains them all through
`lossbench.run.run_jobs`, which groups them again by what the data turn out to be (equal
shapes stack; anything else trains alone). Units are numbered by Hydra as it launches them,
so every unit's folder is pinned to its planned one with a `hydra.sweep.subdir=` override.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossbench.task_kinds import KINDS

STACKABLE_KINDS = tuple(name for name, kind in KINDS.items() if kind.stackable)
# Config keys in which the members of one stack may differ; everything else must be equal.
# The task may differ too, in its data (a suite's data sets), not in its kind: members whose
# data have equal shapes train together (lossbench.run groups them once the data are loaded).
MEMBER_KEYS = ("seed", "loss", "perturb", "name", "output_dir", "tags", "logger", "resume",
               "retries", "task")
PLAN_NAME = "stack.json"  # in the folder of a unit's first job: the unit's members


def stack_refusal(config: dict[str, Any]) -> str | None:
    """Why this job cannot train in a stack (one line), or None when it can."""
    if config.get("callbacks"):
        return "callbacks (early stopping) stop each run on its own metric"
    if "Plateau" in str((config.get("scheduler") or {}).get("_target_")):
        return "scheduler=plateau follows each run's own metric"
    task = config["task"]
    kind = task.get("kind")
    # task.kind=auto is read from the data when the job starts: it may turn out stackable.
    if (kind not in STACKABLE_KINDS and kind != "auto") or task.get("source") == "torchvision":
        return (f"stacks hold tabular tasks ({', '.join(STACKABLE_KINDS)}), not task "
                f"'{task.get('name')}'")
    if config.get("compile"):
        return "compile=true compiles one model"
    if task.get("data_path") == "stream" or task.get("augment"):
        return "streamed or augmented batches"
    if "ddp" in str((config.get("trainer") or {}).get("strategy")):
        return "trainer=ddp"
    return None


def stack_key(config: dict[str, Any]) -> str | None:
    """Jobs with equal keys can train in one stack; None for a job that trains alone."""
    if config.get("stack") is False or config.get("seeds") is not None:
        return None
    if stack_refusal(config) is not None:
        return None
    shared = {k: v for k, v in config.items() if k not in MEMBER_KEYS}
    shared["task.kind"] = config["task"].get("kind")
    return json.dumps(shared, sort_keys=True, default=str)


@dataclass
class PlannedJob:
    """One job of a sweep as the sweeper composed it: its Hydra job number, overrides,
    folder, resolved config and Hydra job (as `hydra_runtime` gives it), and stack key."""

    num: int
    overrides: list[str]
    folder: str | None  # None: a folder only the job itself can resolve
    subdir: str | None = None
    config: dict[str, Any] | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    key: str | None = None

    def manifest_entry(self) -> dict[str, Any]:
        return {"num": self.num, "overrides": self.overrides, "folder": self.folder}


def plan_jobs(configs: Sequence[Any], first_job: int) -> list[PlannedJob]:
    """Each composed job config of a batch (Hydra's, `hydra` node included) as planned.

    Sets the Hydra job number and id as the launcher would, so each job's folder is known
    before any job runs."""
    from omegaconf import OmegaConf, open_dict

    jobs = []
    for i, cfg in enumerate(configs):
        num = first_job + i
        with open_dict(cfg):
            cfg.hydra.job.num = num
            cfg.hydra.job.id = num
        job = PlannedJob(num, list(cfg.hydra.overrides.task), None)
        try:
            sweep_dir = str(OmegaConf.select(cfg, "hydra.sweep.dir"))
            job.subdir = str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
            job.folder = os.path.abspath(os.path.join(sweep_dir, job.subdir))
            job.config = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v)
                          else v for k, v in ((k, cfg[k]) for k in cfg if k != "hydra")}
            job.runtime = {"output_dir": job.folder, "overrides": job.overrides,
                           "group": Path(sweep_dir).name, "n_jobs": 1}
            job.key = stack_key(job.config)
        except Exception:  # a config only its own job can resolve: it runs alone, as Hydra's
            job.key = None
        jobs.append(job)
    return jobs


def group_stacks(jobs: Sequence[PlannedJob], per_task: bool = False) -> list[list[PlannedJob]]:
    """The jobs that can train together, in stacks of two or more (job order kept).

    `per_task`: a stack per task config too (a data set each), for launchers that run jobs
    side by side: a suite's data sets then train in parallel, each as a stack."""
    groups: dict[str, list[PlannedJob]] = {}
    for job in jobs:
        if job.key is not None and job.folder is not None and job.config is not None:
            task = json.dumps(job.config["task"], sort_keys=True, default=str) if per_task else ""
            groups.setdefault(job.key + task, []).append(job)
    return [members for members in groups.values() if len(members) > 1]


def quoted(value: str) -> str:
    """`value` as a quoted string in Hydra's override grammar (no interpolation)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
    return f"'{escaped}'"


def pinned_subdir(job: PlannedJob) -> str:
    """The override that keeps a unit in its planned folder whatever number Hydra gives it."""
    return f"hydra.sweep.subdir={quoted(job.subdir or '')}"


def launch_units(
    jobs: Sequence[PlannedJob], stacks: Sequence[Sequence[PlannedJob]],
) -> list[tuple[PlannedJob, list[str]]]:
    """What the launcher runs: each stack's first job, and each job in no stack, with their
    overrides (the folder pinned). A batch without stacks launches as Hydra would."""
    if not stacks:
        return [(job, job.overrides) for job in jobs]
    in_stack = {job.num: members for members in stacks for job in members}
    units = []
    for job in jobs:
        members = in_stack.get(job.num)
        if members is not None and members[0].num != job.num:
            continue  # trained by its stack's first job
        if job.folder is None:  # a folder only it can resolve: Hydra's number is kept
            units.append((job, job.overrides))
        else:
            units.append((job, [*job.overrides, pinned_subdir(job)]))
    return units


def write_plan(members: Sequence[PlannedJob], configs: dict[int, Any]) -> None:
    """The stack's members in its first job's folder, and each other member's `.hydra/`."""
    from lossbench.results import write_json_atomic

    for job in members[1:]:
        save_hydra_files(configs[job.num], Path(job.folder or ""))
    write_json_atomic(Path(members[0].folder or "") / PLAN_NAME, {
        "schema": 1,
        "members": [{"num": j.num, "config": j.config, "runtime": j.runtime} for j in members],
    })


def clear_old_plans(jobs: Sequence[PlannedJob], stacks: Sequence[Sequence[PlannedJob]]) -> None:
    """Remove the plan an earlier sweep left in a folder this batch does not stack from (a
    sweep resumed in its own folder with `stack=false`, or grouped otherwise)."""
    leads = {members[0].num for members in stacks}
    for job in jobs:
        if job.folder is not None and job.num not in leads:
            (Path(job.folder) / PLAN_NAME).unlink(missing_ok=True)


def save_hydra_files(cfg: Any, folder: Path) -> None:
    """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml`, as Hydra writes them for a job
    it runs (a member's own job never runs: its stack's first job trains it). They read back
    as OmegaConf.to_yaml's text does, from one conversion of the config and libyaml's
    emitter: a 75-member stack writes them in a fraction of a second instead of seconds."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    hydra = config.pop("hydra")
    out = folder / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    for name, node in (("config.yaml", config), ("hydra.yaml", {"hydra": hydra}),
                       ("overrides.yaml", hydra["overrides"]["task"])):
        (out / name).write_text(yaml_text(node), encoding="utf-8")


def yaml_text(container: Any) -> str:
    """`OmegaConf.to_yaml` of a plain container: the same representer for strings (quoted
    where OmegaConf would read them back as another type), written by libyaml when present
    (long strings may break over lines elsewhere; they read back the same)."""
    import yaml

    dumper = _yaml_dumper()
    if dumper is None:  # an OmegaConf without its dumper class where it was: its own path
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(OmegaConf.create(container))
    return yaml.dump(container, Dumper=dumper, default_flow_style=False, allow_unicode=True,
                     sort_keys=False)


@functools.cache
def _yaml_dumper() -> type | None:
    import yaml

    try:
        from omegaconf._utils import OmegaConfDumper
    except ImportError:
        return None

    class Dumper(getattr(yaml, "CDumper", yaml.Dumper)):  # type: ignore[misc]
        pass

    Dumper.add_representer(str, OmegaConfDumper.str_representer)
    return Dumper


def read_plan(job_dir: str | Path) -> dict[str, Any] | None:
    """The plan of the stack whose first job runs in `job_dir`, or None."""
    path = Path(job_dir) / PLAN_NAME
    if not path.exists():
        return None
    return json.loads(path.read_text())


def planned_members(
    job_dir: str | Path, config: dict[str, Any],
) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    """The (config, Hydra job) of every member of the stack this job leads, or None when the
    job leads none (or is not the job the plan was made for: then it runs alone)."""
    from lossbench.results import config_hash

    plan = read_plan(job_dir)
    if plan is None:
        return None
    members = [(m["config"], m["runtime"]) for m in plan["members"]]
    if config_hash(members[0][0]) != config_hash(config):
        return None
    return members


def member_folders(job_dir: str | Path) -> list[Path]:
    """The folders of the members of the stack led from `job_dir` ([job_dir] for no stack)."""
    plan = read_plan(job_dir)
    if plan is None:
        return [Path(job_dir)]
    return [Path(m["runtime"]["output_dir"]) for m in plan["members"]]

