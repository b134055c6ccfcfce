"""Compare lossbench runs from results.json files: leaderboard, paired tests, plots, table."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossbench.stats import PAIRED_RULE, compare_to_best, t_interval

if TYPE_CHECKING:
    import pandas as pd

PROG = "lossbench.report"
NOT_SWEPT = {"seed", "loss", "task"}


class ReportError(Exception):
    """A user-facing problem reported as one line and exit code 2."""


@dataclass
class Task:
    """What the report needs to know about one task: how to rank and what was swept."""

    name: str
    selection: str | None  # test metric used for ranking, e.g. "test/mae"
    val_metric: str | None  # the validation metric named by results' selection
    mode: str
    context: list[str] = field(default_factory=list)  # swept keys that define a comparison setting
    variant: list[str] = field(default_factory=list)  # swept loss.* keys: variants of one loss

    @property
    def swept(self) -> list[str]:
        return self.context + self.variant


def warn(message: str) -> None:
    """Warnings go to stderr with the program prefix so they stand out from the table."""
    print(f"{PROG}: {message}", file=sys.stderr)


def find_results(folders: list[Path]) -> list[Path]:
    """Every results.json beneath the folders, once each, or a ReportError."""
    for folder in folders:
        if not folder.is_dir():
            raise ReportError(f"no such folder {folder}")
    paths = sorted({p.resolve() for f in folders for p in f.rglob("results.json") if p.is_file()})
    if not paths:
        raise ReportError(f"no results.json under {', '.join(str(f) for f in folders)}")
    return paths


def load_runs(paths: list[Path]) -> list[dict[str, Any]]:
    """Parse results files; unreadable or malformed ones are skipped with a warning."""
    runs = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            warn(f"skipping {path}: {exc}")
            continue
        if (not isinstance(data, dict) or not data.get("task") or not data.get("status")
                or not isinstance(data.get("metrics") or {}, dict)):
            warn(f"skipping {path}: not a lossbench results file")
            continue
        if data["status"] == "skipped":  # a loss that does not fit the task (all_losses)
            continue
        data["_path"], data["_mtime"] = str(path), path.stat().st_mtime
        runs.append(data)
    if not runs:
        raise ReportError(f"no readable results.json among {len(paths)} file(s)")
    return runs


def parse_overrides(items: list[Any] | None) -> dict[str, str]:
    """Hydra overrides as key -> value; +/++/~ prefixes are dropped."""
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if sep and not key.startswith("hydra"):
            out[key.lstrip("+~")] = value
    return out


def detect_swept(runs: list[dict[str, Any]]) -> list[str]:
    """Keys taking more than one value (unset counts) among one loss's runs of a task."""
    keys = sorted({k for r in runs for k in r["_overrides"]} - NOT_SWEPT)
    by_loss: dict[str, list[dict[str, str]]] = {}
    for run in runs:
        by_loss.setdefault(str(run.get("loss")), []).append(run["_overrides"])
    return [k for k in keys if any(len({o.get(k) for o in ovs}) > 1 for ovs in by_loss.values())]


def task_info(name: str, runs: list[dict[str, Any]]) -> Task:
    """Selection metric/mode (first run that states one) and the swept keys of a task."""
    sel = next((r["selection"] for r in runs if isinstance(r.get("selection"), dict)), {})
    val = sel.get("metric")
    test = "test/" + val.split("/", 1)[-1] if val else None
    swept = detect_swept(runs)
    return Task(name, test, val, sel.get("mode", "min"),
                [k for k in swept if not k.startswith("loss.")],
                [k for k in swept if k.startswith("loss.")])


def numeric_or_text(series: pd.Series) -> pd.Series:
    """Override values are strings; make a column numeric when every set value is a number."""
    import pandas as pd

    try:
        return pd.to_numeric(series)
    except (TypeError, ValueError):
        return series.astype(object)


