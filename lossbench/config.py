"""Compose lossbench's Hydra config from Python (tests, notebooks): the CLI's config, no CLI."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python -m lossbench <overrides>` would run, for `lossbench.run.run(cfg)`."""
    from hydra import compose, initialize_config_module

    from lossbench.sweep import register_resolvers

    register_resolvers()
    with initialize_config_module("lossbench.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))
