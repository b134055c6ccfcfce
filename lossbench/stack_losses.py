"""The losses of a stack's members, called as few times a step as is safe.

Members often share a loss: `loss=ce,mae seed=0..4` is five members per loss. Members whose
loss modules are interchangeable (same class, same settings, same tensors) form a group, and a
group's loss runs once for all its members, instead of once per member: on a 75-member
label-noise stack that is 5 loss calls a step, not 75.

A group's one call is, by the first batch's evidence:
- by samples: a loss that reduces by a plain mean (torch's losses and lossbench's own have
  `reduction="mean"`) is called once with `reduction="none"` on all the group's rows, and each
  member's value is the mean of its own rows (~4x cheaper than vmap on small batches);
- else under `torch.func.vmap` over the members;
- else, when vmap cannot run it (a data-dependent shape, `.item()`, random numbers), once per
  member.
A form is used only if it gives the per-member calls' values on the first batch (a weighted
mean, such as cross entropy with class weights, does not, and goes to vmap). Either way each
member's loss is the one its own job computes, and the summed loss gives each member exactly
its own gradient.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

log = logging.getLogger(__name__)


def fingerprint(module: nn.Module) -> tuple[Any, ...]:
    """What makes two loss modules compute the same function: each submodule's class, its
    public settings and its tensors' values. Anything else (a callable, an object without a
    readable value) keeps the module in a group of its own."""
    parts: list[Any] = []
    for name, sub in module.named_modules():
        settings = []
        for key, value in sorted(vars(sub).items()):
            if key.startswith("_") or key == "training":
                continue
            if isinstance(value, Tensor):
                value = ("tensor", value.dtype, tuple(value.shape), value.detach().cpu().tolist())
            elif not isinstance(value, str | int | float | bool | type(None) | tuple | list):
                value = ("object", id(value))  # never equal across modules: no group
            settings.append((key, value))
        tensors = [(k, v.detach().cpu().tolist()) for k, v in sub.state_dict().items()]
        parts.append((name, type(sub).__module__, type(sub).__qualname__, settings, tensors))
    return tuple(repr(p) for p in parts)


class StackLosses(nn.Module):
    """Every member's loss on its own outputs and targets: (K, B, ...) -> (K,) losses."""

    def __init__(self, losses: list[nn.Module]) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for k, loss in enumerate(losses):
            try:
                key = fingerprint(loss)
            except Exception:  # unreadable settings: a group of its own
                key = ("member", k)
            groups.setdefault(key, []).append(k)
        self.groups = list(groups.values())
        # Per group: None until its first batch decides, then how it runs: "samples" (one
        # call with reduction "none" on all members' rows), "vmap", or "members" (one each).
        self.modes: list[str | None] = [None if len(g) > 1 else "members" for g in self.groups]
        self.per_sample: dict[int, nn.Module] = {}  # a group's loss with reduction "none"
        order = [k for g in self.groups for k in g]
        # A sweep lists its jobs loss by loss, so groups are usually runs of members: a slice
        # of the outputs is a view (no gather, and no scatter in the backward pass).
        self.rows = [slice(g[0], g[-1] + 1) if g == list(range(g[0], g[-1] + 1)) else g
                     for g in self.groups]
        self.in_order = order == sorted(order)
        self.register_buffer("inverse", torch.argsort(torch.tensor(order)), persistent=False)

    def forward(self, out: Tensor, y: Tensor) -> Tensor:
        values = []
        for i, members in enumerate(self.groups):
            if self.modes[i] is None:
                self.modes[i] = self._decide(i, out, y)
            if self.modes[i] == "members":
                values.append(torch.stack([self.losses[k](out[k], y[k]) for k in members]))
                continue
            rows = self.rows[i]
            if not isinstance(rows, slice):
                rows = self.rows[i] = torch.tensor(rows, device=out.device)
            if self.modes[i] == "samples":
                values.append(self._by_samples(i, out[rows], y[rows]))
            else:
                values.append(vmap(self.losses[members[0]], randomness="error")(
                    out[rows], y[rows]))
        together = torch.cat(values) if len(values) > 1 else values[0]
        return together if self.in_order else together[self.inverse.to(out.device)]

    def _by_samples(self, i: int, out: Tensor, y: Tensor) -> Tensor:
        """Each member's mean of its own rows' losses, from one call on all the group's rows."""
        k = out.shape[0]
        each = self.per_sample[i](out.reshape(-1, *out.shape[2:]), y.reshape(-1, *y.shape[2:]))
        return each.reshape(k, -1).mean(1)

    def _decide(self, i: int, out: Tensor, y: Tensor) -> str:
        """How group `i` runs: by samples when its loss reduces by a plain mean (a `reduction`
        that can be "none") and that gives the per-member calls' values on this batch; else
        under vmap when that gives them; else once per member."""
        import copy

        members = self.groups[i]
        index = torch.tensor(members, device=out.device)
        outs, ys = out[index].detach(), y[index]
        loss = self.losses[members[0]]
        with torch.no_grad():
            apart = torch.stack([self.losses[k](out[k].detach(), y[k]) for k in members])
            inner = getattr(loss, "inner", loss)
            if getattr(inner, "reduction", None) == "mean":
                per_sample = copy.deepcopy(loss)
                getattr(per_sample, "inner", per_sample).reduction = "none"
                self.per_sample[i] = per_sample
                try:
                    if _agree(self._by_samples(i, outs, ys), apart):
                        return "samples"
                except Exception as err:
                    log.info("loss %s: no per-sample form (%s)", type(loss).__name__, err)
                del self.per_sample[i]
            try:
                together = vmap(loss, randomness="error")(outs, ys)
            except Exception as err:
                log.info("loss %s runs once per member (%s)", type(loss).__name__, err)
                return "members"
        if not _agree(together, apart):
            log.info("loss %s runs once per member (vmap gives other values)",
                     type(loss).__name__)
            return "members"
        return "vmap"


def _agree(together: Tensor, apart: Tensor) -> bool:
    return together.shape == apart.shape and torch.allclose(
        together, apart, rtol=1e-5, atol=1e-7, equal_nan=True)
