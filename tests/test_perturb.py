"""Tests for lossbench.data.perturb on scikit-learn's bundled data sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

from lossbench.data.perturb import (
    PERTURBATIONS,
    PerturbResult,
    list_perturbations,
    perturb_train,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "perturb"


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    return load_breast_cancer(return_X_y=True)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_digits(return_X_y=True)


def _changed_rows(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.flatnonzero(before != after)


# ---------------------------------------------------------------- registry and configs


def test_listing_matches_registry() -> None:
    assert list_perturbations() == ["imbalance", "label_noise", "none", "outliers"]
    assert set(PERTURBATIONS) == set(list_perturbations())


@pytest.mark.parametrize("name", ["none", "outliers", "label_noise", "imbalance"])
def test_hydra_config_matches_defaults(name: str) -> None:
    path = CONF_DIR / f"{name}.yaml"
    assert path.read_text().startswith("# ")
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    assert cfg.pop("name") == name
    assert cfg == dict(PERTURBATIONS[name].defaults)


@pytest.mark.parametrize(
    ("name", "task_kind", "data"),
    [
        ("none", "regression", "diabetes"),
        ("outliers", "regression", "diabetes"),
        ("label_noise", "multiclass", "digits"),
        ("imbalance", "binary", "cancer"),
    ],
)
def test_config_drives_perturb_train(
    name: str, task_kind: str, data: str, request: pytest.FixtureRequest
) -> None:
    x, y = request.getfixturevalue(data)
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{name}.yaml"))
    result = perturb_train(cfg.pop("name"), x, y, seed=0, task_kind=task_kind, **cfg)
    assert isinstance(result, PerturbResult)
    assert json.loads(json.dumps(result.info)) == result.info
    assert result.info["name"] == name


# ---------------------------------------------------------------- none


def test_none_returns_equal_copies(diabetes) -> None:
    x, y = diabetes
    result = perturb_train("none", x, y, seed=3, task_kind="regression")
    assert result.info == {"name": "none"}
    np.testing.assert_array_equal(result.x, x)
    np.testing.assert_array_equal(result.y, y)
    assert not np.shares_memory(result.x, x) and not np.shares_memory(result.y, y)


# ---------------------------------------------------------------- outliers


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.25, 0.5, 0.99])
def test_outliers_exact_count(diabetes, fraction: float) -> None:
    x, y = diabetes
    result = perturb_train("outliers", x, y, seed=0, task_kind="regression", fraction=fraction)
    expected = round(fraction * len(y))
    assert _changed_rows(y, result.y).size == expected
    assert result.info == {
        "name": "outliers",
        "fraction": fraction,
        "magnitude": 5.0,
        "n_train_before": len(y),
        "n_affected": expected,
        "n_train_after": len(y),
    }
    np.testing.assert_array_equal(result.x, x)


@pytest.mark.parametrize("magnitude", [0.5, 5.0, 12.0])
def test_outlier_shift_is_magnitude_times_std(diabetes, magnitude: float) -> None:
    x, y = diabetes
    result = perturb_train(
        "outliers", x, y, seed=1, task_kind="regression", fraction=0.3, magnitude=magnitude
    )
    shift = result.y - y
    moved = shift != 0
    np.testing.assert_allclose(np.abs(shift[moved]), magnitude * np.std(y), rtol=1e-12)
    # random sign: with 133 draws both signs must occur
    assert (shift > 0).any() and (shift < 0).any()


def test_outliers_fit_ranking_and_multi_output(diabetes) -> None:
    x, y = diabetes
    targets = np.stack([y, y / 10.0], axis=1)
    result = perturb_train("outliers", x, targets, seed=0, task_kind="ranking", fraction=0.2)
    rows = np.flatnonzero((result.y != targets).any(axis=1))
    assert rows.size == round(0.2 * len(y))
    shift = np.abs(result.y[rows] - targets[rows])
    np.testing.assert_allclose(shift, np.broadcast_to(5.0 * targets.std(axis=0), shift.shape))


def test_outliers_on_integer_targets_become_float() -> None:
    y = np.arange(40)
    result = perturb_train("outliers", np.zeros((40, 1)), y, seed=0, task_kind="regression")
    assert np.issubdtype(result.y.dtype, np.floating)
    assert _changed_rows(y, result.y).size == 4


# ---------------------------------------------------------------- label noise


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.45, 0.9])
@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
def test_label_noise_exact_count_and_all_change(digits, rate: float, kind: str) -> None:
    x, y = digits
    result = perturb_train(
        "label_noise", x, y, seed=0, task_kind="multiclass", num_classes=10, rate=rate, kind=kind
    )
    expected = round(rate * len(y))
    assert _changed_rows(y, result.y).size == expected  # every chosen label really changed
    assert result.info["n_affected"] == expected
    assert result.info["n_train_after"] == result.info["n_train_before"] == len(y)
    assert result.y.dtype == y.dtype
    assert set(np.unique(result.y)) <= set(range(10))


def test_pairflip_maps_c_to_c_plus_one(digits) -> None:
    x, y = digits
    result = perturb_train(
        "label_noise", x, y, seed=4, task_kind="multiclass", rate=0.5, kind="pairflip"
    )
    rows = _changed_rows(y, result.y)
    np.testing.assert_array_equal(result.y[rows], (y[rows] + 1) % 10)
    assert 9 in y[rows]  # the wrap-around 9 -> 0 was exercised


def test_pairflip_binary_flips(cancer) -> None:
    x, y = cancer
    result = perturb_train("label_noise", x, y, seed=0, task_kind="binary", kind="pairflip")
    rows = _changed_rows(y, result.y)
    assert rows.size == round(0.2 * len(y))
    np.testing.assert_array_equal(result.y[rows], 1 - y[rows])


def test_symmetric_never_same_class_and_reaches_all_others(digits) -> None:
    x, y = digits
    result = perturb_train("label_noise", x, y, seed=2, task_kind="embedding", rate=0.9)
    rows = _changed_rows(y, result.y)
    assert rows.size == round(0.9 * len(y))
    assert np.all(result.y[rows] != y[rows])
    # uniform over the other 9 classes: every (old, new) pair with old != new occurs
    pairs = set(zip(y[rows].tolist(), result.y[rows].tolist(), strict=True))
    assert pairs == {(a, b) for a in range(10) for b in range(10) if a != b}


def test_label_noise_binary_float_labels_single_class() -> None:
    y = np.zeros(10, dtype=np.float32)  # all-negative split still flips to class 1
    result = perturb_train("label_noise", np.ones((10, 2)), y, seed=0, task_kind="binary", rate=0.3)
    assert result.y.dtype == np.float32
    assert result.y.sum() == 3


# ---------------------------------------------------------------- imbalance


@pytest.mark.parametrize("positive_fraction", [0.001, 0.05, 0.2, 0.5, 1.0])
def test_imbalance_keeps_exact_positives(cancer, positive_fraction: float) -> None:
    x, y = cancer
    n_pos = int((y == 1).sum())
    result = perturb_train(
        "imbalance", x, y, seed=0, task_kind="binary", positive_fraction=positive_fraction
    )
    kept = max(1, round(positive_fraction * n_pos))
    assert int((result.y == 1).sum()) == kept
    assert int((result.y == 0).sum()) == int((y == 0).sum())
    assert result.info == {
        "name": "imbalance",
        "positive_fraction": positive_fraction,
        "n_train_before": len(y),
        "n_affected": n_pos - kept,
        "n_train_after": len(y) - (n_pos - kept),
    }
    assert result.x.shape == (len(result.y), x.shape[1])


def test_imbalance_keeps_rows_aligned_and_ordered(cancer) -> None:
    x, y = cancer
    result = perturb_train("imbalance", x, y, seed=5, task_kind="binary", positive_fraction=0.3)
    # each kept row is an original row, in original order, with its own label
    index = {row.tobytes(): i for i, row in enumerate(x)}
    positions = np.array([index[row.tobytes()] for row in result.x])
    assert np.all(np.diff(positions) > 0)
    np.testing.assert_array_equal(y[positions], result.y)


# ---------------------------------------------------------------- determinism


CASES = [
    ("outliers", "regression", "diabetes", {"fraction": 0.2}),
    ("label_noise", "multiclass", "digits", {"rate": 0.3, "kind": "symmetric"}),
    ("label_noise", "multiclass", "digits", {"rate": 0.3, "kind": "pairflip"}),
    ("imbalance", "binary", "cancer", {"positive_fraction": 0.4}),
]


@pytest.mark.parametrize(("name", "task_kind", "data", "params"), CASES)
def test_same_seed_same_draw_different_seed_different_draw(
    name: str, task_kind: str, data: str, params: dict, request: pytest.FixtureRequest
) -> None:
    x, y = request.getfixturevalue(data)
    first = perturb_train(name, x, y, seed=7, task_kind=task_kind, **params)
    again = perturb_train(name, x, y, seed=7, task_kind=task_kind, **params)
    other = perturb_train(name, x, y, seed=8, task_kind=task_kind, **params)
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.y, again.y)
    assert first.info == again.info
    assert first.x.shape != other.x.shape or not (
        np.array_equal(first.x, other.x) and np.array_equal(first.y, other.y)
    )


@pytest.mark.parametrize(("name", "task_kind", "data", "params"), CASES)
def test_draw_ignores_global_rng_call_order_and_feature_values(
    name: str, task_kind: str, data: str, params: dict, request: pytest.FixtureRequest
) -> None:
    x, y = request.getfixturevalue(data)
    np.random.seed(0)
    reference = perturb_train(name, x, y, seed=11, task_kind=task_kind, **params)
    # global numpy state, earlier perturb calls and what x contains must not matter
    np.random.seed(12345)
    np.random.random(1000)
    perturb_train(name, x, y, seed=99, task_kind=task_kind, **params)
    marked = np.arange(len(y), dtype=np.float64)[:, None] * np.ones((1, 3))
    result = perturb_train(name, marked, y, seed=11, task_kind=task_kind, **params)
    np.testing.assert_array_equal(result.y, reference.y)
    rows = result.x[:, 0].astype(int)  # which original rows survived, in order
    np.testing.assert_array_equal(x[rows], reference.x)


def test_larger_rate_corrupts_a_superset(digits) -> None:
    x, y = digits
    small = perturb_train("label_noise", x, y, seed=3, task_kind="multiclass", rate=0.1)
    large = perturb_train("label_noise", x, y, seed=3, task_kind="multiclass", rate=0.3)
    assert set(_changed_rows(y, small.y)) <= set(_changed_rows(y, large.y))


@pytest.mark.parametrize(("name", "task_kind", "data", "params"), CASES)
def test_inputs_not_mutated(
    name: str, task_kind: str, data: str, params: dict, request: pytest.FixtureRequest
) -> None:
    x, y = request.getfixturevalue(data)
    x_before, y_before = x.copy(), y.copy()
    result = perturb_train(name, x, y, seed=0, task_kind=task_kind, **params)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert not np.shares_memory(result.x, x) and not np.shares_memory(result.y, y)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "task_kind", "params", "message"),
    [
        (
            "foo",
            "regression",
            {},
            "unknown perturb 'foo' (choose from: imbalance, label_noise, none, outliers)",
        ),
        (
            "imbalance",
            "regression",
            {},
            "perturb=imbalance does not fit task kind 'regression' (fits: binary)",
        ),
        (
            "outliers",
            "binary",
            {},
            "perturb=outliers does not fit task kind 'binary' (fits: regression, ranking)",
        ),
        (
            "label_noise",
            "regression",
            {},
            "perturb=label_noise does not fit task kind 'regression' "
            "(fits: binary, multiclass, embedding)",
        ),
        (
            "none",
            "clustering",
            {},
            "unknown task kind 'clustering' (choose from: regression, binary, multiclass, "
            "embedding, ranking)",
        ),
        (
            "outliers",
            "regression",
            {"fraction": 1.5},
            "perturb.fraction must be in [0, 1), got 1.5",
        ),
        (
            "outliers",
            "regression",
            {"fraction": 1.0},
            "perturb.fraction must be in [0, 1), got 1.0",
        ),
        (
            "outliers",
            "regression",
            {"fraction": -0.1},
            "perturb.fraction must be in [0, 1), got -0.1",
        ),
        (
            "outliers",
            "regression",
            {"magnitude": 0},
            "perturb.magnitude must be in (0, inf), got 0",
        ),
        (
            "outliers",
            "regression",
            {"magnitude": float("inf")},
            "perturb.magnitude must be in (0, inf), got inf",
        ),
        (
            "outliers",
            "regression",
            {"magnitude": "big"},
            "perturb.magnitude must be a number in (0, inf), got 'big'",
        ),
        (
            "outliers",
            "regression",
            {"rate": 0.1},
            "perturb=outliers has no parameter 'rate' (allowed: fraction, magnitude)",
        ),
        (
            "label_noise",
            "multiclass",
            {"rate": "abc"},
            "perturb.rate must be a number in [0, 1), got 'abc'",
        ),
        (
            "label_noise",
            "multiclass",
            {"rate": True},
            "perturb.rate must be a number in [0, 1), got True",
        ),
        (
            "label_noise",
            "multiclass",
            {"rate": float("nan")},
            "perturb.rate must be in [0, 1), got nan",
        ),
        (
            "label_noise",
            "multiclass",
            {"kind": "asymmetric"},
            "perturb.kind must be one of: pairflip, symmetric, got 'asymmetric'",
        ),
        (
            "imbalance",
            "binary",
            {"positive_fraction": 0.0},
            "perturb.positive_fraction must be in (0, 1], got 0.0",
        ),
        (
            "imbalance",
            "binary",
            {"positive_fraction": None},
            "perturb.positive_fraction must be a number in (0, 1], got None",
        ),
        ("none", "binary", {"rate": 0.1}, "perturb=none has no parameter 'rate' (allowed: none)"),
    ],
)
def test_bad_input_raises_one_line(
    cancer, name: str, task_kind: str, params: dict, message: str
) -> None:
    x, y = cancer
    with pytest.raises(ValueError) as err:
        perturb_train(name, x, y, seed=0, task_kind=task_kind, **params)
    assert str(err.value) == message
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"seed": -1}, "seed must be a non-negative integer, got -1"),
        ({"seed": 1.5}, "seed must be a non-negative integer, got 1.5"),
        ({"num_classes": 1}, "num_classes must be >= 2"),
        ({"num_classes": 5}, "labels must be in [0, 5), got range [0, 9]"),
    ],
)
def test_bad_seed_or_classes(digits, kwargs: dict, fragment: str) -> None:
    x, y = digits
    call = {"seed": 0, "task_kind": "multiclass", **kwargs}
    with pytest.raises(ValueError) as err:
        perturb_train("label_noise", x, y, **call)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bad_arrays(diabetes, cancer) -> None:
    x, y = diabetes
    with pytest.raises(ValueError, match="different sample counts: 442 vs 441"):
        perturb_train("outliers", x, y[:-1], seed=0, task_kind="regression")
    with pytest.raises(ValueError, match="empty"):
        perturb_train("outliers", x[:0], y[:0], seed=0, task_kind="regression")
    with pytest.raises(ValueError, match="finite"):
        perturb_train("outliers", x, np.where(y > 300, np.nan, y), seed=0, task_kind="regression")
    with pytest.raises(ValueError, match="whole numbers"):
        perturb_train("label_noise", x, y / 7, seed=0, task_kind="multiclass")
    xc, yc = cancer
    with pytest.raises(ValueError, match="at least one positive"):
        perturb_train("imbalance", xc, np.zeros_like(yc), seed=0, task_kind="binary")
