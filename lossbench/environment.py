"""Where a run executes: Hydra's job, threads, Lightning's console noise, versions, git."""

from __future__ import annotations

import functools
import logging
import os
import platform
import signal
import subprocess
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any


def to_plain(cfg: Any) -> dict[str, Any]:
    """A resolved plain dict of a DictConfig (or a dict), the form stored in results.json."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def hydra_runtime() -> dict[str, Any] | None:
    """The Hydra job this process runs (None outside Hydra): folder, overrides, sweep group."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    return {
        "output_dir": hc.runtime.output_dir,
        "overrides": list(hc.overrides.task),
        "group": Path(hc.sweep.dir).name if multirun else None,
        "n_jobs": parallel_jobs(hc.launcher) if multirun else 1,
    }


def parallel_jobs(launcher: Any) -> int:
    """How many jobs of this sweep run side by side on this machine, by launcher."""
    target = str(launcher.get("_target_", ""))
    cores = os.cpu_count() or 1
    if "joblib" in target.lower():
        n_jobs = int(launcher.get("n_jobs", 1) or 1)
        return cores if n_jobs < 0 else n_jobs
    if "LocalLauncher" in target:  # submitit_local starts every job of the array at once
        total = os.environ.get("LOSSBENCH_SWEEP_TOTAL", "")
        limit = int(launcher.get("array_parallelism", 256) or 256)
        return min(int(total), limit) if total.isdigit() else cores
    return 1


def output_dir_for(config: dict[str, Any], runtime: dict[str, Any] | None) -> Path:
    """`output_dir` if given, else Hydra's job folder, else a fresh folder under out_root."""
    if config.get("output_dir"):
        return Path(config["output_dir"])
    if runtime:
        return Path(runtime["output_dir"])
    stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
    return Path(config.get("out_root") or "outputs") / "runs" / f"{stamp}_{config['name']}"


def quiet_lightning() -> None:
    """Silence Lightning's CPU chatter: availability lines, tips, worker and interval warnings."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*does not have many workers.*", ".*log_every_n_steps.*", ".*LeafSpec.*",
        ".*Trying to infer the `batch_size`.*", ".*TensorBatches.*", ".*train_dataloader.*",
        ".*`isinstance.*treespec.*", ".*torch.tensor results are registered.*",
        # Every DDP process evaluates the whole validation split: the values already agree.
        ".*sync_dist=True.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def versions() -> dict[str, str]:
    import pytorch_lightning
    import torch

    from lossbench import __version__

    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "lightning": pytorch_lightning.__version__, "lossbench": __version__,
    }


@functools.cache
def git_commit() -> str | None:
    """The commit of lossbench's checkout (None outside git), asked of git once a process."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def set_threads(config: dict[str, Any], runtime: dict[str, Any] | None) -> int:
    """Torch (and BLAS) threads for this job: `threads`, or chosen for the job's work.

    Tabular models are tiny: one thread beats several (thread wake-ups cost more than the
    matrix products). Image models split the cores among the jobs running side by side.
    """
    import torch

    threads = int(config.get("threads") or 0)
    if threads == 0 and config["task"].get("source") != "torchvision":
        threads = 1
    elif threads == 0:
        parallel = runtime["n_jobs"] if runtime else 1
        threads = max(1, (os.cpu_count() or 1) // max(parallel, 1))
    torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # scikit-learn's BLAS too: baselines must not oversubscribe
    return threads


_interrupted = False


def catch_interrupts() -> None:
    """Ctrl-C as a KeyboardInterrupt that is also remembered: one raised while the collector
    runs an object's `__del__` (Lightning's profiler has one) is printed and dropped by
    Python, and the sweep would go on. `raise_if_interrupted` raises it again at a job's end.
    A SIGINT the process was started ignoring stays ignored."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return

    def remember(signum: int, frame: object) -> None:
        global _interrupted
        _interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, remember)


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that has come, if something swallowed it."""
    if _interrupted:
        raise KeyboardInterrupt
