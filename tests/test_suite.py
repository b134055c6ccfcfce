"""The offline suite: real data sets shipped in installed packages, each kind with its losses.

`python -m lossbench -m +suite=tabular` sweeps them all; here a slice of it runs through the
real CLI, and every set is loaded and split as a run would.
"""

from __future__ import annotations

import json
import math
import re
import socket
from importlib import resources
from pathlib import Path

import pytest
import yaml

from lossbench.data.bundled import CATALOGUE, catalogue_rows, main, tabular_sets
from lossbench.data.tabular import make_task_data
from lossbench.losses import all_specs

KINDS = ("regression", "binary", "multiclass")


def suite(name: str) -> dict[str, list[str]]:
    text = resources.files("lossbench.conf").joinpath(f"suite/{name}.yaml").read_text()
    params = yaml.safe_load(text)["hydra"]["sweeper"]["params"]
    return {key: str(value).split(",") for key, value in params.items()}


def fits(loss: str, kind: str) -> bool:
    return any(s.name == loss and kind in s.tasks for s in all_specs())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the bundled sets must not open a socket (nothing is downloaded)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a bundled data set tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_at_least_five_real_sets_of_each_kind() -> None:
    for kind in KINDS:
        assert len(tabular_sets(kind)) >= 5, kind


def test_the_suite_sweeps_every_tabular_set_with_its_kinds_losses() -> None:
    params = suite("tabular")
    assert sorted(params["task.dataset"]) == sorted(
        name for kind in KINDS for name in tabular_sets(kind))
    runs = {kind: [loss for loss in params["loss"] if fits(loss, kind)] for kind in KINDS}
    for kind, losses in runs.items():
        assert len(losses) == 4, (kind, losses)
    for kind in KINDS:  # the per-kind suites say the same
        per_kind = suite(f"tabular_{kind}")
        assert per_kind["task.dataset"] == list(tabular_sets(kind))
        assert sorted(per_kind["loss"]) == sorted(runs[kind])
    grid = math.prod(len(v) for v in params.values())
    fitting = sum(len(tabular_sets(k)) * len(runs[k]) for k in KINDS) * len(params["seed"])
    assert (grid, fitting) == (510, 204)


def test_every_bundled_set_loads_offline_and_splits(no_network) -> None:
    for entry in CATALOGUE.values():
        data = make_task_data(entry.kind, entry.name, seed=0)
        info = data.info
        assert info["source"] == "bundled" and info["package"] == entry.package
        assert info["kind"] == entry.kind
        assert sum(info["split"].values()) == info["rows"] - info["rows_dropped"]
        assert data.x_train.isfinite().all() if not data.is_image else data.is_image
        if entry.kind != "regression":
            assert len(info["class_names"]) == data.num_classes >= 2


def test_the_catalogue_lists_rows_features_kind_package_licence_citation(capsys) -> None:
    rows = {r["name"]: r for r in catalogue_rows()}
    assert set(rows) == set(CATALOGUE)
    assert rows["penguins_sex"]["rows"] == 344 and rows["modechoice"]["rows"] == 210
    assert rows["digits_images"]["features"] == "1x8x8"
    for row in rows.values():
        for key in ("kind", "package", "licence", "citation"):
            assert row[key], (row["name"], key)
    main(["--markdown"])
    table = capsys.readouterr().out
    assert table.count("\n") == len(CATALOGUE) + 2  # a header and its rule
    assert "| fair_affair | binary | 6366 | 8 |" in table


def test_no_boston_housing() -> None:
    assert not any("boston" in name for name in CATALOGUE)


def test_a_slice_of_the_suite_runs_through_the_cli(new_cli) -> None:
    """The suite's own config, narrowed on the command line: 3 sets x 4 losses x 1 seed."""
    proc = new_cli("suite").start(
        "-m", "+suite=tabular", "task.dataset=iris,penguins_sex,star98",
        "loss=mse,ce,bce_logits,focal", "seed=0", "trainer.max_epochs=2", "logger=none",
        "threads=1").wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"sweep done: 12 of 12 jobs \(6 ran: 6 ok; 6 skipped\)", proc.stdout), \
        proc.stdout
    found = [json.loads(p.read_text()) for p in Path(proc.cwd).rglob("results.json")]
    ran = {(r["task"], r["config"]["loss"]["name"]) for r in found if r["status"] == "ok"}
    assert ran == {("iris", "ce"), ("iris", "focal"), ("penguins_sex", "mse"),
                   ("penguins_sex", "bce_logits"), ("penguins_sex", "focal"),
                   ("star98", "mse")}
    for r in found:
        if r["status"] == "ok":
            assert r["data"]["dataset"] == r["task"] and r["baselines"]


def test_real_digit_images_train_the_cnn_offline(run_in, tmp_path: Path, no_network) -> None:
    results = run_in(tmp_path, "task=multiclass", "task.dataset=digits_images", "model=cnn",
                     "trainer.max_epochs=2")
    assert results["status"] == "ok", results["reason"]
    assert results["data"]["image_shape"] == [1, 8, 8]
    assert results["metrics"]["best"]["test/acc"] > 0.3
