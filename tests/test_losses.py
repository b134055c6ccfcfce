"""Tests for lossbench.losses: public API, reductions, parity with torch, gradients, extremes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from lossbench.losses import all_specs, build_loss, list_losses, register_loss, registry

N, C = 16, 5
SUPERVISED = ("regression", "binary", "multiclass")
# Every registered (loss, task) pair lossbench trains on, fixed at collection time.
LOSS_TASKS = [
    (spec.name, kind) for spec in all_specs() for kind in spec.tasks if kind in SUPERVISED
]
# Losses lossbench writes itself (the rest wrap torch.nn losses).
OWN_LOSSES = [
    ("focal", "binary"), ("focal", "multiclass"), ("mae", "multiclass"), ("gce", "multiclass"),
    ("sce", "multiclass"), ("soft_ce", "multiclass"), ("kl_div", "multiclass"),
    ("hinge", "binary"), ("custom_mse", "regression"),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Losses a test registers are gone after it, so other tests see the real catalogue."""
    monkeypatch.setattr(
        registry, "_REGISTRY", {name: dict(by_task) for name, by_task in registry._REGISTRY.items()}
    )


def batch(task: str, n: int = N, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Raw head outputs and natural labels for `task`, as a model and a data set give them."""
    gen = torch.Generator().manual_seed(seed)
    if task == "regression":
        return torch.randn(n, generator=gen, dtype=dtype), torch.randn(n, generator=gen)
    if task == "binary":
        logits = torch.randn(n, generator=gen, dtype=dtype) * 2
        return logits, torch.randint(0, 2, (n,), generator=gen)
    logits = torch.randn(n, C, generator=gen, dtype=dtype) * 2
    return logits, torch.randint(0, C, (n,), generator=gen)


def close(actual: torch.Tensor, expected: torch.Tensor, **tol) -> None:
    torch.testing.assert_close(actual, expected.to(actual.dtype), **tol)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- public API -------------------------------------------------------------------------------


def test_list_losses_by_task():
    assert {"l1", "mse", "huber", "smooth_l1", "custom_mse"} <= set(list_losses("regression"))
    assert {"bce", "bce_logits", "focal", "hinge", "soft_margin", "mse"} <= set(
        list_losses("binary")
    )
    assert {"ce", "nll", "focal", "gce", "sce", "mae", "soft_ce", "kl_div"} <= set(
        list_losses("multiclass")
    )
    assert "ce" not in list_losses("regression")
    assert set(list_losses()) >= set(list_losses("binary")) | set(list_losses("multiclass"))


@pytest.mark.parametrize("task", SUPERVISED)
def test_build_loss_takes_raw_outputs_and_natural_labels(task):
    outputs, targets = batch(task)
    for name in list_losses(task):
        value = build_loss(name, task)(outputs, targets)
        assert value.shape == () and torch.isfinite(value), name


def test_register_loss_applies_the_contract_transform(scratch_registry):
    seen = {}

    @register_loss("test_probs_receiver", tasks="multiclass", input="probs", target="index")
    class ProbsReceiver(nn.Module):
        """A user's loss: 1 - p_y on the probabilities it is handed."""

        def __init__(self, reduction: str = "mean", scale: float = 1.0) -> None:
            super().__init__()
            self.reduction, self.scale = reduction, scale

        def forward(self, probs, targets):
            seen["probs"], seen["targets"] = probs, targets
            return self.scale * (1 - probs.gather(1, targets[:, None])).mean()

    assert "test_probs_receiver" in list_losses("multiclass")
    assert "test_probs_receiver" not in list_losses("binary")
    logits, labels = batch("multiclass")
    loss = build_loss("test_probs_receiver", "multiclass", scale=2.0)  # undeclared: passed on
    assert isinstance(loss.inner, ProbsReceiver) and loss.inner.scale == 2.0
    value = loss(logits, labels.int())
    close(seen["probs"], logits.softmax(-1))
    assert seen["targets"].dtype == torch.int64
    close(value, 2 * (1 - logits.softmax(-1)[torch.arange(N), labels]).mean())


def test_register_loss_contracts_for_binary_targets(scratch_registry):
    seen = {}

    @register_loss(
        "test_pm1_receiver", tasks=("binary",), input="log_probs", target="pm1", params={}
    )
    class Pm1Receiver(nn.Module):
        def __init__(self, reduction: str = "mean") -> None:
            super().__init__()

        def forward(self, log_probs, signs):
            seen["log_probs"], seen["signs"] = log_probs, signs
            return -(log_probs * signs).mean()

    logits, labels = batch("binary")
    build_loss("test_pm1_receiver", "binary")(logits, labels)
    close(seen["log_probs"], F.logsigmoid(logits))
    close(seen["signs"], labels.float() * 2 - 1)
    with pytest.raises(ValueError, match="has no hyperparameter 'scale'") as err:
        build_loss("test_pm1_receiver", "binary", scale=2.0)  # params={} declares none
    one_line(err)


def test_register_loss_refuses_bad_registrations(scratch_registry):
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_loss("test_not_a_module", tasks="binary")(lambda x, y: x)
    with pytest.raises(ValueError, match="unknown task kind"):
        register_loss("test_bad_task", tasks="segmentation")
    with pytest.raises(ValueError, match="input must be one of"):
        register_loss("test_bad_input", tasks="binary", input="logits")
    with pytest.raises(ValueError, match="already registered"):

        @register_loss("ce", tasks="multiclass")
        class Shadow(nn.Module):
            pass


def test_loss_on_the_wrong_task_names_the_losses_that_fit():
    with pytest.raises(ValueError) as err:
        build_loss("ce", "binary")
    message = one_line(err)
    assert "'ce'" in message and "binary" in message
    for name in list_losses("binary"):
        assert name in message


def test_unknown_loss_lists_the_names():
    with pytest.raises(ValueError) as err:
        build_loss("crossentropy", "multiclass")
    message = one_line(err)
    assert "crossentropy" in message
    for name in list_losses():
        assert name in message


@pytest.mark.parametrize(
    ("name", "task", "hparams", "allowed"),
    [
        ("huber", "regression", {"delta": 0}, "> 0"),
        ("huber", "regression", {"delta": -1.0}, "> 0"),
        ("huber", "regression", {"delta": "abc"}, "> 0"),
        ("huber", "regression", {"delta": float("nan")}, "> 0"),
        ("smooth_l1", "regression", {"beta": -0.5}, ">= 0"),
        ("focal", "binary", {"alpha": 1.5}, "[0.0, 1.0] or -1"),
        ("focal", "binary", {"alpha": -0.5}, "[0.0, 1.0] or -1"),
        ("focal", "multiclass", {"alpha": 2}, "[0.0, 1.0] or -1"),
        ("focal", "binary", {"gamma": -1}, ">= 0"),
        ("focal", "multiclass", {"gamma": "two"}, ">= 0"),
        ("gce", "multiclass", {"q": 0}, "(0.0, 1.0]"),
        ("gce", "multiclass", {"q": 1.5}, "(0.0, 1.0]"),
        ("ce", "multiclass", {"label_smoothing": 1.5}, "[0.0, 1.0]"),
        ("soft_ce", "multiclass", {"label_smoothing": -0.1}, "[0.0, 1.0]"),
        ("kl_div", "multiclass", {"label_smoothing": 2}, "[0.0, 1.0]"),
        ("hinge", "binary", {"margin": 0}, "> 0"),
        ("bce_logits", "binary", {"pos_weight": 0}, "> 0"),
        ("bce_logits", "binary", {"pos_weight": -2.0}, "> 0"),
        ("bce_logits", "binary", {"pos_weight": True}, "> 0"),
        ("multi_margin", "multiclass", {"p": 3}, "one of 1, 2"),
        ("multi_margin", "multiclass", {"p": True}, "one of 1, 2"),
        ("ce", "multiclass", {"weight": "abc"}, "list of numbers"),
        ("ce", "multiclass", {"weight": [1.0, -1.0]}, "list of numbers >= 0"),
        ("mse", "regression", {"reduction": "avg"}, "one of mean, sum, none"),
    ],
)
def test_bad_hyperparameters_name_the_allowed_range(name, task, hparams, allowed):
    with pytest.raises(ValueError) as err:
        build_loss(name, task, **hparams)
    message = one_line(err)
    assert allowed in message and next(iter(hparams)) in message


def test_unknown_hyperparameter_lists_the_allowed_ones():
    with pytest.raises(ValueError) as err:
        build_loss("ce", "multiclass", smoothing=0.1)
    assert "label_smoothing" in one_line(err) and "weight" in one_line(err)


def test_class_weights_must_match_the_number_of_classes():
    logits, labels = batch("multiclass")
    with pytest.raises(ValueError, match="3 entries for 5 classes") as err:
        build_loss("ce", "multiclass", weight=[1.0, 2.0, 3.0])(logits, labels)
    one_line(err)


# --- reduction --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "task"), LOSS_TASKS)
def test_reduction_behaves_as_in_torch(name, task):
    outputs, targets = batch(task, dtype=torch.float64)
    per_sample = build_loss(name, task, reduction="none")(outputs, targets)
    total = build_loss(name, task, reduction="sum")(outputs, targets)
    mean = build_loss(name, task, reduction="mean")(outputs, targets)
    assert per_sample.shape[0] == N and per_sample.shape in ((N,), outputs.shape)
    assert total.shape == mean.shape == ()
    close(total, per_sample.sum())
    # Unweighted torch losses average every element of 'none'; kl_div's 'mean' is 'batchmean'
    # and its 'none' is per sample, so the same holds for it.
    close(mean, per_sample.mean())
    assert torch.equal(build_loss(name, task)(outputs, targets), mean)  # 'mean' is the default


def test_weighted_ce_mean_divides_by_the_weights_as_torch_does():
    logits, labels = batch("multiclass", dtype=torch.float64)
    weight = [0.5, 1.0, 2.0, 3.0, 0.1]
    per_sample = build_loss("ce", "multiclass", weight=weight, reduction="none")(logits, labels)
    mean = build_loss("ce", "multiclass", weight=weight)(logits, labels)
    close(mean, per_sample.sum() / torch.tensor(weight, dtype=torch.float64)[labels].sum())


# --- numerical parity with torch --------------------------------------------------------------

REDUCTIONS = ("mean", "sum", "none")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("name", "functional", "hparams"),
    [
        ("l1", F.l1_loss, {}),
        ("mse", F.mse_loss, {}),
        ("huber", F.huber_loss, {"delta": 0.5}),
        ("smooth_l1", F.smooth_l1_loss, {"beta": 0.3}),
        ("custom_mse", F.mse_loss, {}),
    ],
)
def test_regression_losses_match_torch(name, functional, hparams, reduction):
    preds, targets = batch("regression")
    expected = functional(preds, targets, reduction=reduction, **hparams)
    close(build_loss(name, "regression", reduction=reduction, **hparams)(preds, targets), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_torch_wrappers_match_torch(reduction):
    logits, labels = batch("binary")
    y = labels.float()

    def loss(name, **hparams):
        return build_loss(name, "binary", reduction=reduction, **hparams)(logits, labels)

    close(loss("bce"), F.binary_cross_entropy(logits.sigmoid(), y, reduction=reduction))
    close(loss("bce_logits"), F.binary_cross_entropy_with_logits(logits, y, reduction=reduction))
    close(
        loss("bce_logits", pos_weight=3.0),
        F.binary_cross_entropy_with_logits(
            logits, y, pos_weight=torch.tensor(3.0), reduction=reduction
        ),
    )
    close(loss("soft_margin"), F.soft_margin_loss(logits, 2 * y - 1, reduction=reduction))
    close(loss("mse"), F.mse_loss(logits.sigmoid(), y, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multiclass_torch_wrappers_match_torch(reduction):
    logits, labels = batch("multiclass")
    onehot = F.one_hot(labels, C).float()
    weight = [0.5, 1.0, 2.0, 3.0, 0.1]

    def loss(name, **hparams):
        return build_loss(name, "multiclass", reduction=reduction, **hparams)(logits, labels)

    close(loss("ce"), F.cross_entropy(logits, labels, reduction=reduction))
    close(
        loss("ce", weight=weight, label_smoothing=0.2),
        F.cross_entropy(
            logits, labels, weight=torch.tensor(weight), label_smoothing=0.2, reduction=reduction
        ),
    )
    close(loss("nll"), F.nll_loss(logits.log_softmax(-1), labels, reduction=reduction))
    close(
        loss("bce_onehot"), F.binary_cross_entropy(logits.softmax(-1), onehot, reduction=reduction)
    )
    close(loss("mse_onehot"), F.mse_loss(logits, onehot, reduction=reduction))
    close(loss("multi_margin"), F.multi_margin_loss(logits, labels, reduction=reduction))
    close(
        loss("multi_margin", p=2, margin=0.5),
        F.multi_margin_loss(logits, labels, p=2, margin=0.5, reduction=reduction),
    )
    close(
        loss("multilabel_soft_margin"),
        F.multilabel_soft_margin_loss(logits, onehot, reduction=reduction),
    )


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_kl_div_is_batchmean_kl_to_the_label_distribution(label_smoothing):
    logits, labels = batch("multiclass")
    target = F.one_hot(labels, C).float() * (1 - label_smoothing) + label_smoothing / C
    log_p = logits.log_softmax(-1)

    def loss(reduction):
        return build_loss(
            "kl_div", "multiclass", label_smoothing=label_smoothing, reduction=reduction
        )(logits, labels)

    close(loss("mean"), F.kl_div(log_p, target, reduction="batchmean"))
    close(loss("sum"), F.kl_div(log_p, target, reduction="sum"))
    close(loss("none"), F.kl_div(log_p, target, reduction="none").sum(-1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (0.5, 0.0), (-1, 1.0), (0.9, 3.5)])
def test_binary_focal_matches_torchvision(alpha, gamma, reduction):
    logits, labels = batch("binary")
    loss = build_loss("focal", "binary", alpha=alpha, gamma=gamma, reduction=reduction)
    close(loss(logits, labels), sigmoid_focal_loss(logits, labels.float(), alpha, gamma, reduction))


def test_focal_without_focusing_or_weighting_is_bce_logits():
    logits, labels = batch("binary")
    close(
        build_loss("focal", "binary", alpha=-1, gamma=0)(logits, labels),
        build_loss("bce_logits", "binary")(logits, labels),
    )
    close(
        build_loss("focal", "multiclass", alpha=-1, gamma=0)(*batch("multiclass")),
        build_loss("ce", "multiclass")(*batch("multiclass")),
    )


def test_multiclass_focal_formula():
    logits, labels = batch("multiclass")
    p_y = logits.softmax(-1)[torch.arange(N), labels]
    expected = (-0.3 * (1 - p_y) ** 2 * p_y.log()).mean()
    close(build_loss("focal", "multiclass", alpha=0.3, gamma=2.0)(logits, labels), expected)


def test_ce_equals_nll_on_logits():
    logits, labels = batch("multiclass")
    ce, nll = build_loss("ce", "multiclass"), build_loss("nll", "multiclass")
    close(ce(logits, labels), nll(logits, labels))


def test_gce_spans_ce_and_mae():
    logits, labels = batch("multiclass", dtype=torch.float64)
    ce = build_loss("ce", "multiclass")(logits, labels)
    close(build_loss("gce", "multiclass", q=1e-4)(logits, labels), ce, rtol=1e-3, atol=0)
    close(
        build_loss("gce", "multiclass", q=1.0)(logits, labels),
        build_loss("mae", "multiclass")(logits, labels),
    )
    p_y = logits.softmax(-1)[torch.arange(N), labels]
    close(build_loss("mae", "multiclass", reduction="none")(logits, labels), 1 - p_y)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
def test_soft_ce_on_one_hot_labels_is_ce(label_smoothing):
    logits, labels = batch("multiclass")
    for reduction in REDUCTIONS:
        close(
            build_loss("soft_ce", "multiclass", label_smoothing=label_smoothing,
                       reduction=reduction)(logits, labels),
            build_loss("ce", "multiclass", label_smoothing=label_smoothing,
                       reduction=reduction)(logits, labels),
        )


def test_sce_is_ce_plus_reverse_ce():
    logits, labels = batch("multiclass")
    alpha, beta = 0.3, 1.7
    p_y = logits.softmax(-1)[torch.arange(N), labels]
    ce = F.cross_entropy(logits, labels, reduction="none")
    expected = alpha * ce + beta * -math.log(1e-4) * (1 - p_y)
    loss = build_loss("sce", "multiclass", alpha=alpha, beta=beta, reduction="none")
    close(loss(logits, labels), expected)


def test_hinge_is_the_svm_loss():
    scores, labels = batch("binary")
    signs = labels.float() * 2 - 1
    close(
        build_loss("hinge", "binary", margin=0.5, reduction="none")(scores, labels),
        (0.5 - signs * scores).clamp_min(0),
    )


# --- gradients --------------------------------------------------------------------------------


def _away_from_kinks(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if task != "binary":
        return outputs
    # hinge's relu has a kink at y * s == margin == 1: move scores at least 0.2 away from ±1.
    near = (outputs.abs() - 1).abs() < 0.2
    return torch.where(near, outputs * 1.5 + 0.5, outputs)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize(("name", "task"), OWN_LOSSES)
def test_own_losses_pass_gradcheck(name, task, reduction):
    outputs, targets = batch(task, n=4, dtype=torch.float64, seed=1)
    outputs = _away_from_kinks(task, outputs, targets).requires_grad_()
    loss = build_loss(name, task, reduction=reduction)
    assert torch.autograd.gradcheck(lambda x: loss(x, targets), (outputs,))


# --- extreme logits ---------------------------------------------------------------------------

LOGIT_LOSSES = [(name, task) for name, task in LOSS_TASKS if task in ("binary", "multiclass")]


@pytest.mark.parametrize(("name", "task"), LOGIT_LOSSES)
def test_logits_of_100_give_finite_values_and_gradients(name, task):
    _, targets = batch(task)
    shape = (N,) if task == "binary" else (N, C)
    signs = torch.tensor([-1.0, 1.0])[torch.randint(0, 2, shape, generator=torch.Generator())]
    for reduction in REDUCTIONS:
        logits = (100 * signs).requires_grad_()
        value = build_loss(name, task, reduction=reduction)(logits, targets)
        value.sum().backward()
        assert torch.isfinite(value).all(), (reduction, value)
        assert torch.isfinite(logits.grad).all(), (reduction, logits.grad)


def test_bce_on_saturated_sigmoid_is_clamped_by_torch():
    # sigmoid(±100) is exactly 0 or 1 in float32; BCELoss clamps log(0) to -100.
    logits, labels = torch.tensor([100.0, -100.0]), torch.tensor([0, 1])
    close(build_loss("bce", "binary")(logits, labels), torch.tensor(100.0))


@pytest.mark.parametrize(("name", "task"), [p for p in OWN_LOSSES if p[1] != "regression"])
def test_own_losses_are_finite_at_every_sign_pattern(name, task):
    # Wrong and right class at ±100, in every combination, for the losses lossbench writes.
    cases = itertools.product([-100.0, 100.0], repeat=2 if task == "binary" else 3)
    for case in cases:
        logits = torch.tensor([case] if task == "multiclass" else case).requires_grad_()
        n = logits.shape[0]
        targets = torch.arange(n) % 2 if task == "binary" else torch.zeros(n, dtype=torch.long)
        value = build_loss(name, task)(logits, targets)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all(), case
