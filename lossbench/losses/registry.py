"""The loss registry: each loss's name, the tasks it serves, and the input and target it takes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lossbench.task_kinds import TASK_KINDS

# What the loss wants from the model's raw head output.
INPUTS = ("raw", "probs", "log_probs")
# What the loss wants from the task's natural labels.
TARGETS = ("float", "index", "onehot", "pm1", "labels")
REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its default and the values it may take (checked before training)."""

    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    kind: str = "float"  # float | int | bool | str | floats (a list of numbers)
    choices: tuple[Any, ...] | None = None
    allow_none: bool = False
    # Single values allowed outside [low, high], e.g. focal's alpha=-1 meaning "no weighting".
    also: tuple[float, ...] = ()
    # Another form the value may take instead, e.g. focal's alpha as one weight per class.
    alternative: Param | None = None

    def _alone(self) -> Param:
        """This parameter without its alternative form."""
        return dataclasses.replace(self, alternative=None)

    def allowed(self) -> str:
        if self.alternative is not None:
            return f"{self._alone().allowed()}, or {self.alternative.allowed()}"
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "bool":
            return "true or false"
        if self.kind == "floats":
            return "a list of numbers" + (f" >= {self.low}" if self.low is not None else "")
        lo = "" if self.low is None else f"{self.low}"
        hi = "" if self.high is None else f"{self.high}"
        what = "an integer" if self.kind == "int" else "a number"
        if lo and hi:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            rng = f" in {left}{lo}, {hi}{right}"
        elif lo:
            rng = f" {'>' if self.low_open else '>='} {lo}"
        elif hi:
            rng = f" {'<' if self.high_open else '<='} {hi}"
        else:
            rng = ""
        extra = "".join(f" or {v:g}" for v in self.also)
        return what + rng + extra + (" or null" if self.allow_none else "")

    def check(self, key: str, value: Any) -> Any:
        """Return `value` coerced to this parameter's type, or raise a one-line ValueError."""
        bad = ValueError(f"{key} must be {self.allowed()}, got {value!r}")
        if self.alternative is not None:
            for form in (self._alone(), self.alternative):
                try:
                    return form.check(key, value)
                except ValueError:
                    pass
            raise bad
        if value is None:
            if self.allow_none:
                return None
            raise bad
        if self.choices is not None:
            # True == 1, so a bool would pass as the choice 1 without the isinstance check.
            if value not in self.choices or (isinstance(value, bool) and self.kind != "bool"):
                raise bad
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind == "str":
            return str(value)
        if self.kind == "floats":
            if not isinstance(value, Iterable) or isinstance(value, str):
                raise bad
            values = list(value)
            if not all(_is_number(v) and math.isfinite(v) for v in values):
                raise bad
            if self.low is not None and any(v < self.low for v in values):
                raise bad
            return [float(v) for v in values]
        # finite first: int(nan) raised its own message (threads=nan), int(inf) OverflowError
        if not _is_number(value) or isinstance(value, float) and not (
            math.isfinite(value) and (self.kind != "int" or value.is_integer())
        ):
            raise bad
        try:
            number = int(value) if self.kind == "int" else float(value)
        except OverflowError:  # an integer too large for a float
            raise bad from None
        if number in self.also:
            return number
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise bad
        if self.high is not None and (
            number > self.high or (self.high_open and number == self.high)
        ):
            raise bad
        return number


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


REDUCTION = Param("mean", kind="str", choices=REDUCTIONS)


@dataclass(frozen=True)
class LossSpec:
    """A registered loss for some task kinds: how to build it and what it consumes."""

    name: str
    factory: Callable[..., nn.Module]
    tasks: tuple[str, ...]
    input: str
    target: str
    params: dict[str, Param] = field(default_factory=dict)
    paper: str = ""
    summary: str = ""
    # Params not declared are passed through unchecked (a user's class decides).
    open_params: bool = False

    def check_params(self, hparams: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce hyperparameters; unknown names are refused with the allowed ones."""
        params = {"reduction": REDUCTION, **self.params}
        checked = {}
        for key, value in hparams.items():
            if key in params:
                checked[key] = params[key].check(f"loss.{key}", value)
            elif self.open_params:
                checked[key] = value
            else:
                allowed = ", ".join(sorted(params))
                raise ValueError(
                    f"loss '{self.name}' has no hyperparameter '{key}' (allowed: {allowed})"
                )
        return checked


_REGISTRY: dict[str, dict[str, LossSpec]] = {}


def _check_contract(name: str, tasks: Iterable[str], input: str, target: str) -> tuple[str, ...]:
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    for kind in tasks:
        if kind not in TASK_KINDS:
            raise ValueError(f"loss '{name}': unknown task kind '{kind}' (allowed: {TASK_KINDS})")
    if input not in INPUTS:
        raise ValueError(f"loss '{name}': input must be one of {INPUTS}, got {input!r}")
    if target not in TARGETS:
        raise ValueError(f"loss '{name}': target must be one of {TARGETS}, got {target!r}")
    return tasks


def add_spec(spec: LossSpec, *, replace: bool = False) -> LossSpec:
    """Put `spec` in the registry for each of its task kinds."""
    by_task = _REGISTRY.setdefault(spec.name, {})
    for kind in spec.tasks:
        if kind in by_task and not replace and by_task[kind].factory is not spec.factory:
            raise ValueError(f"loss '{spec.name}' is already registered for task '{kind}'")
        by_task[kind] = spec
    return spec


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph on one line: the whole first sentence, never a cut line."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def register_loss(
    name: str,
    tasks: Iterable[str] | str,
    input: str = "raw",
    target: str = "float",
    paper: str = "",
    params: dict[str, Param] | None = None,
    replace: bool = False,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Decorator registering a user's `nn.Module` subclass under `name` for `tasks`.

    `input` is what forward() receives as its first argument (raw head output, probs or
    log_probs) and `target` what it receives as its second (float, index, onehot, pm1, labels).
    """
    kinds = _check_contract(name, tasks, input, target)

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_loss('{name}') needs an nn.Module subclass, got {cls!r}")
        spec = LossSpec(
            name=name,
            factory=cls,
            tasks=kinds,
            input=input,
            target=target,
            params=params or {},
            paper=paper,
            summary=first_paragraph(cls.__doc__ or ""),
            open_params=params is None,
        )
        add_spec(spec, replace=replace)
        cls.lossbench_spec = spec
        return cls

    return decorate


def spec_for(name: str, task: str) -> LossSpec:
    """The spec of `name` on task kind `task`, or a one-line ValueError naming what fits."""
    if task not in TASK_KINDS:
        raise ValueError(f"unknown task kind '{task}' (choose from: {', '.join(TASK_KINDS)})")
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss '{name}' (choose from: {', '.join(list_losses())})")
    by_task = _REGISTRY[name]
    if task not in by_task:
        fits = ", ".join(list_losses(task))
        raise ValueError(f"loss '{name}' does not fit task '{task}' (losses for {task}: {fits})")
    return by_task[task]


def list_losses(task: str | None = None) -> list[str]:
    """Registered loss names, all or those serving task kind `task`."""
    return sorted(n for n, by_task in _REGISTRY.items() if task is None or task in by_task)


def all_specs() -> list[LossSpec]:
    """Every (loss, task) spec, one per distinct registration."""
    seen: dict[int, LossSpec] = {}
    for by_task in _REGISTRY.values():
        for spec in by_task.values():
            seen.setdefault(id(spec), spec)
    return sorted(seen.values(), key=lambda s: (s.name, s.tasks))