def run_frames(runs: list[dict[str, Any]], task: Task) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per run and one row per (run, baseline), test metrics flattened into columns."""
    import pandas as pd

    rows, base = [], []
    for r in runs:
        ctx = {k: r["_overrides"].get(k) for k in task.swept}
        row = {"task": task.name, "loss": str(r.get("loss")), **ctx, "seed": r.get("seed"),
               "status": r["status"], "wall_s": r.get("wall_s"), "history": r.get("history") or [],
               "_mtime": r["_mtime"]}
        for when, metrics in (r.get("metrics") or {}).items():
            for name, value in (metrics if isinstance(metrics, dict) else {}).items():
                if name.startswith("test/"):
                    row[f"{when}/{name}"] = value
        rows.append(row)
        for bname, metrics in (r.get("baselines") or {}).items():
            b = {"task": task.name, "loss": f"baseline:{bname}", "seed": r.get("seed"),
                 "status": "ok", **{k: ctx[k] for k in task.context}}
            for name, value in (metrics or {}).items():
                b[f"best/{name}"] = b[f"last/{name}"] = value
            base.append(b)
    frame, bframe = pd.DataFrame(rows), pd.DataFrame(base)
    for col in task.swept:
        frame[col] = numeric_or_text(frame[col])
        if col in bframe:
            bframe[col] = numeric_or_text(bframe[col])
    keys = ["loss", *task.swept, "seed"]
    n = len(frame)
    frame = frame.sort_values("_mtime").drop_duplicates(keys, keep="last")
    if len(frame) < n:
        warn(f"{task.name}: {n - len(frame)} duplicate run(s) ignored (kept the newest)")
    if len(bframe):
        bframe = bframe.drop_duplicates(["loss", *task.context, "seed"])
    return frame.reset_index(drop=True), bframe


def metric_columns(frames: list[pd.DataFrame], task: Task) -> list[str]:
    """best/... then last/... test metric columns of runs and baselines, selection first."""
    names = dict.fromkeys(c for f in frames for c in f.columns)
    cols = [c for c in names if c.startswith(("best/test/", "last/test/"))]
    first = {f"best/{task.selection}", f"last/{task.selection}"}
    return sorted(cols, key=lambda c: (not c.startswith("best/"), c not in first, c))


def aggregate(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> list[dict[str, Any]]:
    """Mean and t-CI over ok seeds, plus run counts, per group of keys."""
    rows = []
    for values, g in frame.groupby(keys, dropna=False, sort=True):
        ok = g[g["status"] == "ok"]
        row = dict(zip(keys, values, strict=True))
        row.update(n_seeds=len(ok), n_diverged=int((g["status"] == "diverged").sum()),
                   n_failed=int((g["status"] == "failed").sum()),
                   wall_s=float(ok["wall_s"].astype(float).mean()) if "wall_s" in ok else math.nan)
        for col in metrics:
            stats = t_interval(ok[col].astype(float)) if col in ok else (math.nan,) * 3
            row.update(zip((f"{col}_mean", f"{col}_lo", f"{col}_hi"), stats, strict=True))
        rows.append(row)
    return rows


def leaderboard(frame: pd.DataFrame, bframe: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Loss rows ranked by best/<selection> mean within each setting, then baseline rows."""
    import pandas as pd

    metrics = metric_columns([frame, bframe], task)
    lb = pd.DataFrame(aggregate(frame, ["loss", *task.swept], metrics))
    sel = f"best/{task.selection}_mean"
    if sel in lb:
        score = lb[sel] if task.mode == "min" else -lb[sel]
        if task.context:
            score = score.groupby([lb[k] for k in task.context], dropna=False)
        lb["rank"] = score.rank(method="min").astype("Int64")
    else:
        lb["rank"] = pd.array([pd.NA] * len(lb), dtype="Int64")
    if len(bframe):
        bl = pd.DataFrame(aggregate(bframe, ["loss", *task.context], metrics))
        lb = pd.concat([lb, bl.assign(wall_s=math.nan)], ignore_index=True)
    lb.insert(0, "task", task.name)
    lb["selection"], lb["mode"] = task.selection, task.mode
    lb["_base"] = lb["loss"].str.startswith("baseline:")
    lb = lb.sort_values([*task.context, "_base", "rank", "loss"], na_position="last")
    return lb.drop(columns="_base").reset_index(drop=True)


def settings(df: pd.DataFrame, task: Task):
    """Iterate (context values, sub-frame) pairs; one setting when nothing is swept."""
    if not task.context:
        yield (), df
        return
    yield from df.groupby(task.context, dropna=False, sort=True)


