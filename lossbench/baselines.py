"""What "no learning" and a classical model score on the same split, for every leaderboard."""

from __future__ import annotations

import numpy as np
import torch

from lossbench.data.tabular import TaskData
from lossbench.tasks import compute_metrics


def _score(outputs: np.ndarray, data: TaskData) -> dict[str, float]:
    _, y_test = data.split("test")
    out = torch.as_tensor(np.asarray(outputs, dtype=np.float32), device=y_test.device)
    metrics = compute_metrics(out, y_test, data)
    return {f"test/{k}": float(v) for k, v in metrics.items()}


def _prior_baseline(data: TaskData) -> dict[str, float]:
    """Predict the training class frequencies for every sample."""
    y_train = data.y_train.cpu().numpy().astype(int)
    counts = np.bincount(y_train, minlength=data.num_classes) + 1e-6
    prior = np.log(counts / counts.sum()).astype(np.float32)
    return _score(np.tile(prior, (len(data.y_test), 1)), data)


def tabular_baselines(data: TaskData) -> dict[str, dict[str, float]]:
    """A trivial predictor and a scikit-learn linear model, scored with the task's metrics.

    The fits use the job's thread count: scikit-learn's OpenMP runtime loads after the job set
    its limits, and its threads spinning on busy cores made a digits fit take seconds.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=torch.get_num_threads()):
        return _fit_baselines(data)


def _fit_baselines(data: TaskData) -> dict[str, dict[str, float]]:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    if data.is_image:  # a linear model on 50k images costs minutes: keep the prior only
        return {"prior": _prior_baseline(data)} if data.kind == "multiclass" else {}
    x_train, y_train = data.numpy("train")
    x_test, _ = data.numpy("test")
    n_test = len(x_test)
    if data.kind == "regression":
        linear = LinearRegression().fit(x_train, y_train)
        return {
            "mean_predictor": _score(np.full(n_test, y_train.mean()), data),
            "linear_regression": _score(linear.predict(x_test), data),
        }
    if data.kind == "binary":
        rate = float(np.clip(y_train.mean(), 1e-6, 1 - 1e-6))
        logistic = LogisticRegression(max_iter=2000).fit(x_train, y_train)
        return {
            "prior": _score(np.full(n_test, np.log(rate / (1 - rate))), data),
            "logistic_regression": _score(logistic.decision_function(x_test), data),
        }
    if data.kind == "multiclass":
        logistic = LogisticRegression(max_iter=2000).fit(x_train, y_train)
        log_proba = np.full((n_test, data.num_classes), -30.0, dtype=np.float32)
        log_proba[:, logistic.classes_] = logistic.predict_log_proba(x_test)
        return {"prior": _prior_baseline(data), "logistic_regression": _score(log_proba, data)}
    return {}
