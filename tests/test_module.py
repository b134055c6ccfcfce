"""The module's per-epoch helpers: the divergence check and the copy of the best weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lossbench.module import all_finite, copied_state


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_all_finite_sees_one_bad_element_in_any_tensor(bad: float) -> None:
    tensors = [torch.zeros(3, 4), torch.ones(5), torch.zeros(2, 2, 2)]
    assert bool(all_finite(tensors))
    tensors[2][1, 0, 1] = bad
    assert not bool(all_finite(tensors))


def test_all_finite_takes_parameters_that_require_grad() -> None:
    model = nn.Linear(3, 2)
    assert bool(all_finite(model.parameters()))
    with torch.no_grad():
        model.bias[0] = math.nan
    assert not bool(all_finite(model.parameters()))


def test_copied_state_is_a_copy_that_loads_back() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    model(torch.randn(8, 3))  # running statistics move away from their initial values
    state = copied_state(model)
    expected = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    for name, value in state.items():
        assert torch.equal(value, expected[name]), name
    assert state._metadata == model.state_dict()._metadata  # versions BatchNorm loading reads
    model.load_state_dict(state)
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