def paired(frame: pd.DataFrame, lb: pd.DataFrame, task: Task) -> list[dict[str, Any]]:
    """Each loss against the rank-1 loss of its setting on shared ok seeds."""
    col = f"best/{task.selection}"
    if col not in frame:
        return []
    ok = frame[frame["status"] == "ok"]
    entry = ["loss", *task.variant]
    out = []
    for ctx, board in settings(lb[lb["rank"].notna()], task):
        sub = _select(ok, task.context, ctx)
        scores = {_key(k): g.set_index("seed")[col].astype(float)
                  for k, g in sub.groupby(entry, dropna=False)}
        ranked = board.sort_values("rank", kind="stable")[entry]
        keys = [_key(item) for item in ranked.itertuples(index=False)]
        stats = compare_to_best({k: scores[k] for k in keys}, best=keys[0])
        out += [{"task": task.name, **dict(zip(task.context, ctx, strict=True)),
                 **dict(zip(entry, k, strict=True)), "best_loss": keys[0][0], "metric": col,
                 "mode": task.mode, **stats[k]} for k in keys]
    return out


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _key(values: Any) -> tuple:
    """Hashable group key with NaN as None, since NaN != NaN breaks dict look-ups."""
    return tuple(None if _isnan(v) else v for v in values)


def _select(df: pd.DataFrame, keys: list[str], values: tuple) -> pd.DataFrame:
    """Rows of df whose keys equal values (NaN matches NaN)."""
    for key, value in zip(keys, values, strict=True):
        df = df[df[key].isna()] if _isnan(value) else df[df[key] == value]
    return df


def fmt(value: Any, digits: int = 4) -> str:
    """Compact cell text: 4 significant digits, blanks for missing."""
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def kv_text(keys: list[str], values: Any, sep: str = ", ") -> str:
    """Swept settings as `k=v` pairs, unset ones left out."""
    return sep.join(f"{k}={fmt(v)}" for k, v in zip(keys, values, strict=True) if fmt(v))


def params_text(row: pd.Series, keys: list[str], short: bool = False) -> str:
    """Swept settings of a leaderboard row; short drops key prefixes when that stays unique."""
    keys = [k for k in keys if k in row]
    names = [k.rsplit(".", 1)[-1] for k in keys]
    if not short or len(set(names)) < len(names):
        names = keys
    return kv_text(names, [row[k] for k in keys])


def ci_text(row: pd.Series, col: str, digits: int = 4) -> str:
    """`mean [lo, hi]` for one metric column prefix."""
    if not fmt(row.get(f"{col}_mean")):
        return ""
    mean, lo, hi = (fmt(row[f"{col}_{s}"], digits) for s in ("mean", "lo", "hi"))
    return f"{mean} [{lo}, {hi}]"


def compact(lb: pd.DataFrame, task: Task, short: bool = False) -> list[dict[str, str]]:
    """Columns a reader scans first; short=True (terminal) means brief names and 3 digits."""
    sel = f"best/{task.selection}"
    digits = 3 if short else 4
    return [{"loss": r["loss"], "params": params_text(r, task.swept, short),
             sel: ci_text(r, sel, digits), "rank": fmt(r["rank"]), "n_seeds": fmt(r["n_seeds"]),
             "diverged": fmt(r["n_diverged"]), "failed": fmt(r["n_failed"]),
             "wall_s": fmt(r["wall_s"], digits)} for _, r in lb.iterrows()]


