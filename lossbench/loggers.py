"""Experiment loggers (wandb, csv, none); wandb trouble warns once and never costs local results."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

log = logging.getLogger(__name__)


def _wandb_credentials() -> bool:
    """Whether an API key is at hand, so online mode will not stop to prompt for one."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def _warn(message: str) -> None:
    """One line on the console (and in the job's run.log under Hydra), not two warnings."""
    log.warning(message)


class SafeWandbLogger(WandbLogger):
    """WandbLogger whose failures turn into one warning and a silent logger for the rest."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wandb_init.pop("anonymous", None)  # deprecated in wandb; it warns on every run
        self.broken = False

    def _guard(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            return None
        try:
            return getattr(super(), method)(*args, **kwargs)
        except Exception as err:  # any wandb failure: keep training, keep results
            self.broken = True
            _warn(f"wandb failed ({type(err).__name__}: {err}); continuing without wandb")
            return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._guard("log_metrics", metrics, step)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self._guard("log_hyperparams", params, *args, **kwargs)

    def finalize(self, status: str) -> None:
        self._guard("finalize", status)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._guard("after_save_checkpoint", checkpoint_callback)

    def summarize(self, summary: dict[str, Any]) -> None:
        """Put final figures in the run's summary, where wandb's tables and sweeps read them."""
        if self.broken:
            return
        try:
            self.experiment.summary.update(summary)
        except Exception as err:
            self.broken = True
            _warn(f"wandb failed ({type(err).__name__}: {err}); continuing without wandb")

    def close(self) -> None:
        """Finish the wandb run, so the next job of a sweep in this process gets its own run."""
        import wandb

        try:
            if wandb.run is not None:
                wandb.finish()
        except Exception as err:
            _warn(f"wandb could not finish the run ({type(err).__name__}: {err})")


def build_logger(
    cfg: dict[str, Any], output_dir: Path, run_name: str, group: str, tags: list[str],
    config: dict[str, Any],
) -> Logger | None:
    """The configured experiment logger, writing its files inside the run's output folder."""
    name = cfg["name"]
    if name == "none":
        return None
    if name == "csv":
        return CSVLogger(save_dir=str(output_dir), name="csv", version="")
    mode = cfg.get("mode", "offline")
    if mode == "online" and not _wandb_credentials():
        _warn("wandb: logger.mode=online but no API key (wandb login); logging offline instead")
        mode = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    logger = SafeWandbLogger(
        name=run_name, project=cfg.get("project", "lossbench"), entity=cfg.get("entity"),
        group=cfg.get("group") or group, tags=tags, save_dir=str(output_dir),
        offline=mode == "offline", mode=mode, config=config,
    )
    try:
        _ = logger.experiment  # start the run now: a failure here is one warning, not a crash
    except Exception as err:
        _warn(f"wandb could not start ({type(err).__name__}: {err}); continuing without wandb")
        return None
    return logger


def close_logger(logger: Logger | None, summary: dict[str, Any]) -> None:
    if isinstance(logger, SafeWandbLogger):
        logger.summarize(summary)
        logger.close()
