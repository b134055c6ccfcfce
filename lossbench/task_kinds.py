"""The facts of each task kind, in one table: what every other module asks about a kind.

A kind says how a loss on it is judged (the selection metric and whether lower is better),
what its labels naturally are (the target a loss receives unless it declares another), the
shape of the model's head, whether its runs can be stacked into one vectorised model, and which
module adds its metrics and extras (batch order, baselines) when they are not tasks.py's own.
Perturbations and losses declare the kinds they fit themselves (data/perturb.py, the loss
registry), as a loss declares its contract. No torch import: configs are checked with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskKind:
    name: str
    selection: str  # the metric every loss is judged and checkpoint-selected by
    mode: str  # "min" or "max": which way the selection metric improves
    natural_target: str  # float | index | labels: what the labels are before any contract
    head: str  # "one" output, one per "class", or "embedding" (model.embedding_dim)
    stackable: bool  # runs of it can train as members of one vmap stack
    natural_loss: str  # the loss `loss=auto` picks for it (a table whose kind is inferred)
    plugin: str | None = None  # module registering its metrics and extras, imported on use

    @property
    def scalar_head(self) -> bool:
        """Its natural output is one number per sample: (N,), not (N, 1)."""
        return self.head == "one"


KINDS: dict[str, TaskKind] = {k.name: k for k in (
    TaskKind("regression", "mae", "min", "float", "one", stackable=True, natural_loss="mse"),
    TaskKind("binary", "auroc", "max", "float", "one", stackable=True,
             natural_loss="bce_logits"),
    TaskKind("multiclass", "acc", "max", "index", "class", stackable=True, natural_loss="ce"),
    TaskKind("embedding", "map_at_r", "max", "labels", "embedding", stackable=False,
             natural_loss="triplet", plugin="lossbench.embedding"),
    TaskKind("ranking", "kendall_tau", "max", "float", "one", stackable=False,
             natural_loss="ranknet", plugin="lossbench.ranking"),
)}
TASK_KINDS: tuple[str, ...] = tuple(KINDS)


def task_kind(name: str) -> TaskKind:
    """The kind called `name`; one line naming the kinds there are when there is none."""
    if name not in KINDS:
        raise ValueError(f"unknown task kind '{name}' (choose from: {', '.join(TASK_KINDS)})")
    return KINDS[name]
