"""A batch's job configs, composed by Hydra once per shape of overrides.

Hydra composes each job from scratch: parse the overrides, build the defaults list, load and
merge every config file, apply the overrides (~0.1 s a job). In a sweep most jobs differ from
an earlier one only in plain values (`seed=3`, `perturb.rate=0.2`): same config groups, same
keys in the same order. Such a job's config is the earlier job's config with those values set,
which is what Hydra's own last step does to the composed defaults (`key=value` overrides are
applied one by one with `OmegaConf.update`). So the first job of each shape is composed by
Hydra, and the others are copies of it with their values, their override lists and their
`override_dirname` set as Hydra sets them. Anything else (a group choice, `+`, `~`, `++`, a
dict or list value, a `hydra.` key, a key set twice) makes a shape of its own.
"""

# No `from __future__ import annotations` (see compose_once).
import copy
from collections.abc import Sequence
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

SCALARS = (str, int, float, bool, type(None))


class BatchComposer:
    """`compose(overrides)` equals `loader.load_sweep_config(master, overrides)`."""

    def __init__(self, loader: ConfigLoader, master_config: DictConfig) -> None:
        self.loader = loader
        self.master = master_config
        self.parser = OverridesParser.create()
        self.parsed: dict[str, Override] = {}
        self.shapes: dict[tuple[Any, ...], tuple[list[Override], DictConfig]] = {}
        self.groups: dict[str, bool] = {}  # key -> whether it names a config group
        self.composed_by_hydra = 0

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = [self._parse(line) for line in overrides]
        shape = self._shape(parsed)
        if shape is not None and shape in self.shapes:
            first, config = self.shapes[shape]
            return self._derive(config, first, parsed)
        config = self.loader.load_sweep_config(self.master, list(overrides))
        self.composed_by_hydra += 1
        if shape is not None and self._plain_keys(parsed, config):
            self.shapes[shape] = (parsed, copy.deepcopy(config))
        return config

    def _parse(self, line: str) -> Override:
        if line not in self.parsed:
            self.parsed[line] = self.parser.parse_overrides([line])[0]
        return self.parsed[line]

    def _is_value(self, override: Override) -> bool:
        """A plain `key=<scalar>` of the job's own config (not a config group's choice)."""
        if not (override.type == OverrideType.CHANGE and override.package is None
                and not override.is_sweep_override() and not override.is_hydra_override()
                and isinstance(override.value(), SCALARS)):
            return False
        key = override.key_or_group
        if key not in self.groups:
            repository = getattr(self.loader, "repository", None)
            self.groups[key] = repository is None or repository.group_exists(key)
        return not self.groups[key]

    def _shape(self, parsed: list[Override]) -> tuple[Any, ...] | None:
        """The overrides with each plain value's value left out; None when a key is set twice
        or two plain values' keys nest (then the order they are applied in matters)."""
        keys = [o.key_or_group for o in parsed]
        values = [o.key_or_group for o in parsed if self._is_value(o)]
        if len(set(keys)) != len(keys) or any(
                b.startswith(a + ".") for a in values for b in values):
            return None
        return tuple(("value", o.key_or_group) if self._is_value(o) else ("line", o.input_line)
                     for o in parsed)

    def _plain_keys(self, parsed: list[Override], config: DictConfig) -> bool:
        """Whether Hydra chose no config for a plain value's key (a group the repository did
        not list, from a search path the primary config adds)."""
        choices = config.hydra.runtime.choices
        return not any(self._is_value(o) and o.key_or_group in choices for o in parsed)

    def _derive(
        self, config: DictConfig, first: list[Override], parsed: list[Override],
    ) -> DictConfig:
        """`config` (composed for `first`) with `parsed`'s values, as Hydra would compose it."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

        derived = copy.deepcopy(config)
        changed = [o for o, f in zip(parsed, first, strict=True) if o.input_line != f.input_line]
        ConfigLoaderImpl._apply_overrides_to_config(changed, derived)
        task = [o for o in parsed if not o.is_hydra_override()]  # hydra.* lines are the same
        derived.hydra.overrides.task = [o.input_line for o in task]
        dirname = derived.hydra.job.config.override_dirname
        derived.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep,
            exclude_keys=dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=self.master, to_config=derived)
        return derived
