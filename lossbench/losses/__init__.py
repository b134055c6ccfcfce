"""Every loss lossbench compares, behind one registry: list, build and register losses."""

from lossbench.losses import (  # noqa: F401  (registration on import)
    custom,
    embedding_losses,
    ranking_losses,
    torch_losses,
)
from lossbench.losses.adapter import TaskLoss, build_loss
from lossbench.losses.registry import (
    INPUTS,
    TARGETS,
    TASK_KINDS,
    LossSpec,
    Param,
    all_specs,
    list_losses,
    register_loss,
    spec_for,
)

__all__ = [
    "INPUTS", "TARGETS", "TASK_KINDS", "LossSpec", "Param", "TaskLoss", "all_specs",
    "build_loss", "list_losses", "register_loss", "spec_for",
]