def md_table(rows: list[dict[str, Any]]) -> str:
    """A GitHub markdown table without needing tabulate."""
    if not rows:
        return "_none_\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def slug(*parts: Any) -> str:
    """File-name-safe name from task and setting values."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "_".join(str(p) for p in parts if str(p))).strip("_")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_task(frame: pd.DataFrame, lb: pd.DataFrame, task: Task, out: Path) -> list[Path]:
    """Selection metric with CIs and validation curves per setting, plus sweep-parameter plots."""
    from matplotlib.figure import Figure

    sel, paths = f"best/{task.selection}", []
    ok = frame[frame["status"] == "ok"]
    for ctx, board in settings(lb, task):
        name = slug(task.name, kv_text(task.context, ctx, "_"))
        board = board[board[f"{sel}_mean"].notna()] if f"{sel}_mean" in board else board[:0]
        if len(board):
            fig = Figure(figsize=(7, 1.2 + 0.35 * len(board)))
            ax = fig.add_subplot()
            labels = [f"{r['loss']} {params_text(r, task.variant)}" for _, r in board.iterrows()]
            mean, lo, hi = (board[f"{sel}_{s}"].to_numpy(float) for s in ("mean", "lo", "hi"))
            err = [mean - lo, hi - mean]
            base = board["loss"].str.startswith("baseline:").to_numpy()
            for mask, color in ((~base, "C0"), (base, "gray")):
                ax.errorbar(mean[mask], [i for i, m in enumerate(mask) if m], fmt="o", capsize=3,
                            xerr=[e[mask] for e in err], color=color)
            ax.set_yticks(range(len(board)), labels)
            ax.invert_yaxis()
            ax.set_xlabel(f"{sel} ({task.mode}), mean and 95% CI")
            ax.set_title(name)
            paths.append(_save(fig, out / f"{name}_selection.png"))
        paths += plot_curves(ok, task, ctx, name, out)
    for key in task.swept:
        if lb[key].dtype.kind in "iuf" and lb[key].nunique() > 1 and f"{sel}_mean" in lb:
            paths.append(plot_sweep(lb, task, key, out))
    return paths


def plot_curves(ok: pd.DataFrame, task: Task, ctx: tuple, name: str, out: Path) -> list[Path]:
    """Mean validation selection metric per epoch, one line per loss."""
    import pandas as pd
    from matplotlib.figure import Figure

    sub = _select(ok, task.context, ctx)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for key, g in sub.groupby(["loss", *task.variant], dropna=False):
        hist = pd.DataFrame([h for hs in g["history"] for h in hs if isinstance(h, dict)])
        if task.val_metric and {"epoch", task.val_metric} <= set(hist.columns):
            curve = hist.groupby("epoch")[task.val_metric].mean()
            label = f"{key[0]} {kv_text(task.variant, key[1:])}"
            ax.plot(curve.index, curve.to_numpy(float), label=label)
    if not ax.lines:
        return []
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{task.val_metric} (mean over seeds)")
    ax.set_title(name)
    ax.legend(fontsize="small")
    return [_save(fig, out / f"{name}_curves.png")]


def plot_sweep(lb: pd.DataFrame, task: Task, key: str, out: Path) -> Path:
    """Selection metric against a numeric swept parameter with CI bands."""
    from matplotlib.figure import Figure

    sel = f"best/{task.selection}"
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    others = [k for k in task.swept if k != key]
    for lkey, g in lb[lb[key].notna()].groupby(["loss", *others], dropna=False):
        g = g.sort_values(key)
        x = g[key].to_numpy(float)
        label = f"{lkey[0]} {kv_text(others, lkey[1:])}"
        style = "--" if lkey[0].startswith("baseline:") else "-"
        (line,) = ax.plot(x, g[f"{sel}_mean"].to_numpy(float), style, marker="o", label=label)
        ax.fill_between(x, g[f"{sel}_lo"].to_numpy(float), g[f"{sel}_hi"].to_numpy(float),
                        color=line.get_color(), alpha=0.2)
    ax.set_xlabel(key)
    ax.set_ylabel(f"{sel} ({task.mode})")
    ax.set_title(f"{task.name}: {sel} vs {key}")
    ax.legend(fontsize="small")
    return _save(fig, out / f"{slug(task.name, 'vs', key)}.png")


def write_markdown(path: Path, folders: list[Path], n_runs: int, tasks: list[Task],
                   lb: pd.DataFrame, pairs: pd.DataFrame, plots: dict[str, list[Path]]) -> None:
    """leaderboard.md: compact leaderboard, paired comparison and plots per task."""
    text = [f"# lossbench report\n\n{n_runs} runs from {', '.join(str(f) for f in folders)}. "
            "Means and 95% t-intervals over seeds of ok runs; full columns in leaderboard.csv.\n"]
    for task in tasks:
        board = lb[lb["task"] == task.name]
        text.append(f"\n## {task.name}\n\nRanked by best/{task.selection} ({task.mode}).\n\n")
        text.append(md_table(compact(board, task)))
        sub = pairs[pairs["task"] == task.name] if len(pairs) else pairs
        cols = [*task.swept, "loss", "best_loss", "n_pairs", "mean_diff", "diff_lo", "diff_hi",
                "p_wilcoxon", "p_holm", "indistinguishable_from_best"]
        text.append(f"\n### Paired comparison with the best loss\n\n{PAIRED_RULE}\n\n")
        text.append(md_table([{c: r[c] for c in cols} for _, r in sub.iterrows()]))
        text += [f"\n![{p.stem}]({p.name})\n" for p in plots.get(task.name, [])]
    path.write_text("".join(text))


def print_table(result: dict[str, Any]) -> None:
    """Rich table per task on the terminal."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Logs and pipes get a wide table rather than rich's 80 columns of wrapped names.
    console = Console(width=None if sys.stdout.isatty() else 160)
    heads = ["loss", "params", "mean [95% CI]", "rank", "seeds", "div", "fail", "wall_s"]
    for task in result["tasks"]:
        board = result["leaderboard"][result["leaderboard"]["task"] == task.name]
        table = Table(title=f"{task.name}: best/{task.selection} ({task.mode})", box=box.SIMPLE,
                      padding=(0, 1))
        show = [i for i in range(len(heads)) if i != 1 or task.swept]  # params only if swept
        for i in show:
            table.add_column(heads[i], justify="right" if i > 1 else "left", no_wrap=i > 1,
                             overflow="fold", min_width=10 if i < 2 else len(heads[i]))
        for row in compact(board, task, short=True):
            cells = list(row.values())
            table.add_row(*(cells[i] for i in show))
        console.print(table)
    console.print(f"report written to {result['out_dir']}")


