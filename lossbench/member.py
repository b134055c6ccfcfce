"""One trained model's record, epoch by epoch: the same for a single run and a stack member.

A single run (lossbench.module) keeps one `MemberRecord`, a stack (lossbench.stack) one per
member. Either way the record judges each epoch by the divergence rule, keeps the history
and the best-validation epoch by the task's fixed selection metric, and writes the training
keys of results.json (`training_results`). Holding that in one place is what keeps a stacked
member's results.json the same as its job's run alone.
"""

from __future__ import annotations

from typing import Any

from lossbench.divergence import DivergenceRule
from lossbench.divergence import reason as divergence_reason
from lossbench.tasks import SELECTION, is_better


class MemberRecord:
    """History, best epoch and divergence of one model on a task kind."""

    def __init__(self, kind: str, rule: DivergenceRule) -> None:
        self.kind, self.rule = kind, rule
        self.selection, self.mode = SELECTION[kind]
        self.history: list[dict[str, float]] = []
        # The best-validation weights live with their epoch: no checkpoint files.
        self.best: dict[str, Any] = {"epoch": None, "value": None, "state": None}
        self.diverged_epoch: int | None = None
        self.divergence: dict[str, Any] | None = None  # the rule that fired, and its epoch
        self.first_loss: float | None = None  # the first epoch's mean training loss

    @property
    def alive(self) -> bool:
        return self.diverged_epoch is None

    def record(
        self, epoch: int, row: dict[str, float], finite: bool, trivial_error: float | None,
    ) -> bool:
        """Judge and record one epoch's row (`train/loss`, `val/...`); False when it diverged
        (then the row is not history: the model is frozen as it was)."""
        value = row[f"val/{self.selection}"]
        error = value if self.mode == "min" else None
        fired = self.rule.check(
            row["train/loss"], self.first_loss, finite, error, trivial_error, value)
        if fired is not None:
            self.diverged_epoch = epoch
            self.divergence = {**fired, "epoch": epoch}
            return False
        if self.first_loss is None:
            self.first_loss = row["train/loss"]
        self.history.append({"epoch": epoch, **row})
        return True

    def improved(self, value: float) -> bool:
        """Whether `value` of the selection metric beats the best epoch so far."""
        return is_better(self.kind, value, self.best["value"])

    def keep_best(self, epoch: int, value: float, state: dict[str, Any]) -> None:
        self.best = {"epoch": epoch, "value": value, "state": state}

    def final_metrics(
        self, last_epoch: int, last: dict[str, float] | None, best: dict[str, float] | None,
    ) -> dict[str, Any]:
        """results.json's `metrics`: the last weights' (unless diverged), then the best's."""
        metrics: dict[str, Any] = {}
        if self.alive and last is not None:
            metrics["last"] = {"epoch": last_epoch, **last}
        if self.best["epoch"] is not None and best is not None:
            metrics["best"] = {"epoch": self.best["epoch"], **best}
        return metrics

    def results(
        self, data: Any, metrics: dict[str, Any], baselines: dict[str, Any],
        config: dict[str, Any], stopped_early: Any = None,
    ) -> dict[str, Any]:
        """The training keys of results.json, in the order a run writes them."""
        from lossbench.parts import instantiated

        diverged = self.divergence is not None
        return {
            "status": "diverged" if diverged else "ok",
            "reason": divergence_reason(self.divergence) if diverged else None,
            "divergence": self.divergence,
            "selection": {"metric": f"val/{self.selection}", "mode": self.mode},
            "data": getattr(data, "info", None) or {"source": "bundled", "dataset": data.dataset},
            "perturb": data.perturb,
            "metrics": metrics,
            "stopped_early": stopped_early,
            "instantiated": instantiated(config),
            "baselines": baselines,
            "history": self.history,
            "epochs": len(self.history) + int(diverged),
            "diverged_epoch": self.diverged_epoch,
        }
