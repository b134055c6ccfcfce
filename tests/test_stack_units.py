"""A stack is one launch unit: any launcher receives whole stacks, data sets of equal shapes
stack together, and the report and the closing line read the sweep's manifest."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossbench.results import RESULTS_NAME, read_results

FAST = ("logger=none", "trainer.progress_bar=false", "threads=1", "model.hidden_dims=[16]",
        "trainer.max_epochs=3")


def _sweep_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    match = re.search(r"sweep done: .* in (\S+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return Path(proc.cwd) / match.group(1)


def _by_folder(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: read_results(p) for p in sorted(sweep.glob(f"*/{RESULTS_NAME}"))}


def _manifest(sweep: Path) -> dict:
    return json.loads((sweep / "manifest.json").read_text())


def _write_table(path: Path, seed: int, features: int) -> None:
    """A regression table (numeric target from a linear model plus noise), `features` wide."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(240, features))
    y = x @ rng.normal(size=features) + 0.3 * rng.normal(size=240)
    pd.DataFrame(x, columns=[f"f{i}" for i in range(features)]).assign(y=y).to_csv(
        path, index=False)


@pytest.fixture(scope="module")
def tables(new_cli):
    """Three CSV tables, two of one shape and one wider, swept stacked and with stack=false."""
    stacked, apart = new_cli("tables_stacked"), new_cli("tables_apart")
    for cli in (stacked, apart):
        for name, seed, width in (("a", 1, 5), ("b", 2, 5), ("c", 3, 7)):
            _write_table(cli.cwd / f"{name}.csv", seed, width)
    args = ("-m", "task=table", "task.path=a.csv,b.csv,c.csv", "task.target=y",
            "loss=auto,l1", "seed=0,1", *FAST)
    started = stacked.start(*args), apart.start(*args, "stack=false")
    return started[0].wait(600), started[1].wait(600)


def test_data_sets_of_equal_shapes_train_in_one_stack(tables) -> None:
    stacked, apart = tables
    for proc in tables:
        assert proc.returncode == 0, proc.stderr
        assert "sweep done: 12 of 12 jobs (12 ran: 12 ok)" in proc.stdout
    together, alone = _by_folder(_sweep_dir(stacked)), _by_folder(_sweep_dir(apart))
    assert list(together) == list(alone) and len(together) == 12
    # kind=auto is read from each table: all regression, loss=auto is mse.
    assert {r["kind"] for r in together.values()} == {"regression"}
    members = {name: (r["data"]["path"], (r.get("stack") or {}).get("members"))
               for name, r in together.items()}
    # a.csv and b.csv (5 features) share a stack of 8; c.csv (7 features) is a stack of 4.
    assert sorted(m for _, m in members.values()) == [4] * 4 + [8] * 8
    assert all(m == 4 for path, m in members.values() if path.endswith("c.csv"))
    # One launch unit: the basic launcher ran one job, which trained all twelve.
    manifest = _manifest(_sweep_dir(stacked))
    assert manifest["units"] == 1 and manifest["stacks"] == [list(range(12))]
    for name, results in together.items():
        other = alone[name]
        assert "stack" not in other and results["config_hash"] == other["config_hash"]
        for which in ("best", "last"):
            a, b = results["metrics"][which], other["metrics"][which]
            assert a.keys() == b.keys()
            assert all(math.isclose(a[k], b[k], rel_tol=1e-4, abs_tol=1e-6) for k in a), name


def test_a_members_folder_has_its_hydra_files_as_a_job_of_its_own(tables) -> None:
    import yaml

    sweep = _sweep_dir(tables[0])
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        results = read_results(job / RESULTS_NAME)
        hydra = job / ".hydra"
        assert yaml.safe_load((hydra / "overrides.yaml").read_text()) == results["overrides"]
        config = yaml.safe_load((hydra / "config.yaml").read_text())
        assert config["seed"] == results["seed"] and config["task"]["path"] in {
            "a.csv", "b.csv", "c.csv"}
        assert yaml.safe_load((hydra / "hydra.yaml").read_text())["hydra"]["job"]["num"] == int(
            job.name.partition("_")[0])


