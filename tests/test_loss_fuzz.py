"""Property-based tests: every loss, fed any shape, dtype and value, gives a finite loss or a
one-line ValueError; never a silent broadcast, never an error from deep inside torch."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossbench.losses import all_specs, build_loss

SUPERVISED = ("regression", "binary", "multiclass")
LOSS_TASKS = [
    (spec.name, kind) for spec in all_specs() for kind in spec.tasks if kind in SUPERVISED
]
REDUCTIONS = ("mean", "sum", "none")
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTS = (torch.int64, torch.int32, torch.int16, torch.uint8)
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


pytestmark = pytest.mark.usefixtures("one_thread")


def largest(name: str, dtype: torch.dtype) -> float:
    """The largest |output| (and |target|) whose loss the dtype can still hold.

    Squared errors of half-precision values near 10 summed over a batch stay under float16's
    65504.
    """
    if dtype in (torch.float16, torch.bfloat16):
        return 10.0
    return 1e4


@functools.cache
def loss_for(name: str, task: str, reduction: str):
    return build_loss(name, task, reduction=reduction)


def contract_holds(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """What the README promises each task accepts, written independently of adapter.py."""
    if not outputs.is_floating_point() or outputs.shape[:1] in ((), (0,)):
        return False
    if task == "multiclass":
        return (
            outputs.dim() == 2
            and outputs.shape[1] >= 2
            and targets.shape == outputs.shape[:1]
            and not targets.is_floating_point()
            and targets.dtype != torch.bool
            and bool(((targets >= 0) & (targets < outputs.shape[1])).all())
        )
    if outputs.dim() != 1 or targets.shape != outputs.shape:
        return False
    if targets.is_floating_point() and not bool(torch.isfinite(targets).all()):
        return False
    return task == "regression" or bool(((targets == 0) | (targets == 1)).all())


def check(name: str, task: str, reduction: str, outputs, targets, valid: bool | None = None):
    """Call the loss; return its value, or None when it refused with a one-line ValueError."""
    if valid is None:
        valid = contract_holds(task, outputs, targets)
    try:
        value = loss_for(name, task, reduction)(outputs, targets)
    except ValueError as err:
        assert "\n" not in str(err) and str(err), repr(err)
        # torch has no CPU kernel for some losses in half precision (multi_margin): refused.
        half = outputs.dtype in (torch.float16, torch.bfloat16)
        lacks_kernel = half and "does not support" in str(err)
        assert not valid or lacks_kernel, f"valid input refused: {err}"
        return None
    assert valid, (
        f"{name} accepted outputs {tuple(outputs.shape)} {outputs.dtype} and targets "
        f"{tuple(targets.shape)} {targets.dtype}"
    )
    assert torch.isfinite(value).all(), value
    assert value.dtype == outputs.dtype
    if reduction == "none":
        assert value.shape[0] == outputs.shape[0]
    else:
        assert value.shape == ()
    return value


@st.composite
def valid_batch(draw, name: str, task: str):
    """Outputs and natural labels that fit `task`, at any dtype and up to large magnitudes."""
    n = draw(st.integers(1, 8))
    classes = draw(st.integers(2, 6))
    dtype = draw(st.sampled_from(FLOATS))
    limit = largest(name, dtype)
    scale = draw(st.one_of(st.just(limit), st.floats(0.0, limit)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    shape = (n, classes) if task == "multiclass" else (n,)
    if draw(st.booleans()):  # saturated: every output at ±scale
        outputs = scale * (torch.randint(0, 2, shape, generator=gen) * 2.0 - 1)
    else:
        outputs = scale * (torch.rand(shape, generator=gen) * 2 - 1)
    outputs = outputs.to(dtype)
    if task == "multiclass":
        targets = torch.randint(0, classes, (n,), generator=gen).to(draw(st.sampled_from(INTS)))
    elif task == "binary":
        target_dtype = draw(st.sampled_from((torch.bool, *INTS, *FLOATS)))
        targets = torch.randint(0, 2, (n,), generator=gen).to(target_dtype)
    else:
        target_dtype = draw(st.sampled_from((torch.bool, torch.int64, *FLOATS)))
        targets = (limit * (torch.rand(n, generator=gen) * 2 - 1)).to(target_dtype)
    return outputs, targets


@pytest.mark.parametrize(("name", "task"), LOSS_TASKS)
@FUZZ
@given(data=st.data(), reduction=st.sampled_from(REDUCTIONS))
def test_valid_inputs_give_a_finite_loss_and_gradient(name, task, data, reduction):
    outputs, targets = data.draw(valid_batch(name, task))
    outputs.requires_grad_(outputs.dtype in (torch.float32, torch.float64))
    value = check(name, task, reduction, outputs, targets, valid=True)
    if value is not None and outputs.requires_grad:
        value.sum().backward()
        assert torch.isfinite(outputs.grad).all(), outputs.grad


SIZES = st.integers(0, 4)
SHAPES = st.one_of(
    st.just(()),
    st.tuples(SIZES),
    st.tuples(SIZES, SIZES),
    st.tuples(SIZES, SIZES, SIZES),
)


@st.composite
def any_batch(draw, name: str, task: str):
    """Outputs and targets of arbitrary shapes, often close to what the task wants."""
    n, classes = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    natural = (n, classes) if task == "multiclass" else (n,)
    out_shape = draw(st.one_of(st.just(natural), st.just((n, 1)), st.just((n,)), SHAPES))
    tgt_shape = draw(st.one_of(st.just((n,)), st.just((n, 1)), st.just(out_shape), SHAPES))
    out_dtype = draw(st.sampled_from((*FLOATS, *FLOATS, torch.int64, torch.bool)))
    tgt_dtype = draw(st.sampled_from((*FLOATS, *INTS, torch.bool)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    limit = largest(name, out_dtype)
    outputs = (limit * (torch.rand(out_shape, generator=gen) * 2 - 1)).to(out_dtype)
    # Targets mostly in range, sometimes just outside it, sometimes not a number at all.
    high = max(classes, 2) if task != "regression" else 5
    targets = torch.randint(-1, high + 1, tgt_shape, generator=gen).to(torch.float64)
    if draw(st.booleans()):
        targets = targets.clamp(0, high - 1)
    if tgt_dtype.is_floating_point and targets.numel() and draw(st.booleans()):
        targets.view(-1)[0] = draw(st.sampled_from([0.5, float("nan"), float("inf")]))
    if tgt_dtype == torch.uint8:
        targets = targets.clamp_min(0)  # uint8 would wrap -1 to 255: valid is still clear
    return outputs, targets.to(tgt_dtype)


@pytest.mark.parametrize(("name", "task"), LOSS_TASKS)
@FUZZ
@given(data=st.data(), reduction=st.sampled_from(REDUCTIONS))
def test_any_input_gives_a_finite_loss_or_a_one_line_value_error(name, task, data, reduction):
    outputs, targets = data.draw(any_batch(name, task))
    check(name, task, reduction, outputs, targets)


MISMATCHED = {
    "regression": [((4, 1), (4,)), ((4,), (4, 1)), ((4,), (3,)), ((4, 3), (4, 3)), ((), ())],
    "binary": [((4, 1), (4,)), ((4,), (4, 1)), ((4,), (5,)), ((4, 2), (4, 2)), ((), ())],
    "multiclass": [((4, 3), (4, 3)), ((4, 3), (4, 1)), ((4, 3), (3,)), ((4,), (4,)),
                   ((4, 1), (4,)), ((4, 3, 2), (4, 2)), ((3,), ())],
}


@pytest.mark.parametrize(("name", "task"), LOSS_TASKS)
def test_mismatched_shapes_and_empty_batches_are_refused(name, task):
    empty = ((0, 3), (0,)) if task == "multiclass" else ((0,), (0,))
    for out_shape, tgt_shape in [*MISMATCHED[task], empty]:
        for reduction in REDUCTIONS:
            with pytest.raises(ValueError) as err:
                loss_for(name, task, reduction)(
                    torch.zeros(out_shape), torch.zeros(tgt_shape, dtype=torch.long)
                )
            assert "\n" not in str(err.value)
