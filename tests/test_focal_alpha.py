"""Multiclass focal loss with one alpha per class (Lin et al.'s alpha_t), checked against the
formula written out here and against torch's cross_entropy(weight=) at gamma = 0."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import multirun_statuses

from lossbench.losses import build_loss

N, C = 40, 5
ALPHA = [0.1, 0.5, 1.0, 2.0, 0.25]


def batch(seed: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(N, C, generator=gen, dtype=dtype), torch.randint(0, C, (N,),
                                                                            generator=gen)


def formula(logits: torch.Tensor, labels: torch.Tensor, alpha: list[float], gamma: float
            ) -> list[float]:
    """-alpha_y (1 - p_y)^gamma log p_y per sample, in plain Python floats."""
    out = []
    for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
        top = max(row)
        log_p = row[y] - top - math.log(sum(math.exp(v - top) for v in row))
        out.append(-alpha[y] * (1 - math.exp(log_p)) ** gamma * log_p)
    return out


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_alpha_is_the_formula(gamma: float, seed: int) -> None:
    logits, labels = batch(seed)
    each = formula(logits, labels, ALPHA, gamma)
    for reduction, expected in (("none", each), ("sum", sum(each)), ("mean", sum(each) / N)):
        loss = build_loss("focal", "multiclass", alpha=ALPHA, gamma=gamma, reduction=reduction)
        torch.testing.assert_close(
            loss(logits, labels), torch.tensor(expected, dtype=torch.float64),
            rtol=1e-10, atol=1e-12,
        )


def test_at_gamma_zero_it_is_cross_entropy_with_weight() -> None:
    """'none' and 'sum' are cross_entropy(weight=alpha); 'mean' is the plain mean over samples
    (Lin et al., torchvision), so cross_entropy's 'sum' / N, not its weighted mean."""
    logits, labels = batch(2)
    weight = torch.tensor(ALPHA, dtype=torch.float64)

    def ours(reduction: str) -> torch.Tensor:
        return build_loss("focal", "multiclass", alpha=ALPHA, gamma=0.0,
                          reduction=reduction)(logits, labels)

    for reduction in ("none", "sum"):
        torch.testing.assert_close(
            ours(reduction), F.cross_entropy(logits, labels, weight=weight, reduction=reduction)
        )
    ce_sum = F.cross_entropy(logits, labels, weight=weight, reduction="sum")
    torch.testing.assert_close(ours("mean"), ce_sum / N)
    weighted_mean = F.cross_entropy(logits, labels, weight=weight)
    assert not torch.isclose(ours("mean"), weighted_mean)  # the documented choice is real


def test_equal_weights_are_the_scalar_alpha() -> None:
    """A list of C equal weights is the scalar alpha of before: one factor on every sample."""
    logits, labels = batch(3)
    listed = build_loss("focal", "multiclass", alpha=[0.3] * C)(logits, labels)
    scalar = build_loss("focal", "multiclass", alpha=0.3)(logits, labels)
    expected = sum(formula(logits, labels, [0.3] * C, 2.0)) / N
    assert listed.item() == pytest.approx(expected, rel=1e-10)
    assert scalar.item() == pytest.approx(expected, rel=1e-10)


def test_gradient_is_the_formulas() -> None:
    logits, labels = batch(4)
    ours = logits.clone().requires_grad_()
    build_loss("focal", "multiclass", alpha=ALPHA)(ours, labels).backward()
    reference = logits.clone().requires_grad_()
    log_p = reference.log_softmax(-1)[torch.arange(N), labels]
    weight = torch.tensor(ALPHA, dtype=torch.float64)[labels]
    (-(weight * (1 - log_p.exp()) ** 2 * log_p)).mean().backward()
    torch.testing.assert_close(ours.grad, reference.grad)


def test_float32_logits_take_float_weights() -> None:
    logits, labels = batch(5, dtype=torch.float32)
    value = build_loss("focal", "multiclass", alpha=ALPHA)(logits, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(sum(formula(logits, labels, ALPHA, 2.0)) / N, rel=1e-5)


def test_a_list_of_the_wrong_length_names_both_numbers() -> None:
    logits, labels = batch(0)
    loss = build_loss("focal", "multiclass", alpha=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError) as err:
        loss(logits, labels)
    assert str(err.value) == f"loss.alpha has 3 entries for {C} classes"


@pytest.mark.parametrize(
    ("task", "alpha"),
    [("multiclass", [1.0, -0.5]), ("multiclass", [1.0, float("nan")]),
     ("multiclass", "high"), ("multiclass", 1.5), ("binary", [0.25, 0.75])],
)
def test_bad_alpha_is_a_one_line_error(task: str, alpha) -> None:
    with pytest.raises(ValueError) as err:
        build_loss("focal", task, alpha=alpha)
    message = str(err.value)
    assert "\n" not in message and message.startswith("loss.alpha must be")
    if task == "multiclass":
        assert "or a list of numbers >= 0.0" in message


def test_wrong_length_through_the_cli_is_one_line(tmp_path: Path) -> None:
    """A user's typo: 3 weights for digits' 10 classes; the run fails in one readable line."""
    proc, found = multirun_statuses(
        tmp_path, "task=multiclass", "loss=focal", "loss.alpha=[1,2,3]", "logger=none",
        "trainer.max_epochs=1", "trainer.progress_bar=false",
    )
    results = [yaml.safe_load(p.read_text()) for p in tmp_path.rglob("results.json")]
    assert found == {"focal": "failed"}, proc.stderr[-2000:]
    assert results[0]["reason"].endswith("loss.alpha has 3 entries for 10 classes")


def test_multiclass_focal_trains_with_per_class_alpha(tmp_path: Path) -> None:
    proc, found = multirun_statuses(
        tmp_path, "task=multiclass", "loss=focal", f"loss.alpha=[{','.join(['0.5'] * 10)}]",
        "logger=none", "trainer.max_epochs=2", "trainer.progress_bar=false",
    )
    assert found == {"focal": "ok"}, proc.stderr[-2000:]


def tuned_params(tmp_path: Path, *args: str) -> set[str]:
    proc, found = multirun_statuses(tmp_path, "+tune=focal", "tune_trials=2", "logger=none",
                                    "trainer.max_epochs=1", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(found.values()) == {"ok"}
    (best,) = tmp_path.rglob("optimization_results.yaml")
    return set(yaml.safe_load(best.read_text())["best_params"])


def test_tuning_focal_spends_no_trial_on_multiclass_alpha(tmp_path: Path) -> None:
    assert tuned_params(tmp_path, "task=multiclass") == {"optimizer.lr", "loss.gamma"}


def test_tuning_focal_tunes_binary_alpha(tmp_path: Path) -> None:
    assert tuned_params(tmp_path, "task=binary") == {"optimizer.lr", "loss.gamma", "loss.alpha"}
