"""The losses of a stack's members, called as few times a step as is safe.

Members often share a loss: `loss=ce,mae seed=0..4` is five members per loss. Members whose
loss modules are interchangeable (same class, same settings, same tensors) form a group, and a
group's loss runs once under `torch.func.vmap` over its members, instead of once per member:
on a 75-member label-noise stack that is 5 loss calls a step, not 75.

A group goes back to one call per member, for good, when vmap cannot run its loss (a
data-dependent shape, `.item()`, random numbers) or when the vmapped value differs from the
per-member calls on the first batch. Either way each member's loss is the one its own job
computes, and the summed loss gives each member exactly its own gradient.
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
        # Per group: None until its first batch decides, then whether it runs under vmap.
        self.vmapped: list[bool | None] = [None if len(g) > 1 else False for g in self.groups]
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
            if self.vmapped[i] is None:
                self.vmapped[i] = self._vmap_agrees(members, out, y)
            if self.vmapped[i]:
                rows = self.rows[i]
                if not isinstance(rows, slice):
                    rows = self.rows[i] = torch.tensor(rows, device=out.device)
                values.append(vmap(self.losses[members[0]], randomness="error")(
                    out[rows], y[rows]))
            else:
                values.append(torch.stack([self.losses[k](out[k], y[k]) for k in members]))
        together = torch.cat(values) if len(values) > 1 else values[0]
        return together if self.in_order else together[self.inverse.to(out.device)]

    def _vmap_agrees(self, members: list[int], out: Tensor, y: Tensor) -> bool:
        """Whether the group's loss runs under vmap and equals the per-member calls."""
        index = torch.tensor(members, device=out.device)
        loss = self.losses[members[0]]
        with torch.no_grad():
            try:
                together = vmap(loss, randomness="error")(out[index].detach(), y[index])
            except Exception as err:
                log.info("loss %s runs once per member (%s)", type(loss).__name__, err)
                return False
            apart = torch.stack([self.losses[k](out[k].detach(), y[k]) for k in members])
        if together.shape != apart.shape or not torch.allclose(
                together, apart, rtol=1e-5, atol=1e-7, equal_nan=True):
            log.info("loss %s runs once per member (vmap gives other values)",
                     type(loss).__name__)
            return False
        return True
