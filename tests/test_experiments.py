"""Named experiments and the catalogue: every config'd loss trains on every task it fits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from lossbench.__main__ import group_options
from lossbench.config import compose_config
from lossbench.loss_config import loss_label
from lossbench.losses import list_losses
from lossbench.run import run

TASK_KINDS = ("regression", "binary", "multiclass", "ranking", "embedding")


def sweep(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """`python -m lossbench -m ARGS` in `cwd`; its exit status and every results.json it wrote."""
    env = {**os.environ, "CI": "1", "LOSSBENCH_OUT": str(cwd / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "lossbench", "-m", *args, "logger=none"], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600,
    )
    results = [json.loads(p.read_text()) for p in sorted(cwd.rglob("results.json"))]
    return proc, results


def experiment_params(name: str) -> dict[str, str]:
    from hydra import compose, initialize_config_module

    with initialize_config_module("lossbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    return {k: str(v) for k, v in cfg.hydra.sweeper.params.items()}


def loss_config(name: str) -> dict:
    import yaml

    text = resources.files("lossbench.conf").joinpath(f"loss/{name}.yaml").read_text()
    return yaml.safe_load(text)


def fitting_pairs() -> list[tuple[str, str]]:
    """(task, loss config) for every loss config file and every task its loss serves."""
    pairs = []
    for option in group_options("loss"):
        if option in ("custom", "auto"):
            continue
        name = loss_config(option)["name"]
        pairs += [(task, option) for task in TASK_KINDS if name in list_losses(task)]
    return pairs


def test_every_loss_config_names_a_registered_loss() -> None:
    registered = set(list_losses())
    for option in group_options("loss"):
        name = loss_config(option)["name"]
        assert name in ("custom", "auto") or name in registered, option


@pytest.mark.parametrize(("task", "loss"), fitting_pairs())
def test_every_task_loss_pair_trains(tmp_path: Path, task: str, loss: str) -> None:
    results = run(compose_config([
        f"task={task}", f"loss={loss}", "trainer.max_epochs=2", "logger=none",
        f"output_dir={tmp_path}",
    ]))
    assert results["status"] == "ok", results.get("reason")
    assert results["loss"] == loss_label(loss_config(loss))
    metric = results["selection"]["metric"].replace("val/", "test/")
    assert results["metrics"]["best"][metric] == results["metrics"]["best"][metric]  # not NaN


@pytest.mark.parametrize("name", group_options("experiment"))
def test_experiment_sweeps_real_losses_over_five_seeds(name: str) -> None:
    params = experiment_params(name)
    assert params["seed"] == "0,1,2,3,4"
    for loss in params["loss"].split(","):
        assert loss in group_options("loss"), (name, loss)


def test_all_losses_lists_every_loss_config() -> None:
    listed = set(experiment_params("all_losses")["loss"].split(","))
    assert listed == set(group_options("loss")) - {"custom", "auto"}
    assert set(experiment_params("all_losses")["task"].split(",")) == set(TASK_KINDS)


def test_all_losses_skips_pairs_that_do_not_fit(tmp_path: Path) -> None:
    proc, results = sweep(
        tmp_path, "+experiment=all_losses", "task=regression", "seed=0", "trainer.max_epochs=1"
    )
    assert proc.returncode == 0, proc.stderr
    n_losses = len(group_options("loss")) - 2  # not custom, not auto
    assert len(results) == n_losses
    ran = {r["loss"] for r in results if r["status"] == "ok"}
    skipped = [r for r in results if r["status"] == "skipped"]
    assert ran == {"custom_mse", "huber", "l1", "mse", "smooth_l1"}
    assert len(skipped) == n_losses - len(ran)
    assert all("does not fit task 'regression'" in r["reason"] for r in skipped)
    # Skipped pairs get one summary line with the reason, not a progress line each.
    assert "skipped" not in "".join(re.findall(r"^\[\d+/\d+\].*$", proc.stdout, flags=re.M))
    (summary,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("skipped ")]
    assert summary.startswith(f"skipped {len(skipped)} task x loss pairs whose loss does not fit")


ROBUSTNESS = {
    "robust_regression": ("perturb.fraction", 4 * 3),
    "label_noise": ("perturb.rate", 5 * 3),
    "imbalance": ("perturb.positive_fraction", 3 * 3),
    "stability": ("task.input_scale", 2 * 3 * 2),
}


@pytest.mark.parametrize("name", sorted(ROBUSTNESS))
def test_robustness_experiment_runs_and_reports(tmp_path: Path, name: str) -> None:
    """One seed, two epochs of each robustness experiment, then the report's strength plot."""
    swept, n_jobs = ROBUSTNESS[name]
    proc, results = sweep(tmp_path, f"+experiment={name}", "seed=0", "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stderr
    assert len(results) == n_jobs
    assert all(r["status"] in ("ok", "diverged") for r in results)
    if swept.startswith("perturb."):
        strengths = {r["config"]["perturb"][swept.split(".")[1]] for r in results}
        assert len(strengths) == 3
        perturbed = [r for r in results if r["perturb"]["name"] != "none"]
        assert all(r["perturb"]["n_train_before"] > 0 for r in perturbed)

    from lossbench.report import build_report

    report = build_report([tmp_path / "outputs"])
    plots = [Path(p).name for p in report["plots"]]
    assert any(f"_vs_{swept}" in p for p in plots), plots


def test_loss_configs_agree_with_the_registry() -> None:
    """conf/loss/*.yaml and the registry's Params hold one default each: a key the YAML sets
    is a declared hyperparameter of the loss, and its value is the registry's default (null:
    "the loss's own default", resolved per task as focal's alpha is)."""
    from lossbench.loss_config import LOSS_META_KEYS
    from lossbench.losses.registry import REDUCTION, spec_for

    for option in group_options("loss"):
        config = loss_config(option)
        if config["name"] in ("custom", "auto"):
            continue
        tasks = [t for t in TASK_KINDS if config["name"] in list_losses(t)]
        for task in tasks:
            params = {"reduction": REDUCTION, **spec_for(config["name"], task).params}
            for key, value in config.items():
                if key in LOSS_META_KEYS or value is None:
                    continue
                assert key in params, (option, task, key)
                if option == config["name"]:  # a named variant (bce_logits_balanced) may differ
                    assert value == params[key].default, (option, task, key, value)
