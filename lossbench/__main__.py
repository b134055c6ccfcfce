"""Command line: `python -m lossbench task=... loss=...` (Hydra); bad input gets one line."""

from __future__ import annotations

import os
import sys
from importlib import resources
from typing import Any

import hydra
from omegaconf import DictConfig

from lossbench.sweep import new_invocation_uid, register_resolvers

CONFIG_GROUPS = (
    "task", "loss", "model", "optimizer", "trainer", "logger", "perturb", "experiment", "tune",
    "suite",
)
# Statuses of the runs this process ran (one for a single run).
_STATUSES: list[dict[str, Any]] = []


def group_options(group: str) -> list[str]:
    """The options of a config group: the yaml files in conf/<group>/."""
    folder = resources.files("lossbench.conf").joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def known_keys(group: str) -> set[str]:
    """Every key any option of a config group sets (e.g. task.data_path, set by image tasks)."""
    import yaml

    keys: set[str] = set()
    for folder_name in (group, f"{group}_base"):  # task_base/: what image tasks share
        folder = resources.files("lossbench.conf").joinpath(folder_name)
        for option in group_options(folder_name):
            node = yaml.safe_load(folder.joinpath(f"{option}.yaml").read_text()) or {}
            keys.update(k for k in node if k != "defaults")
    return keys


# `+group.key=` appends a key the group's config lacks: fine where something reads it.
# Constructor arguments, checked against the class itself: a loss's, a model's, an optimizer's,
# a schedule's; callbacks are named entries of their own.
OPEN_GROUPS = ("loss", "model", "optimizer", "scheduler", "callbacks")


def check_appended_keys(argv: list[str]) -> str | None:
    """One line for a `+key=value` that nothing reads (it would be accepted and ignored)."""
    import difflib

    import yaml

    # Keys config.yaml has (seed, divergence.loss_factor): `++` sets them, Hydra refuses `+`.
    top = yaml.safe_load(resources.files("lossbench.conf").joinpath("config.yaml").read_text())
    top_keys = set(top) | {f"{k}.{s}" for k, v in top.items() if isinstance(v, dict) for s in v}
    for arg in argv:
        if not arg.startswith("+") or "=" not in arg:  # `++key=` too: it adds what is missing
            continue
        key = arg.lstrip("+").partition("=")[0]
        group, _, leaf = key.partition(".")
        if key in CONFIG_GROUPS or group == "hydra" or (leaf and group in OPEN_GROUPS):
            continue
        if key in top_keys:
            continue
        if leaf and group in CONFIG_GROUPS and leaf.partition(".")[0] in known_keys(group):
            continue
        candidates = [f"{g}.{k}" for g in ("task", "trainer", "model", "optimizer", "logger",
                                           "perturb") for k in known_keys(g)]
        close = difflib.get_close_matches(leaf or key, [c.partition(".")[2] for c in candidates])
        hint = next((c for c in candidates if close and c.endswith(f".{close[0]}")), None)
        known = f"; did you mean {hint}=...?" if hint else ""
        return (f"unknown key '{key}' in '{arg}': nothing reads it{known} "
                f"(+ appends only keys a config can take; see python -m lossbench --help)")
    return None


# Hydra's own command-line flags (python -m lossbench --hydra-help lists them).
HYDRA_FLAGS = (
    "-m", "--multirun", "-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "--resolve",
    "-p", "--package", "-i", "--info", "-cp", "--config-path", "-cn", "--config-name", "-cd",
    "--config-dir", "-r", "--run", "-sc", "--shell-completion", "--experimental-rerun",
)


def check_flags(argv: list[str]) -> str | None:
    """One line for a flag Hydra does not know (its argparse prints its whole usage)."""
    for arg in argv:
        if arg.startswith("-") and "=" not in arg and arg not in HYDRA_FLAGS:
            return (f"unknown flag '{arg}' (overrides are key=value; flags: -m for a sweep, "
                    "--help, --hydra-help, --cfg job)")
    return None


