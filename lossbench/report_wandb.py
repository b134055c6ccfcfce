"""The report in Weights & Biases: tables and plots on the sweep group's summary run, and for
users who are logged in a saved workspace view of the group (wandb-workspaces)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossbench.report_format import metric_words

if TYPE_CHECKING:
    import pandas as pd

    from lossbench.report import Task


def dashboard(entity: str | None, project: str, group: str, tasks: list[Task]) -> Any:
    """A workspace view of one sweep group: per task, the validation selection metric per epoch
    grouped by loss and a parallel-coordinates panel over the swept axes; the runs table pins
    the best and last test metrics. Built here, saved by the caller."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    sections, pinned = [], ["config:loss.name", "config:seed"]
    for task in tasks:
        panels: list[Any] = []
        if task.val_metric:
            panels.append(wr.LinePlot(
                title=f"{task.name}: {metric_words(task.val_metric)} per epoch, mean by loss",
                x="epoch", y=[task.val_metric], groupby=wr.Config("loss.name"),
                groupby_aggfunc="mean", groupby_rangefunc="stderr"))
        # Problem columns are named as the runs' config names them.
        axes = ["task.dataset" if k == "dataset" else "perturb.name" if k == "perturb" else k
                for k in task.swept]
        columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k)) for k in
                   ["loss.name", *axes]]
        if task.selection:
            columns.append(wr.ParallelCoordinatesPlotColumn(
                metric=wr.SummaryMetric(task.sel), display_name=metric_words(task.sel)))
            pinned += [f"summary:{task.sel}", f"summary:last/{task.selection}"]
        panels.append(wr.ParallelCoordinatesPlot(
            title=f"{task.name}: swept settings against {metric_words(task.sel)}",
            columns=columns))
        sections.append(ws.Section(name=task.name, panels=panels, is_open=True))
    return ws.Workspace(
        entity=entity or "", project=project, name=f"lossbench sweep {group}",
        sections=sections,
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("Group") == group, ws.Metric("JobType") != "report"],
            pinned_columns=list(dict.fromkeys(pinned))))


def log_wandb(folders: list[Path], out: Path, lb: pd.DataFrame, pairs: pd.DataFrame,
              across: dict[str, Any], plots: list[Path], tasks: list[Task]) -> str | None:
    """Leaderboard, pair tests, cross-problem tables and plots to one summary run in the sweep's
    group; online and logged in, also the workspace view. Returns the view's URL, if saved."""
    import pandas as pd
    import wandb

    from lossbench.loggers import _wandb_credentials
    from lossbench.report import warn

    def table(df: pd.DataFrame) -> Any:
        clean = df.astype(object).where(df.notna(), None)
        return wandb.Table(columns=[str(c) for c in clean.columns], data=clean.values.tolist())

    group = folders[0].resolve().name
    mode = os.environ.get("WANDB_MODE", "offline")
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "lossbench"), mode=mode,
                     group=group, job_type="report", dir=str(out), name=f"report-{group}")
    data = {"leaderboard": table(lb.drop(columns=["history"], errors="ignore")),
            **({"paired": table(pairs)} if len(pairs) else {})}
    for kind, s in across["kinds"].items():
        ranks = pd.DataFrame([{"loss": k, "mean_rank": v, "ci_lo": s["mean_rank_ci"][k][0],
                               "ci_hi": s["mean_rank_ci"][k][1]}
                              for k, v in s["mean_rank"].items()])
        if len(ranks):
            data[f"across/{kind}/mean_rank"] = table(ranks)
        for name in ("pairwise", "bayesian"):
            if s[name]:
                data[f"across/{kind}/{name}"] = table(pd.DataFrame(s[name]))
        run.summary[f"across/{kind}/friedman_p"] = s["friedman_p"]
        run.summary[f"across/{kind}/cd"] = s["cd"]
        run.summary[f"across/{kind}/verdict"] = s["verdict"]
    data.update({f"plots/{p.stem}": wandb.Image(str(p)) for p in plots})
    run.log(data)
    entity, project = getattr(run, "entity", None), run.project
    run.finish()
    if mode == "offline" or not _wandb_credentials():
        return None
    try:
        view = dashboard(entity, project, group, tasks)
        view.save()
    except ImportError:
        warn("the sweep's dashboard needs wandb-workspaces (pip install wandb-workspaces)")
        return None
    except Exception as exc:  # a dashboard that fails to save must not cost the report
        warn(f"the sweep's dashboard was not saved: {exc}")
        return None
    return view.url