def test_the_report_reads_the_manifest_and_names_jobs_without_results(
    tables, tmp_path: Path,
) -> None:
    import shutil
    import sys

    stacked, _ = tables

    def seeds_counted(folder: Path) -> int:
        proc = subprocess.run([sys.executable, "-m", "lossbench.report", str(folder)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        seeds_counted.stderr = proc.stderr
        return int(pd.read_csv(folder / "report" / "leaderboard.csv")["n_seeds"].sum())

    whole = seeds_counted(_sweep_dir(stacked))
    sweep = tmp_path / "sweep"
    shutil.copytree(_sweep_dir(stacked), sweep, ignore=shutil.ignore_patterns("report"))
    # The copy is read from its own folders (the manifest names where the sweep was made).
    names = [Path(job["folder"]).name for job in _manifest(sweep)["jobs"]]
    (sweep / names[3] / RESULTS_NAME).unlink()
    (sweep / "stray").mkdir()  # a results.json the sweep did not make is not read
    shutil.copy(sweep / names[0] / RESULTS_NAME, sweep / "stray")
    # One job fewer, and the stray copy not counted.
    assert seeds_counted(sweep) == whole - 1
    assert "1 job(s) of the sweep" in seeds_counted.stderr
    assert "have no results.json" in seeds_counted.stderr


@pytest.fixture(scope="module")
def parallel(new_cli):
    cli = new_cli("parallel_units")
    args = ("-m", "task=multiclass", "task.dataset=wine,iris", "loss=ce,mae", "seed=0,1", *FAST)
    started = {
        "joblib": cli.start(*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        "submitit": cli.start(*args, "hydra/launcher=submitit_local"),
    }
    return {name: s.wait(600) for name, s in started.items()}


@pytest.mark.parametrize("launcher", ["joblib", "submitit"])
def test_a_parallel_launcher_receives_whole_stacks(parallel, launcher: str) -> None:
    proc = parallel[launcher]
    assert proc.returncode == 0, proc.stderr
    assert "sweep done: 8 of 8 jobs (8 ran: 8 ok)" in proc.stdout
    lines = re.findall(r"^\[(\d+)/8\] multiclass (ce|mae) s(\d): ok", proc.stdout, flags=re.M)
    assert sorted(int(k) for k, _, _ in lines) == list(range(1, 9))
    sweep = _sweep_dir(proc)
    manifest = _manifest(sweep)
    # One unit per data set, so the two data sets train side by side.
    assert manifest["units"] == 2 and sorted(map(len, manifest["stacks"])) == [4, 4]
    results = _by_folder(sweep)
    assert len(results) == 8
    for r in results.values():
        assert r["status"] == "ok" and r["stack"]["members"] == 4
        assert Path(r["output_dir"]).name in {Path(j["folder"]).name for j in manifest["jobs"]}
    datasets = {r["data"]["dataset"] for r in results.values()}
    assert datasets == {"wine", "iris"}


def _loss(name: str, *overrides: str):
    from lossbench.config import compose_config
    from lossbench.environment import to_plain
    from lossbench.loss_config import loss_from_config

    config = to_plain(compose_config(["task=multiclass", f"loss={name}", *overrides]))
    return loss_from_config(config["loss"], "multiclass")


def test_members_sharing_a_loss_call_it_once_under_vmap_with_each_members_value() -> None:
    import torch
    import torch.nn.functional as F

    from lossbench.stack_losses import StackLosses

    losses = [_loss("ce"), _loss("gce"), _loss("ce"), _loss("gce", "loss.q=0.3"), _loss("ce")]
    stacked = StackLosses(losses)
    assert sorted(stacked.groups) == [[0, 2, 4], [1], [3]]
    generator = torch.Generator().manual_seed(0)
    out = torch.randn(5, 32, 10, generator=generator, requires_grad=True)
    y = torch.randint(0, 10, (5, 32), generator=generator)
    values = stacked(out, y)
    # Cross entropy reduces by a plain mean: one call on all 3 x 32 rows, a mean per member.
    assert stacked.modes[stacked.groups.index([0, 2, 4])] == "samples"
    for k in (0, 2, 4):  # torch's own cross entropy, member by member
        assert torch.allclose(values[k], F.cross_entropy(out[k], y[k]), rtol=1e-6)
    for k in (1, 3):
        assert torch.allclose(values[k], losses[k](out[k], y[k]), rtol=1e-6)
    # Each member's gradient is its own loss's gradient.
    values.sum().backward()
    alone = out.detach().clone().requires_grad_()
    F.cross_entropy(alone[2], y[2]).backward()
    assert torch.allclose(out.grad[2], alone.grad[2], rtol=1e-5, atol=1e-8)
    # A sweep's order, loss by loss: each group is a run of members (a slice, no reordering).
    runs = StackLosses([_loss("ce"), _loss("ce"), _loss("gce"), _loss("gce")])
    assert runs.rows == [slice(0, 2), slice(2, 4)] and runs.in_order
    values = runs(out[:4], y[:4])
    for k in range(4):
        assert torch.allclose(values[k], runs.losses[k](out[k], y[k]), rtol=1e-6)


def test_a_weighted_mean_loss_runs_under_vmap_not_by_samples() -> None:
    """Cross entropy with class weights is a weighted mean: the mean of its per-sample losses
    is another number, so the first batch sends the group to vmap, with each member's value."""
    import torch
    from torch import nn

    from lossbench.stack_losses import StackLosses

    weight = torch.tensor([1.0, 5.0, 0.5, 2.0])
    stacked = StackLosses([nn.CrossEntropyLoss(weight=weight) for _ in range(3)])
    generator = torch.Generator().manual_seed(1)
    out = torch.randn(3, 16, 4, generator=generator)
    y = torch.randint(0, 4, (3, 16), generator=generator)
    values = stacked(out, y)
    assert stacked.modes == ["vmap"]
    for k in range(3):
        expected = nn.functional.cross_entropy(out[k], y[k], weight=weight)
        assert torch.allclose(values[k], expected, rtol=1e-6)


def test_a_loss_vmap_cannot_run_is_called_once_per_member() -> None:
    import torch
    from torch import nn

    from lossbench.stack_losses import StackLosses

    class HostScaled(nn.Module):
        """Reads a value on the host (`.item()`): vmap cannot run it."""

        def forward(self, prediction, target):
            scale = float(target.float().mean().item()) + 1.0
            return nn.functional.cross_entropy(prediction, target) * scale

    stacked = StackLosses([HostScaled(), HostScaled()])
    assert stacked.groups == [[0, 1]]
    out = torch.randn(2, 16, 4)
    y = torch.randint(0, 4, (2, 16))
    values = stacked(out, y)
    assert stacked.modes == ["members"]
    for k in range(2):
        expected = nn.functional.cross_entropy(out[k], y[k]) * (y[k].float().mean() + 1.0)
        assert torch.allclose(values[k], expected, rtol=1e-6)


def test_a_sweep_run_again_in_its_folder_with_stack_false_trains_job_by_job(cli) -> None:
    folder = cli.cwd / "sweep"
    args = ("-m", "task=multiclass", "task.dataset=wine", "seed=0,1", *FAST,
            f"hydra.sweep.dir={folder}")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert all(r["stack"]["members"] == 2 for r in _by_folder(folder).values())
    again = cli(*args, "stack=false", "trainer.max_epochs=2")  # other runs: nothing reused
    assert again.returncode == 0, again.stderr
    assert "sweep done: 2 of 2 jobs (2 ran: 2 ok)" in again.stdout
    assert all("stack" not in r for r in _by_folder(folder).values())
    assert not list(folder.glob("*/stack.json"))


def _task_data(kind: str, n: int, seed: int, classes: int | None = None):
    import torch

    from lossbench.data.tabular import TaskData

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (torch.randint(0, classes, (n,), generator=g) if classes
         else torch.randn(n, generator=g))
    return TaskData(kind, "synthetic", x, y, x, y, x, y, num_classes=classes,
                    target_mean=float(seed), target_std=1.0 + seed)


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_a_stacks_metrics_are_torchmetrics_member_by_member(kind: str) -> None:
    """The vectorised per-epoch metrics equal torchmetrics called on each member alone
    (classes missing from a member's targets or predictions included)."""
    import torch

    from lossbench.tasks import compute_metrics, stacked_metrics

    classes = 6 if kind == "multiclass" else None
    datas = [_task_data(kind, 50, seed, classes) for seed in range(4)]
    g = torch.Generator().manual_seed(9)
    shape = (4, 50, 6) if classes else (4, 50)
    outputs = torch.randn(*shape, generator=g) * 3
    targets = torch.stack([d.y_val for d in datas])
    if classes:
        targets[1][targets[1] == 5] = 0  # a class member 1 never sees
        outputs[2, :, 3] = -50.0  # a class member 2 never predicts
    together = stacked_metrics(outputs, targets, datas)
    for k, data in enumerate(datas):
        alone = compute_metrics(outputs[k], targets[k], data)
        assert together.keys() == alone.keys()
        for name, value in alone.items():
            assert torch.allclose(together[name][k], value, rtol=1e-5, atol=1e-6), (k, name)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_a_stack_of_mlps_runs_as_batched_matmuls_equal_to_each_model(dropout: float) -> None:
    import torch

    from lossbench.models import MLP
    from lossbench.stack import LinearChain

    models = [MLP(5, 3, [8, 7], dropout=dropout, activation="gelu") for _ in range(4)]
    names = [n for n, _ in models[0].named_parameters()]
    chain = LinearChain.of(models[0], names)
    assert chain is not None
    weights = [torch.stack([dict(m.named_parameters())[n].T if n in chain.transposed
                            else dict(m.named_parameters())[n] for m in models]) for n in names]
    assert chain.transposed == {n for n in names if n.endswith("weight")}
    x = torch.randn(4, 10, 5)
    out = chain.forward(weights, x, training=False)
    for k, model in enumerate(models):
        assert torch.allclose(out[k], model.eval()(x[k]), rtol=1e-5, atol=1e-6)
    if dropout:  # training: each member its own mask
        masked = chain.forward(weights, x, training=True)
        assert not torch.allclose(masked, out)
    assert LinearChain.of(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)),
                          ["0.weight", "0.bias", "1.weight", "1.bias"]) is None