def check_group_choices(argv: list[str]) -> str | None:
    """One line for the first `group=option` naming no config file (Hydra prints a screenful)."""
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in CONFIG_GROUPS:
            continue
        single = ("task", "loss", "model", "optimizer", "trainer", "logger", "perturb")
        if key in single and value.strip().startswith("["):  # Hydra merges them: the last wins
            return (f"{key}={value} names several; a run takes one {key}, a sweep several: "
                    f"python -m lossbench -m {key}={value.strip().strip('[]')}")
        options = group_options(key)
        for choice in value.strip("[]").split(","):  # a list selects several: callbacks=[a,b]
            choice = choice.strip()
            if choice and choice not in options and not choice.startswith(("range(", "glob(")):
                return f"unknown {key} '{choice}' (choose from: {', '.join(options)})"
    return None


@hydra.main(version_base="1.3", config_path="pkg://lossbench.conf", config_name="config")
def hydra_entry(cfg: DictConfig) -> float:
    """One Hydra job: run it, print its summary, return the selection metric (for sweepers)."""
    from lossbench.console import print_run_summary
    from lossbench.tasks import SELECTION

    # task.kind=auto is resolved per run (from the data): its direction is unknown here.
    worst = float("inf") if SELECTION.get(cfg.task.kind, ("", "max"))[1] == "min" else float("-inf")
    values = []
    for results in run_job(cfg):
        _STATUSES.append(results)
        print_run_summary(results)
        best = (results.get("metrics") or {}).get("best") or {}
        metric = (results.get("selection") or {}).get("metric")
        # A diverged or failed trial scores the worst possible value, whatever epoch it blew
        # up in (its best epoch before that is no result), so a study (Optuna) goes on.
        ok = results.get("status") == "ok" and metric and best.get(metric) is not None
        values.append(best[metric] if ok else worst)
    return sum(values) / len(values) if values else worst


def job_seeds(cfg: DictConfig) -> list[int] | None:
    """`seeds=5`: seeds seed..seed+4 trained together; `seeds=[0,3,7]`: those; null: one run."""
    seeds = cfg.get("seeds")
    if seeds is None:
        return None
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(int(cfg.seed), int(cfg.seed) + seeds)) if seeds > 0 else []
    from omegaconf import ListConfig

    whole = [s for s in seeds if isinstance(s, int) and not isinstance(s, bool) and s >= 0] \
        if isinstance(seeds, list | ListConfig) else []
    # Anything else (seeds=three, seeds=1.5, [0.5, 1]) is refused: no seed is rounded.
    return whole if whole and len(whole) == len(seeds) else []


def run_job(cfg: DictConfig) -> list[dict[str, Any]]:
    """One run, the stack the sweeper planned this job to lead (every member's results), or
    several seeds of the config trained at once (`seeds=`)."""
    from lossbench.gc_tuning import freeze_imports

    freeze_imports()
    from omegaconf.errors import OmegaConfBaseException

    from lossbench.environment import to_plain
    from lossbench.run import run

    try:  # an interpolation that does not resolve (${oc.env:UNSET}, ${nope}): one line
        to_plain(cfg)
    except OmegaConfBaseException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return [{"status": "failed", "reason": f"the config does not resolve: {first}"}]
    seeds = job_seeds(cfg)
    if seeds is None:
        from lossbench.environment import hydra_runtime
        from lossbench.stack_plan import planned_members

        runtime = hydra_runtime()
        members = planned_members(runtime["output_dir"], to_plain(cfg)) if runtime else None
        if members is not None:  # the sweeper planned this job to train a stack of others
            from lossbench.run import run_jobs

            return run_jobs(members)
        return [run(cfg)]
    from lossbench.stack import run_seeds

    if not seeds or len(set(seeds)) != len(seeds):
        return [{"status": "failed", "reason": (
            f"seeds must be a positive count (seeds=5) or a list of distinct seeds "
            f"(seeds=[0,3,7]), got {cfg.get('seeds')!r}")}]
    try:
        return run_seeds(cfg, seeds)
    except ValueError as err:
        return [{"status": "failed", "reason": str(err).splitlines()[0]}]


