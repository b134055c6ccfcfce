"""Words and numbers for the report: metric names a reader knows, cells with enough digits."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

METRIC_WORDS = {
    "acc": "accuracy", "f1_macro": "macro F1", "nll": "negative log-likelihood",
    "ece": "expected calibration error", "mae": "mean absolute error",
    "rmse": "root mean squared error", "r2": "R²", "auroc": "ROC AUC",
    "ap": "average precision", "f1": "F1", "brier": "Brier score",
    "precision_at_1": "precision@1", "r_precision": "R-precision", "map_at_r": "MAP@R",
    "nmi": "NMI", "ami": "AMI", "kendall_tau": "Kendall's tau", "spearman": "Spearman's rho",
    "ndcg": "NDCG", "pair_acc": "pairwise accuracy",
}
STAGE_WORDS = {"test": "test", "val": "validation", "train": "training"}
WHEN_WORDS = {"best": "at the best-validation epoch", "last": "at the last epoch"}
# Swept keys a reader sees in titles; others print as the key's last part.
KEY_WORDS = {"perturb.rate": "label noise rate", "perturb.fraction": "outlier fraction",
             "perturb.magnitude": "outlier magnitude",
             "perturb.positive_fraction": "positive fraction kept", "perturb.kind": "noise kind",
             "task.input_scale": "input scale", "optimizer.lr": "learning rate"}


def metric_words(column: str | None) -> str:
    """'best/test/acc' -> 'test accuracy at the best-validation epoch'; 'val/mae' likewise."""
    if not column:
        return "selection metric"
    parts = column.split("/")
    when = parts.pop(0) if parts[0] in WHEN_WORDS else None
    stage = STAGE_WORDS.get(parts[0], parts[0]) if len(parts) > 1 else ""
    name = METRIC_WORDS.get(parts[-1], parts[-1].replace("_", " "))
    text = f"{stage} {name}".strip()
    return f"{text} {WHEN_WORDS[when]}" if when else text


def short_metric(column: str | None) -> str:
    """'best/test/acc' -> 'test accuracy' (for axes and sentences that say the epoch once)."""
    return metric_words("/".join((column or "").split("/")[-2:]))


def mode_words(mode: str) -> str:
    return "higher is better" if mode == "max" else "lower is better"


def key_words(key: str) -> str:
    """A swept key as words: 'perturb.rate' -> 'label noise rate', 'loss.gamma' -> 'gamma'."""
    return KEY_WORDS.get(key, key.rsplit(".", 1)[-1].replace("_", " "))


def isnan(value: Any) -> bool:
    try:
        return value is None or (isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False


def fmt(value: Any, digits: int = 4) -> str:
    """Compact cell text: `digits` significant digits, blanks for missing."""
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def separating_digits(values: Sequence[float], least: int = 3, most: int = 7) -> int:
    """Fewest significant digits (>= least) at which distinct values print distinctly.

    Values are compared at 7 significant digits: float32 metrics differ in the 8th by noise.
    """
    nums = sorted({float(f"{float(v):.7g}") for v in values
                   if not isnan(v) and math.isfinite(float(v))})
    for digits in range(least, most + 1):
        if len({f"{v:.{digits}g}" for v in nums}) == len(nums):
            return digits
    return most


def ci_text(mean: Any, lo: Any, hi: Any, digits: int = 4) -> str:
    """`mean [lo, hi]`, or the mean alone when the interval is a point (one seed)."""
    if not fmt(mean):
        return ""
    if lo == hi == mean or not fmt(lo):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def kv_text(keys: list[str], values: Any, sep: str = ", ") -> str:
    """Settings as `k=v` pairs, unset ones left out."""
    return sep.join(f"{k}={fmt(v)}" for k, v in zip(keys, values, strict=True) if fmt(v))


def md_cell(value: Any) -> str:
    """A markdown table cell: pipes escaped so a user's name cannot split the row."""
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def md_table(rows: list[dict[str, Any]]) -> str:
    """A GitHub markdown table without needing tabulate."""
    if not rows:
        return "_none_\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(map(md_cell, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md_cell(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def slug(*parts: Any) -> str:
    """File-name-safe name from task and setting values."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "_".join(str(p) for p in parts if str(p))).strip("_")


def join_words(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def p_text(p: float) -> str:
    """A p-value or probability for a sentence: two decimals, or '< 0.001'."""
    if isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3g}" if p < 0.01 else f"{p:.2f}"
