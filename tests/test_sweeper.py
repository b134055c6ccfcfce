"""The lossbench sweeper composes each job's config once, and the CLI's GC tuning."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import OmegaConf

# Hydra's plugin scan re-runs the plugin modules it finds: let it run before importing one.
Plugins.instance()
from hydra_plugins.lossbench_sweeper.compose_once import ComposeOnceLoader  # noqa: E402


class CountingLoader(ComposeOnceLoader):
    """Hydra's real loader, counting the job configs it composes (ComposeOnceLoader's
    delegation does the rest)."""

    def __init__(self, loader) -> None:
        super().__init__(loader)
        self.composed = 0

    def load_sweep_config(self, master_config, sweep_overrides):
        self.composed += 1
        return self.loader.load_sweep_config(master_config, sweep_overrides)


@pytest.fixture(scope="module")
def hydra_loader():
    """Hydra's config loader for lossbench's configs, and a multirun's master config."""
    with initialize_config_module("lossbench.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", ["task=binary"], RunMode.MULTIRUN)
        yield loader, master


def as_dict(config) -> dict:
    return OmegaConf.to_container(config, resolve=False)


def test_a_validated_config_is_the_one_the_launcher_gets_and_is_composed_once(
    hydra_loader,
) -> None:
    loader, master = hydra_loader
    counting = CountingLoader(loader)
    once = ComposeOnceLoader(counting)
    jobs = [["loss=focal", "seed=1"], ["loss=bce", "seed=2"]]
    for overrides in jobs:  # what the sweeper does to validate the batch
        once.keep(master, overrides)
    launched = [once.load_sweep_config(master, overrides) for overrides in jobs]
    assert counting.composed == 2
    for config, overrides in zip(launched, jobs, strict=True):
        assert as_dict(config) == as_dict(loader.load_sweep_config(master, overrides))
    assert launched[0].loss.name == "focal" and launched[1].seed == 2


def test_a_config_is_handed_out_once_then_composed_afresh(hydra_loader) -> None:
    loader, master = hydra_loader
    counting = CountingLoader(loader)
    once = ComposeOnceLoader(counting)
    once.keep(master, ["seed=3"])
    first = once.load_sweep_config(master, ["seed=3"])
    second = once.load_sweep_config(master, ["seed=3"])  # a launcher retrying the job
    unseen = once.load_sweep_config(master, ["seed=4"])
    assert counting.composed == 3
    assert first is not second and as_dict(first) == as_dict(second)
    assert unseen.seed == 4


def test_a_loader_sent_to_another_process_carries_no_configs(hydra_loader) -> None:
    loader, master = hydra_loader
    once = ComposeOnceLoader(loader)
    once.keep(master, ["seed=5"])
    assert once.kept and not pickle.loads(pickle.dumps(once)).kept


def test_a_bad_override_stops_the_sweep_before_any_job_runs(cli) -> None:
    # loss=huber has a delta, loss=l1 does not: the l1 jobs cannot be composed.
    proc = cli("-m", "loss=huber,l1", "loss.delta=2", "seed=0,1", "logger=none",
               "trainer.max_epochs=1")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "delta" in lines[0], proc.stderr
    assert not list(Path(proc.cwd).rglob("results.json"))