def full_error() -> bool:
    """`HYDRA_FULL_ERROR=1`: show Hydra's own errors and tracebacks instead of one line."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def one_line_error(err: BaseException) -> str:
    """Hydra's multi-line error (override syntax, key not in config) as one line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    override = getattr(err, "override", None)
    if override:
        text = f"bad override '{override}': {text}"
    hint = next((line for line in lines[1:] if line.startswith("To append")), None)
    cause = err.__cause__
    if cause is not None:
        cause_lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
        if cause_lines and cause_lines[0] not in text:
            text = f"{text.rstrip('.')}: {cause_lines[0]}"
    if hint:
        # Hydra's `+key=value` would be refused when nothing reads the key: say that instead
        # (`download=false` was told to try `+download=false`, which is refused).
        refused = check_appended_keys(hint.split()[-1:])
        if refused:
            text = f"{text.rstrip('.')}: {refused.partition(': ')[2]}"
        else:
            text = f"{text} ({hint[0].lower()}{hint[1:]})"
    return text


def _report_in_one_line(func: Any) -> Any:
    """Stands in for Hydra's run_and_report: bad input is one line on stderr, exit code 2."""
    try:
        return func()
    except Exception as err:
        print(f"lossbench: error: {one_line_error(err)} (HYDRA_FULL_ERROR=1 for the traceback)",
              file=sys.stderr)
        sys.exit(2)


def interrupted_line(current: dict[str, Any] | None, argv: list[str]) -> str:
    """What Ctrl-C prints: how far the sweep got and the command that picks it up again."""
    import shlex

    if current is None:
        return "lossbench: interrupted; this run wrote no results.json (run it again)"
    from lossbench.sweep import finished_jobs

    done = finished_jobs(current["dir"])
    again = [a for a in argv if not a.startswith("resume=")] + ["resume=true"]
    command = "python -m lossbench " + " ".join(shlex.quote(a) for a in again)
    return (f"lossbench: interrupted after {done} of {current['total'] or '?'} jobs "
            f"(results in {current['dir']}); resume with: {command}")


def register_sweeper() -> None:
    """Stand lossbench's sweeper in for Hydra's basic one (`hydra/sweeper=basic`, the default):
    the same grid and options, each job's config composed once instead of twice. A config
    that picks another sweeper (`+tune=...` picks Optuna) still gets it.

    Hydra's plugin scan runs first: it re-runs the modules of Hydra's own plugins, storing
    their configs again and redefining the classes this sweeper must subclass."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    from hydra_plugins.lossbench_sweeper.compose_once import (
        LossbenchSweeper,
        LossbenchSweeperConf,
    )

    plugins.register(LossbenchSweeper)  # the scan misses it in an editable install
    ConfigStore.instance().store(
        group="hydra/sweeper", name="basic", node=LossbenchSweeperConf, provider="lossbench")


def main() -> None:
    from lossbench import gc_tuning

    try:
        _main()
    finally:
        gc_tuning.freeze_before_exit()


def _main() -> None:
    register_resolvers()
    register_sweeper()
    new_invocation_uid()
    if not full_error():
        problem = (check_flags(sys.argv[1:]) or check_group_choices(sys.argv[1:])
                   or check_appended_keys(sys.argv[1:]))
        if problem:
            print(f"lossbench: error: {problem}", file=sys.stderr)
            sys.exit(2)
        import hydra._internal.utils as hydra_utils

        hydra_utils.run_and_report = _report_in_one_line
    from lossbench import sweep
    from lossbench.environment import catch_interrupts, raise_if_interrupted

    catch_interrupts()
    try:
        hydra_entry()
        raise_if_interrupted()
    except KeyboardInterrupt:
        print(interrupted_line(sweep.CURRENT_SWEEP, sys.argv[1:]), file=sys.stderr)
        sys.exit(130)

    if sweep.LAST_SWEEP is not None:
        bad = sweep.LAST_SWEEP["failed"] + sweep.LAST_SWEEP["missing"]
        if bad:
            print(f"lossbench: {bad} job(s) of the sweep failed; see {sweep.LAST_SWEEP['dir']}",
                  file=sys.stderr)
            sys.exit(1)
    elif _STATUSES and all(r["status"] == "failed" for r in _STATUSES):
        print(f"lossbench: error: {_STATUSES[0]['reason']}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
