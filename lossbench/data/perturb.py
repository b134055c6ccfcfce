"""Seeded perturbations of the training split (outliers, label noise, imbalance) for robustness."""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lossbench.task_kinds import TASK_KINDS

LABEL_NOISE_KINDS = ("pairflip", "symmetric")
# Fixed salt so these draws never coincide with other consumers of the same seed.
_SALT = 0x5EED_7E57

Params = dict[str, Any]
# apply(x, y, rng, params, num_classes) -> (x_new, y_new, n_affected)
ApplyFn = Callable[
    [np.ndarray, np.ndarray, np.random.Generator, Params, int | None],
    tuple[np.ndarray, np.ndarray, int],
]


@dataclass(frozen=True)
class PerturbResult:
    """Perturbed training split plus a JSON-serialisable record of what was changed."""

    x: np.ndarray
    y: np.ndarray
    info: dict[str, Any]


@dataclass(frozen=True)
class Perturbation:
    """One registered perturbation: which task kinds it fits, its defaults, how to apply it."""

    name: str
    summary: str
    fits: tuple[str, ...]
    defaults: Mapping[str, Any]
    check: Callable[[Params], Params]
    apply: ApplyFn


# ---------------------------------------------------------------- validation helpers


def _show(value: Any) -> str:
    """Render a bad value for a one-line error message (quoted if a string, never multi-line)."""
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _real(key: str, value: Any, allowed: str, ok: Callable[[float], bool]) -> float:
    """Read a real number parameter; bools and strings are rejected so typos fail loudly."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"perturb.{key} must be a number in {allowed}, got {_show(value)}")
    number = float(value)
    if not ok(number):  # NaN fails every comparison and lands here too
        raise ValueError(f"perturb.{key} must be in {allowed}, got {_show(value)}")
    return number


def _fraction_below_one(key: str, value: Any) -> float:
    """A fraction in [0, 1): 1 would perturb every sample, which leaves no signal."""
    return _real(key, value, "[0, 1)", lambda v: 0.0 <= v < 1.0)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Read a string parameter restricted to a fixed set of choices."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"perturb.{key} must be one of: {', '.join(allowed)}, got {_show(value)}")
    return value


def _check_seed(seed: Any) -> int:
    """Seeds feed numpy's SeedSequence, which only takes non-negative integers."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {_show(seed)}")
    return int(seed)


def _check_arrays(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Inputs must be row-aligned and non-empty; anything else is a caller bug."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.ndim < 1:
        raise ValueError(f"x and y need a sample axis, got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y have different sample counts: {x.shape[0]} vs {y.shape[0]}")
    if y.shape[0] == 0:
        raise ValueError("training split is empty (need at least 1 sample)")
    return x, y


def _check_targets(y: np.ndarray) -> None:
    """Outlier shifts are in target-std units, so targets must be finite numbers."""
    if y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"targets must be numeric for perturb=outliers, got dtype {y.dtype}")
    if not np.all(np.isfinite(y)):
        raise ValueError("targets must be finite for perturb=outliers (found NaN or inf)")


