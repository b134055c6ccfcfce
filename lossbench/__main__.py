"""Command line: `python -m lossbench task=... loss=...` (Hydra); bad input gets one line."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

import hydra
from omegaconf import DictConfig

from lossbench.sweep import new_invocation_uid, register_resolvers

CONFIG_GROUPS = ("task", "loss", "model", "optimizer", "trainer", "logger", "perturb", "experiment")
# Statuses of the runs this process ran (one for a single run).
_STATUSES: list[dict[str, Any]] = []


def group_options(group: str) -> list[str]:
    """The options of a config group: the yaml files in conf/<group>/."""
    folder = resources.files("lossbench.conf").joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def check_group_choices(argv: list[str]) -> str | None:
    """One line for the first `group=option` naming no config file (Hydra prints a screenful)."""
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in CONFIG_GROUPS:
            continue
        options = group_options(key)
        for choice in value.split(","):
            choice = choice.strip()
            if choice and choice not in options and not choice.startswith(("range(", "glob(")):
                return f"unknown {key} '{choice}' (choose from: {', '.join(options)})"
    return None


@hydra.main(version_base="1.3", config_path="pkg://lossbench.conf", config_name="config")
def hydra_entry(cfg: DictConfig) -> float | None:
    """One Hydra job: run it, print its summary, return the selection metric (for sweepers)."""
    from lossbench.console import print_run_summary
    from lossbench.run import run

    results = run(cfg)
    _STATUSES.append(results)
    print_run_summary(results)
    best = (results.get("metrics") or {}).get("best") or {}
    metric = (results.get("selection") or {}).get("metric")
    return best.get(metric) if metric else None


def main() -> None:
    register_resolvers()
    new_invocation_uid()
    problem = check_group_choices(sys.argv[1:])
    if problem:
        print(f"lossbench: error: {problem}", file=sys.stderr)
        sys.exit(2)
    hydra_entry()
    from lossbench import sweep

    if sweep.LAST_SWEEP is not None:
        bad = sweep.LAST_SWEEP["failed"] + sweep.LAST_SWEEP["missing"]
        if bad:
            print(f"lossbench: {bad} job(s) of the sweep failed; see {sweep.LAST_SWEEP['dir']}",
                  file=sys.stderr)
            sys.exit(1)
    elif len(_STATUSES) == 1 and _STATUSES[0]["status"] == "failed":
        print(f"lossbench: error: {_STATUSES[0]['reason']}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
