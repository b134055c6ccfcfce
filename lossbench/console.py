"""The short, clean summary a single run prints: task, loss, test metrics, where results went."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def _figures(metrics: dict[str, float], prefix: str = "test/") -> str:
    shown = (f"{k[len(prefix):]} {v:.4g}" for k, v in metrics.items() if k.startswith(prefix))
    return "  ".join(shown)


def print_run_summary(results: dict[str, Any]) -> None:
    """Print a few lines for a single run (a sweep prints one progress line per job instead)."""
    from lossbench.run import is_rank_zero

    if _in_sweep() or results["status"] == "failed" or not is_rank_zero():
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    head = (
        f"[bold]{results['task']}[/] · [bold]{results['loss']}[/] · seed {results['seed']} · "
        f"{results.get('epochs')} epochs · {results.get('wall_s', 0):.1f} s · {results['status']}"
    )
    console.print(head)
    metrics = results.get("metrics") or {}
    if "best" in metrics:
        console.print(f"  test at best val (epoch {metrics['best']['epoch']}): "
                      f"{_figures(metrics['best'])}")
    if "last" in metrics:
        console.print(f"  test at last epoch ({metrics['last']['epoch']}): "
                      f"{_figures(metrics['last'])}")
    for name, figures in (results.get("baselines") or {}).items():
        console.print(f"  baseline {name}: {_figures(figures)}", style="dim")
    if results["status"] == "diverged":
        console.print(f"  [yellow]{results.get('reason')}[/]")
    console.print(f"  results: {Path(results['output_dir']) / 'results.json'}")