def test_the_cli_freezes_its_imports_and_keeps_collecting(tmp_path: Path) -> None:
    code = """
import gc, sys
from lossbench.gc_tuning import freeze_imports
freeze_imports()
frozen = gc.get_freeze_count()
freeze_imports()  # once per process
assert gc.get_freeze_count() == frozen, "froze twice"
assert "pytorch_lightning" in sys.modules and gc.isenabled()
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after the freeze: garbage, and collected
del a, b
print(frozen, gc.collect())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    frozen, collected = map(int, done.stdout.split())
    assert frozen > 100_000 and collected >= 2


def test_the_cli_sweeps_with_the_lossbench_sweeper_by_default(cli) -> None:
    proc = cli("-m", "seed=0,1", "logger=none", "trainer.max_epochs=1")
    assert proc.returncode == 0, proc.stderr
    assert "sweep done: 2 of 2 jobs (2 ran: 2 ok)" in proc.stdout
    (multirun,) = Path(proc.cwd).rglob("multirun.yaml")
    sweeper = OmegaConf.load(multirun).hydra.sweeper
    assert sweeper._target_.endswith("compose_once.LossbenchSweeper")
    assert len(list(Path(proc.cwd).rglob("results.json"))) == 2


def test_a_batch_composes_as_hydra_composes_each_job(hydra_loader) -> None:
    """Jobs that differ in plain values are copies of their shape's first job with the values
    set: each equals Hydra's own composition of it, `hydra` node and flags included."""
    from hydra_plugins.lossbench_sweeper.batch_compose import BatchComposer

    loader, master = hydra_loader
    batch = [[f"loss={loss}", "perturb=label_noise", f"seed={seed}", f"perturb.rate={rate}",
              "trainer.max_epochs=2"]
             for loss in ("bce", "focal") for rate in (0.0, 0.2) for seed in (0, 1, 2)]
    batch += [["loss=focal", "loss.gamma=3", "seed=0"], ["loss=focal", "loss.gamma=1", "seed=4"],
              ["+model.extra=1", "seed=0"], ["+model.extra=2", "seed=0"],
              ["name='${task.name}-x'", "seed=1"], ["name=plain", "seed=1"]]
    composer = BatchComposer(loader, master)
    for overrides in batch:
        ours = composer.compose(overrides)
        hydras = loader.load_sweep_config(master, overrides)
        assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), overrides
        assert as_dict(ours) == as_dict(hydras), overrides
        assert OmegaConf.is_struct(ours) and not OmegaConf.is_readonly(ours.hydra)
        assert ours.hydra.job.override_dirname == hydras.hydra.job.override_dirname
    # One Hydra composition per shape: 2 losses, focal's gamma, each `+` line, the names.
    assert composer.composed_by_hydra == 2 + 1 + 2 + 1


def test_a_batch_job_with_a_bad_value_fails_as_in_hydra(hydra_loader) -> None:
    from hydra.errors import ConfigCompositionException

    from hydra_plugins.lossbench_sweeper.batch_compose import BatchComposer

    loader, master = hydra_loader
    composer = BatchComposer(loader, master)
    composer.compose(["seed=0", "trainer.max_epochs=2"])
    with pytest.raises(ConfigCompositionException):
        loader.load_sweep_config(master, ["seed=0", "trainer.nonexistent_key=2"])
    with pytest.raises(ConfigCompositionException):
        composer.compose(["seed=1", "trainer.nonexistent_key=2"])


def test_a_members_hydra_files_read_back_as_omegaconf_writes_them(hydra_loader) -> None:
    from lossbench.stack_plan import yaml_text

    loader, master = hydra_loader
    config = loader.load_sweep_config(master, ["loss=focal", "seed=3"])
    tricky = OmegaConf.create({
        "floats": ["1e-3", "1.5", ".inf", "nan"], "ints": ["12", "0x1f"], "bools": [
            "true", "off", "Yes"], "null": ["null", "~", None], "empty": "", "interp": "${seed}",
        "colon": "a: b # c", "multi": "line one\nline two", "unicode": "λ→ü", "long": "x " * 60,
        "nested": {"list": [1, 2.5, True, None, {"k": "v"}]}, "quote": "it's \"q\""})
    for node in (config, config.hydra, config.hydra.overrides.task, tricky):
        container = OmegaConf.to_container(node, resolve=False, enum_to_str=True)
        # Read back as Hydra reads a job's files: the same values, of the same types.
        ours = OmegaConf.to_container(OmegaConf.create(yaml_text(container)), resolve=False)
        theirs = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(node)), resolve=False)
        assert ours == theirs == container
        assert repr(ours) == repr(theirs)  # types too: '1e-3' stays a string, 1 an int
