"""When a run has blown up: one documented rule, shared by single and stacked runs.

A run is diverged at the first epoch where any of these holds (config group `divergence`):

- `nonfinite`: the training loss, any weight or the validation selection metric is NaN or
  infinite (a model whose scores are all equal has no rank correlation);
- `loss_blowup`: a later epoch's mean training loss exceeds `loss_factor` times the first
  epoch's, floored at 1 (inputs and targets are standardised, so losses start near 1; the
  floor keeps a loss that starts near 0 from tripping the rule). The first epoch is the
  reference, not the untrained model: an unbounded loss such as BCE on logits can start at
  1e4 under a large learning rate and still rank well (the stability experiment), and the
  metric judges that run;
- `metric_blowup`: for error metrics (regression MAE), the validation error exceeds
  `metric_factor` times the trivial predictor's (the training mean) on the same split.

A collapse to a constant predictor (AUROC 0.5 with a finite loss) is a result, not a blow-up:
no rule fires for it. Setting a factor to null turns that rule off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from lossbench.data.tabular import TaskData


@dataclass(frozen=True)
class DivergenceRule:
    """The factors of the rules above. Their defaults live in conf/config.yaml (`divergence`)
    only: a rule left unset here is off, and NaN/inf is always a divergence."""

    loss_factor: float | None = None
    metric_factor: float | None = None

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> DivergenceRule:
        cfg = cfg or {}
        return cls(cfg.get("loss_factor"), cfg.get("metric_factor"))

    def check(
        self, train_loss: float, first_loss: float | None, finite: bool, error: float | None,
        trivial_error: float | None, selection: float | None = None,
    ) -> dict[str, Any] | None:
        """Which rule fired and why (a dict for results.json), or None for a healthy epoch.

        `first_loss` is the first epoch's mean training loss (None in the first epoch);
        `selection` the epoch's validation selection metric."""
        if not finite or not math.isfinite(train_loss):
            return {"rule": "nonfinite", "detail": "loss or weights became NaN/inf"}
        if selection is not None and not math.isfinite(selection):
            return {"rule": "nonfinite", "detail": (
                f"the validation selection metric is {selection} (e.g. constant predictions "
                "leave a rank correlation undefined)")}
        if self.loss_factor is not None and first_loss is not None:
            floor = max(abs(first_loss), 1.0)
            if train_loss > self.loss_factor * floor:
                return {"rule": "loss_blowup", "detail": (
                    f"training loss {train_loss:.4g} > {self.loss_factor:g} x max(first "
                    f"epoch's {first_loss:.4g}, 1)")}
        bounded = None not in (self.metric_factor, error, trivial_error)
        if bounded and (not math.isfinite(error) or error > self.metric_factor * trivial_error):
            return {"rule": "metric_blowup", "detail": (
                f"validation error {error:.4g} > {self.metric_factor:g} x the trivial "
                f"predictor's {trivial_error:.4g}")}
        return None


def trivial_val_error(data: TaskData) -> Tensor | None:
    """The validation MAE of predicting the training mean (regression only), on the device.

    Regression targets are standardised with the training mean, so that predictor is 0."""
    if data.kind != "regression":
        return None
    return data.y_val.float().abs().mean() * data.target_std


def reason(divergence: dict[str, Any]) -> str:
    """The one-line reason results.json and the console show for a diverged run."""
    return f"diverged in epoch {divergence['epoch']} ({divergence['rule']}): " \
        f"{divergence['detail']}"