def log_wandb(folders: list[Path], out: Path, lb: pd.DataFrame, pairs: pd.DataFrame,
              plots: list[Path]) -> None:
    """Leaderboard, paired table and plots to one offline-by-default summary run."""
    import wandb

    def table(df: pd.DataFrame) -> Any:
        clean = df.astype(object).where(df.notna(), None)
        return wandb.Table(columns=[str(c) for c in clean.columns], data=clean.values.tolist())

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "lossbench"),
                     mode=os.environ.get("WANDB_MODE", "offline"), group=folders[0].resolve().name,
                     job_type="report", dir=str(out), name=f"report-{folders[0].resolve().name}")
    data = {"leaderboard": table(lb), **({"paired": table(pairs)} if len(pairs) else {})}
    data.update({f"plots/{p.stem}": wandb.Image(str(p)) for p in plots})
    run.log(data)
    run.finish()


def build_report(folders: list[Path], out_dir: Path | None = None,
                 wandb_log: bool = False) -> dict:
    """Read all runs under folders and write the report files; returns tables and paths."""
    import pandas as pd

    folders = [Path(f) for f in folders]
    runs = load_runs(find_results(folders))
    out = Path(out_dir) if out_dir else folders[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        run["_overrides"] = parse_overrides(run.get("overrides"))
    tasks, boards, pairs, plots = [], [], [], {}
    for name in sorted({str(r["task"]) for r in runs}):
        task_runs = [r for r in runs if str(r["task"]) == name]
        task = task_info(name, task_runs)
        frame, bframe = run_frames(task_runs, task)
        board = leaderboard(frame, bframe, task)
        tasks.append(task)
        boards.append(board)
        pairs += paired(frame, board, task)
        plots[name] = plot_task(frame, board, task, out)
    lb = pd.concat(boards, ignore_index=True)
    front = ["task", "loss", *dict.fromkeys(k for t in tasks for k in t.swept), "rank", "n_seeds",
             "n_diverged", "n_failed", "wall_s", "selection", "mode"]
    lb = lb[front + [c for c in lb.columns if c not in front]]
    pair_df = pd.DataFrame(pairs)
    lb.to_csv(out / "leaderboard.csv", index=False)
    pair_df.to_csv(out / "paired.csv", index=False)
    write_markdown(out / "leaderboard.md", folders, len(runs), tasks, lb, pair_df, plots)
    result = {"leaderboard": lb, "paired": pair_df, "out_dir": out,
              "plots": [p for ps in plots.values() for p in ps],
              "tasks": tasks, "n_runs": len(runs)}
    if wandb_log:
        log_wandb(folders, out, lb, pair_df, result["plots"])
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 on success, 2 on a user error (one line on stderr)."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__)
    parser.add_argument("folders", nargs="+", type=Path, help="sweep/run folders to scan")
    parser.add_argument("--out", type=Path, default=None, help="report folder (<first>/report)")
    parser.add_argument("--wandb", action="store_true", help="log tables and plots to wandb")
    args = parser.parse_args(argv)
    try:
        result = build_report(args.folders, args.out, wandb_log=args.wandb)
    except ReportError as exc:
        warn(str(exc))
        return 2
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