def _check_labels(y: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int]:
    """Return labels as int64 plus the class count; labels must be integers in [0, C)."""
    if y.ndim != 1 or y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"labels must be a 1-D numeric array, got shape {y.shape} {y.dtype}")
    labels = y.astype(np.int64)
    if not np.array_equal(labels, y):
        raise ValueError("labels must be whole numbers (class indices)")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(f"num_classes must be an integer >= 2, got {_show(num_classes)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 to change labels, got {num_classes}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    return labels, int(num_classes)


def _count(fraction: float, n: int) -> int:
    """Exact number of samples to touch: round(fraction * n) (Python's round)."""
    return int(round(fraction * n))


# ---------------------------------------------------------------- perturbations


def _check_none(params: Params) -> Params:
    """`none` has no parameters."""
    return params


def _apply_none(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, params: Params, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return copies so callers can never alias the clean data."""
    return x.copy(), y.copy(), 0


def _check_outliers(params: Params) -> Params:
    """fraction in [0, 1); magnitude a finite positive number of target stds."""
    return {
        "fraction": _fraction_below_one("fraction", params["fraction"]),
        "magnitude": _real(
            "magnitude", params["magnitude"], "(0, inf)", lambda v: 0.0 < v < math.inf
        ),
    }


def _apply_outliers(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, params: Params, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Shift round(fraction*n) targets by ±magnitude training-target stds (sign is random).

    The permutation and signs are drawn for all n samples so that, for one seed, a larger
    fraction corrupts a superset of the samples a smaller fraction corrupts.
    """
    _check_targets(y)
    n = y.shape[0]
    order = rng.permutation(n)
    signs = rng.choice(np.array([-1.0, 1.0]), size=n)
    chosen = order[: _count(params["fraction"], n)]
    std = np.std(y.astype(np.float64), axis=0)
    shift = signs[: chosen.size].reshape((-1,) + (1,) * (y.ndim - 1)) * params["magnitude"] * std
    out = y.astype(np.result_type(y.dtype, np.float32), copy=True)
    out[chosen] = out[chosen] + shift
    return x.copy(), out, int(chosen.size)


def _check_label_noise(params: Params) -> Params:
    """rate in [0, 1); kind symmetric or pairflip."""
    return {
        "rate": _fraction_below_one("rate", params["rate"]),
        "kind": _choice("kind", params["kind"], LABEL_NOISE_KINDS),
    }


def _apply_label_noise(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, params: Params, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Change exactly round(rate*n) labels, each to a different class.

    symmetric: add a uniform offset in [1, C) mod C, i.e. a uniformly random *other* class.
    pairflip: c -> (c + 1) mod C. Draws cover all n samples so rates nest for one seed.
    """
    labels, n_classes = _check_labels(y, num_classes)
    n = labels.shape[0]
    order = rng.permutation(n)
    offsets = rng.integers(1, n_classes, size=n)
    chosen = order[: _count(params["rate"], n)]
    step = offsets[: chosen.size] if params["kind"] == "symmetric" else 1
    labels[chosen] = (labels[chosen] + step) % n_classes
    return x.copy(), labels.astype(y.dtype), int(chosen.size)


def _check_imbalance(params: Params) -> Params:
    """positive_fraction in (0, 1]: 0 would remove the positive class entirely."""
    return {
        "positive_fraction": _real(
            "positive_fraction", params["positive_fraction"], "(0, 1]", lambda v: 0.0 < v <= 1.0
        )
    }


def _apply_imbalance(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, params: Params, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep max(1, round(frac*n_pos)) positives (label 1), drop the rest, keep row order."""
    labels, _ = _check_labels(y, 2)
    positives = np.flatnonzero(labels == 1)
    if positives.size == 0:
        raise ValueError("perturb=imbalance needs at least one positive (label 1) training sample")
    n_keep = max(1, _count(params["positive_fraction"], positives.size))
    keep = labels != 1
    keep[rng.permutation(positives)[:n_keep]] = True
    return x[keep], y[keep], int(positives.size - n_keep)


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation(
            name="none",
            summary="leave the training split unchanged",
            fits=TASK_KINDS,
            defaults={},
            check=_check_none,
            apply=_apply_none,
        ),
        Perturbation(
            name="outliers",
            summary="shift a fraction of targets by magnitude training-target stds",
            fits=("regression", "ranking"),
            defaults={"fraction": 0.1, "magnitude": 5.0},
            check=_check_outliers,
            apply=_apply_outliers,
        ),
        Perturbation(
            name="label_noise",
            summary="change a fraction of labels to another class (symmetric or pairflip)",
            fits=("binary", "multiclass", "embedding"),
            defaults={"rate": 0.2, "kind": "symmetric"},
            check=_check_label_noise,
            apply=_apply_label_noise,
        ),
        Perturbation(
            name="imbalance",
            summary="keep only a fraction of the positive-class training samples",
            fits=("binary",),
            defaults={"positive_fraction": 0.2},
            check=_check_imbalance,
            apply=_apply_imbalance,
        ),
    )
}


# ---------------------------------------------------------------- public entry points


def list_perturbations() -> list[str]:
    """Names accepted by perturb_train (and by the Hydra group conf/perturb)."""
    return sorted(PERTURBATIONS)


def _lookup(name: Any, task_kind: Any) -> Perturbation:
    """Resolve the perturbation and check it makes sense for the task kind."""
    if task_kind not in TASK_KINDS:
        raise ValueError(
            f"unknown task kind {_show(task_kind)} (choose from: {', '.join(TASK_KINDS)})"
        )
    if not isinstance(name, str) or name not in PERTURBATIONS:
        raise ValueError(
            f"unknown perturb {_show(name)} (choose from: {', '.join(list_perturbations())})"
        )
    spec = PERTURBATIONS[name]
    if task_kind not in spec.fits:
        raise ValueError(
            f"perturb={name} does not fit task kind '{task_kind}' (fits: {', '.join(spec.fits)})"
        )
    return spec


def _resolve_params(spec: Perturbation, params: Mapping[str, Any]) -> Params:
    """Reject unknown keys (typos would otherwise silently use defaults), fill and validate."""
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        allowed = ", ".join(spec.defaults) or "none"
        raise ValueError(
            f"perturb={spec.name} has no parameter '{unknown[0]}' (allowed: {allowed})"
        )
    return spec.check({**spec.defaults, **params})


def _rng(seed: int, name: str) -> np.random.Generator:
    """Private generator keyed only by seed and perturbation name: never global RNG state."""
    return np.random.default_rng([seed, _SALT, zlib.crc32(name.encode())])


def perturb_train(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    task_kind: str,
    num_classes: int | None = None,
    **params: Any,
) -> PerturbResult:
    """Perturb the training split deterministically for `seed`.

    The draw depends only on seed, perturbation name, parameters and sample count, so every
    loss trained with the same seed sees exactly the same corrupted data. Inputs are never
    modified in place. Raises ValueError (one line) on bad names, parameters or task kinds.
    """
    spec = _lookup(name, task_kind)
    resolved = _resolve_params(spec, params)
    seed = _check_seed(seed)
    x, y = _check_arrays(x, y)
    if task_kind == "binary" and num_classes is None:
        num_classes = 2  # an all-negative split must still flip to class 1
    new_x, new_y, n_affected = spec.apply(x, y, _rng(seed, name), resolved, num_classes)
    if name == "none":
        return PerturbResult(new_x, new_y, {"name": "none"})
    info = {
        "name": name,
        **resolved,
        "n_train_before": int(y.shape[0]),
        "n_affected": n_affected,
        "n_train_after": int(new_y.shape[0]),
    }
    return PerturbResult(new_x, new_y, info)
