"""Compare lossbench runs from results.json files: per-problem leaderboards with all-pairs
paired tests, cross-problem ranks and Bayesian comparisons per task kind, plots, index.html."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossbench.report_format import (
    fmt,
    join_words,
    kv_text,
    md_table,
    metric_words,
    mode_words,
    p_text,
    separating_digits,
)
from lossbench.stats import ALPHA, MIN_PAIRS, ROPE, holm, paired_difference, ranks, t_interval

if TYPE_CHECKING:
    import pandas as pd

PROG = "lossbench.report"
NOT_SWEPT = {"seed", "seeds", "loss", "task"}
# Overrides whose effect the results file states itself (results["dataset"], ["perturb"]).
PROBLEM_OVERRIDES = ("task.dataset", "perturb")
PERTURB_COUNTS = {"n_train_before", "n_affected", "n_train_after"}
# "No learning" baselines, one per task kind: the zero of the normalised score.
TRIVIAL_BASELINES = ("mean_predictor", "prior", "untrained_network")
BASELINE = "baseline:"
PAIRED_RULE = (
    "All pairs of losses are compared on the seeds where both ran ok: the mean difference "
    "(first minus second; the first is the better ranked) with a seeded percentile bootstrap 95% "
    "CI, and a two-sided Wilcoxon signed-rank test with Holm's correction over the pairs of one "
    f"problem. A pair is *separated* when the Holm-adjusted p < {ALPHA}. With fewer than "
    f"{MIN_PAIRS} shared seeds the Wilcoxon test cannot reach p < {ALPHA}, so such pairs are "
    "never separated; a bootstrap CI that excludes 0 is then noted but is not evidence, since "
    "a 3-seed bootstrap understates its own spread.")


class ReportError(Exception):
    """A user-facing problem reported as one line and exit code 2."""


@dataclass
class Task:
    """What the report needs to know about one task: how to rank and what a problem is."""

    name: str
    kind: str
    selection: str | None  # test metric used for ranking, e.g. "test/mae"
    val_metric: str | None  # the validation metric named by results' selection
    mode: str
    context: list[str] = field(default_factory=list)  # columns that describe a problem
    variant: list[str] = field(default_factory=list)  # swept loss.* keys: variants of one loss
    unfit: list[str] = field(default_factory=list)  # losses skipped as not fitting the task

    @property
    def swept(self) -> list[str]:
        return self.context + self.variant

    @property
    def sel(self) -> str:
        return f"best/{self.selection}"


def warn(message: str) -> None:
    """Warnings go to stderr with the program prefix so they stand out from the table."""
    print(f"{PROG}: {message}", file=sys.stderr)


def find_results(folders: list[Path]) -> list[Path]:
    """Every results.json of the folders, once each, or a ReportError. A sweep folder is read
    from its manifest (its jobs' folders; jobs without results are named in a warning); any
    other folder is searched."""
    from lossbench.results import read_manifest, sweep_results

    found: set[Path] = set()
    for folder in folders:
        if not folder.is_dir():
            raise ReportError(f"no such folder {folder}")
        if read_manifest(folder) is None:
            found.update(p.resolve() for p in folder.rglob("results.json") if p.is_file())
            continue
        runs, missing = sweep_results(folder)
        found.update(p.resolve() for p, _ in runs)
        if missing:
            warn(f"{missing} job(s) of the sweep in {folder} have no results.json "
                 "(still running, interrupted or killed); the report leaves them out")
    paths = sorted(found)
    if not paths:
        raise ReportError(f"no results.json under {', '.join(str(f) for f in folders)}")
    return paths


def load_runs(paths: list[Path]) -> list[dict[str, Any]]:
    """Parse results files; unreadable or malformed ones are skipped with a warning.

    Runs of losses that do not fit their task (status 'skipped') are kept: the cross-problem
    summary lists them as unfit.
    """
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
        data["_path"], data["_mtime"] = str(path), path.stat().st_mtime
        runs.append(data)
    if not any(r["status"] != "skipped" for r in runs):
        raise ReportError(f"no readable results.json of a run among {len(paths)} file(s)")
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


def perturb_params(run: dict[str, Any]) -> dict[str, Any]:
    """The perturbation's name and settings as results.json records them, counts left out."""
    pert = run.get("perturb") if isinstance(run.get("perturb"), dict) else {}
    return {k: v for k, v in pert.items() if k not in PERTURB_COUNTS} or {"name": "none"}


def problem_label(run: dict[str, Any], other: list[str]) -> str:
    """'digits', 'digits, label noise rate=0.2 kind=symmetric', '..., optimizer.lr=0.3'."""
    parts = [str(run.get("dataset") or "unknown data set")]
    pert = perturb_params(run)
    if pert.get("name", "none") != "none":
        params = [f"{k}={fmt(v)}" for k, v in pert.items() if k != "name"]
        parts.append(" ".join([str(pert["name"]).replace("_", " "), *params]))
    parts += [f"{k}={run['_overrides'][k]}" for k in other if run["_overrides"].get(k) is not None]
    return ", ".join(parts)


def task_info(name: str, runs: list[dict[str, Any]]) -> Task:
    """Selection metric/mode (first run that states one), problem columns and variants."""
    sel = next((r["selection"] for r in runs if isinstance(r.get("selection"), dict)), {})
    val = sel.get("metric")
    test = "test/" + val.split("/", 1)[-1] if val else None
    fit = [r for r in runs if r["status"] != "skipped"]
    swept = detect_swept(fit)
    other = [k for k in swept if not k.startswith(("loss.", *PROBLEM_OVERRIDES))]
    perts = [perturb_params(r) for r in fit]
    context = ["dataset"]
    if any(p.get("name", "none") != "none" for p in perts):
        context.append("perturb")
        keys = dict.fromkeys(k for p in perts for k in p if k != "name")
        context += [f"perturb.{k}" for k in keys if len({str(p.get(k)) for p in perts}) > 1]
    unfit = sorted({str(r.get("loss")) for r in runs if r["status"] == "skipped"}
                   - {str(r.get("loss")) for r in fit})
    kind = str(next((r["kind"] for r in runs if r.get("kind")), name))
    return Task(name, kind, test, val, sel.get("mode", "min"), context + other,
                [k for k in swept if k.startswith("loss.")], unfit)


def numeric_or_text(series: pd.Series) -> pd.Series:
    """Override values are strings; make a column numeric when every set value is a number."""
    import pandas as pd

    try:
        return pd.to_numeric(series)
    except (TypeError, ValueError):
        return series.astype(object)


def entry_label(loss: str, variant: list[str], values: list[Any]) -> str:
    """'focal' or 'focal (gamma=2)': one loss with its swept hyperparameters."""
    names = [k.split(".", 1)[-1] for k in variant]
    params = kv_text(names, values)
    return f"{loss} ({params})" if params else loss


def run_frames(runs: list[dict[str, Any]], task: Task) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per run and one row per (run, baseline), test metrics flattened into columns."""
    import pandas as pd

    other = [k for k in task.context if k != "dataset" and not k.startswith("perturb")]
    rows, base = [], []
    for r in runs:
        if r["status"] == "skipped":
            continue
        pert = perturb_params(r)
        desc = {"dataset": str(r.get("dataset") or "unknown data set"),
                "perturb": str(pert.get("name", "none")),
                **{k: pert.get(k.split(".", 1)[1]) for k in task.context
                   if k.startswith("perturb.")},
                **{k: r["_overrides"].get(k) for k in other}}
        desc = {k: v for k, v in desc.items() if k in task.context}
        problem = problem_label(r, other)
        variant = [r["_overrides"].get(k) for k in task.variant]
        loss = str(r.get("loss"))
        row = {"task": task.name, "kind": task.kind, "problem": problem,
               "entry": entry_label(loss, task.variant, variant), "loss": loss, **desc,
               **dict(zip(task.variant, variant, strict=True)), "seed": r.get("seed"),
               "status": r["status"], "wall_s": r.get("wall_s"),
               "history": r.get("history") or [], "_mtime": r["_mtime"]}
        for when, metrics in (r.get("metrics") or {}).items():
            for name, value in (metrics if isinstance(metrics, dict) else {}).items():
                if name.startswith("test/"):
                    row[f"{when}/{name}"] = value
        rows.append(row)
        for bname, metrics in (r.get("baselines") or {}).items():
            b = {"task": task.name, "kind": task.kind, "problem": problem,
                 "entry": f"{BASELINE}{bname}", "loss": f"{BASELINE}{bname}", **desc,
                 "seed": r.get("seed"), "status": "ok", "_mtime": r["_mtime"]}
            for name, value in (metrics or {}).items():
                b[f"best/{name}"] = b[f"last/{name}"] = value
            base.append(b)
    frame, bframe = pd.DataFrame(rows), pd.DataFrame(base)
    for col in task.swept:
        frame[col] = numeric_or_text(frame[col])
        if col in bframe:
            bframe[col] = numeric_or_text(bframe[col])
    keys = ["problem", "entry", "seed"]
    n = len(frame)
    frame = frame.sort_values("_mtime").drop_duplicates(keys, keep="last")
    if len(frame) < n:
        warn(f"{task.name}: {n - len(frame)} duplicate run(s) ignored (kept the newest)")
    if len(bframe):
        bframe = bframe.sort_values("_mtime").drop_duplicates(keys, keep="last")
    return frame.reset_index(drop=True), bframe.reset_index(drop=True)


def metric_columns(frames: list[pd.DataFrame], task: Task) -> list[str]:
    """best/... then last/... test metric columns of runs and baselines, selection first."""
    names = dict.fromkeys(c for f in frames for c in f.columns)
    cols = [c for c in names if c.startswith(("best/test/", "last/test/"))]
    first = {task.sel, f"last/{task.selection}"}
    return sorted(cols, key=lambda c: (not c.startswith("best/"), c not in first, c))


def aggregate(frame: pd.DataFrame, task: Task, metrics: list[str]) -> list[dict[str, Any]]:
    """Mean and t-CI over ok seeds, plus run counts, per (problem, entry)."""
    rows = []
    carry = ["loss", *task.swept]
    for (problem, entry), g in frame.groupby(["problem", "entry"], sort=True):
        ok = g[g["status"] == "ok"]
        row = {"problem": problem, "entry": entry,
               **{k: g[k].iloc[0] for k in carry if k in g}}
        row.update(n_seeds=len(ok), n_diverged=int((g["status"] == "diverged").sum()),
                   n_failed=int((g["status"] == "failed").sum()),
                   wall_s=float(ok["wall_s"].astype(float).mean())
                   if "wall_s" in ok and len(ok) else math.nan)
        for col in metrics:
            stats = t_interval(ok[col].astype(float)) if col in ok else (math.nan,) * 3
            row.update(zip((f"{col}_mean", f"{col}_lo", f"{col}_hi"), stats, strict=True))
        rows.append(row)
    return rows


def trivial_baseline(names: list[str]) -> str | None:
    """The 'no learning' baseline among a problem's baselines, if there is one."""
    return next((f"{BASELINE}{t}" for t in TRIVIAL_BASELINES if f"{BASELINE}{t}" in names), None)


def score_problem(board: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Rank the losses of one problem and give every row its normalised score.

    Rank: by the mean over ok seeds of the selection metric, 1 best, ties share the average
    rank; a loss that diverged on any seed ranks after every loss that did not (several share
    the last ranks); a loss without an ok seed gets no rank. Normalised score: the fraction of
    the gap between the trivial baseline (0) and the best-ranked loss (1) that a row closes;
    undefined when no loss beats the trivial baseline.
    """
    import numpy as np

    board = board.copy()
    col = f"{task.sel}_mean"
    mean = board[col].to_numpy(float) if col in board else np.full(len(board), np.nan)
    base = board["entry"].str.startswith(BASELINE).to_numpy()
    diverged = (board["n_diverged"] > 0).to_numpy() & ~base
    rankable = ~base & (np.isfinite(mean) | diverged)
    worst = -np.inf if task.mode == "max" else np.inf
    score = np.where(diverged, worst, mean)[rankable]
    board["rank"] = np.nan
    if score.size:
        board.loc[rankable, "rank"] = ranks(score[None, :], task.mode)[0]
    board["diverged_cell"] = diverged
    healthy = rankable & ~diverged & np.isfinite(mean)
    trivial = trivial_baseline(list(board.loc[base, "entry"]))
    board["normalised"] = np.nan
    if healthy.any() and trivial:
        best = np.nanmax(mean[healthy]) if task.mode == "max" else np.nanmin(mean[healthy])
        zero = float(board.loc[board["entry"] == trivial, col].iloc[0])
        gap = (best - zero) * (1 if task.mode == "max" else -1)
        if np.isfinite(gap) and gap > 0:
            board["normalised"] = (mean - zero) / (best - zero)
    return board


def leaderboard(frame: pd.DataFrame, bframe: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Per problem: loss rows ranked by the selection metric, then baseline rows."""
    import pandas as pd

    metrics = metric_columns([frame, bframe], task)
    lb = pd.DataFrame(aggregate(frame, task, metrics))
    if len(bframe):
        bl = pd.DataFrame(aggregate(bframe, task, metrics))
        lb = pd.concat([lb, bl.assign(wall_s=math.nan)], ignore_index=True)
    lb = pd.concat([score_problem(g, task) for _, g in lb.groupby("problem", sort=False)],
                   ignore_index=True)
    lb.insert(0, "task", task.name)
    lb.insert(1, "kind", task.kind)
    lb["selection"], lb["mode"] = task.selection, task.mode
    # Problems by data set, clean before perturbed, then by setting; in each, losses by rank
    # (unranked last), then baselines.
    firsts = lb.drop_duplicates("problem").copy()
    if "perturb" in firsts:
        firsts["perturb"] = firsts["perturb"].ne("none")
    firsts = firsts.sort_values([*task.context, "problem"], na_position="first")
    lb["_problem"] = lb["problem"].map({p: i for i, p in enumerate(firsts["problem"])})
    lb["_base"] = lb["entry"].str.startswith(BASELINE)
    lb = lb.sort_values(["_problem", "_base", "rank", "entry"], na_position="last")
    return lb.drop(columns=["_problem", "_base"]).reset_index(drop=True)


def problems(df: pd.DataFrame):
    """(problem label, sub-frame) in the leaderboard's order."""
    for name in dict.fromkeys(df["problem"]):
        yield name, df[df["problem"] == name]


def problem_pairs(frame: pd.DataFrame, lb: pd.DataFrame, task: Task) -> list[dict[str, Any]]:
    """Every pair of ranked losses of each problem on their shared ok seeds, Holm per problem."""
    col = task.sel
    if col not in frame:
        return []
    ok = frame[frame["status"] == "ok"]
    out = []
    for problem, board in problems(lb[lb["rank"].notna()]):
        sub = ok[ok["problem"] == problem]
        scores = {e: g.set_index("seed")[col].astype(float) for e, g in sub.groupby("entry")}
        order = [e for e in board.sort_values(["rank", "entry"])["entry"] if e in scores]
        rows = []
        for a, b in combinations(order, 2):
            rows.append({"task": task.name, "kind": task.kind, "problem": problem, "a": a,
                         "b": b, "metric": col, "mode": task.mode,
                         **paired_difference(scores[a], scores[b])})
        for row, p in zip(rows, holm([r["p_wilcoxon"] for r in rows]), strict=True):
            row["p_holm"] = p
            row["separated"] = bool(p < ALPHA)
            row["note"] = pair_note(row, task.mode, len(rows))
        out += rows
    return out


def pair_note(row: dict[str, Any], mode: str, n_tests: int) -> str:
    """Why a pair is or is not separated, in words."""
    n, lo, hi = row["n_pairs"], row["diff_lo"], row["diff_hi"]
    if n == 0:
        return "no seed where both ran ok"
    if row["identical"]:
        return "identical on every shared seed"
    a_better = (row["mean_diff"] > 0) == (mode == "max")
    if row["separated"]:
        return f"{row['a'] if a_better else row['b']} better (Holm p = {p_text(row['p_holm'])})"
    excludes = bool(lo > 0 or hi < 0)
    if n < MIN_PAIRS:
        text = f"not separated: {n} shared seed(s), the Wilcoxon test needs {MIN_PAIRS}"
        return text + ("; the bootstrap CI excludes 0 but is not evidence with so few seeds"
                       if excludes else "")
    if excludes:
        return (f"not separated after Holm over {n_tests} pair(s) (p = "
                f"{p_text(row['p_holm'])}), although the bootstrap CI excludes 0")
    return f"not separated (Holm p = {p_text(row['p_holm'])})"


def not_separated_text(pairs: list[dict[str, Any]]) -> list[str]:
    """One line per loss of a problem: which losses it is not separated from, and why."""
    by_entry: dict[str, list[str]] = {}
    reasons = set()
    for p in pairs:
        if not p["separated"]:
            by_entry.setdefault(p["a"], []).append(p["b"])
            by_entry.setdefault(p["b"], []).append(p["a"])
            if p["identical"]:
                reasons.add("identical")
            elif p["n_pairs"] < MIN_PAIRS:
                reasons.add("few")
            elif p["diff_lo"] > 0 or p["diff_hi"] < 0:
                reasons.add("holm")
    twins: list[set[str]] = []
    for p in pairs:
        if p["identical"]:
            group = next((g for g in twins if p["a"] in g or p["b"] in g), None)
            if group is None:
                twins.append({p["a"], p["b"]})
            else:
                group |= {p["a"], p["b"]}
    lines = [f"Identical on every shared seed: {' = '.join(sorted(g))}." for g in twins]
    everyone = {p["a"] for p in pairs} | {p["b"] for p in pairs}
    if len(everyone) > 2 and len(by_entry) == len(everyone) \
            and all(len(others) == len(everyone) - 1 for others in by_entry.values()):
        lines.append(f"No pair is separated: {join_words(sorted(everyone))} are all "
                     "indistinguishable by this test.")
    else:
        lines += [f"{e} is not separated from {join_words(sorted(others))}."
                  for e, others in by_entry.items()]
    if "few" in reasons:
        lines.append(f"With fewer than {MIN_PAIRS} shared seeds no pair can be separated, "
                     "whatever its bootstrap CI; run more seeds for a test.")
    if "holm" in reasons:
        lines.append("Some of these pairs have a bootstrap CI that excludes 0 but do not pass "
                     "the Wilcoxon test after Holm's correction (see the notes).")
    return lines


def compact(board: pd.DataFrame, task: Task, short: bool = False) -> list[dict[str, str]]:
    """Columns a reader scans first, with enough digits that distinct means print distinctly."""
    sel = task.sel
    head = f"{metric_words(sel)} (95% CI)"
    rows = []
    for _, r in board.iterrows():
        digits = rank_digits(board[board["problem"] == r["problem"]], sel, 3 if short else 4)
        cell = {"loss": r["entry"]}
        if short:
            cell["problem"] = r["problem"]
        cell[head] = ci_cell(r, sel, digits)
        cell.update({"normalised score": fmt(r["normalised"], 3), "rank": fmt(r["rank"], 3),
                     "seeds ok": fmt(r["n_seeds"]), "diverged": fmt(r["n_diverged"]),
                     "failed": fmt(r["n_failed"]), "seconds": fmt(r["wall_s"], 3)})
        rows.append(cell)
    return rows


def rank_digits(board: pd.DataFrame, sel: str, least: int) -> int:
    """Digits that print the means of one problem's losses and baselines distinctly."""
    col = f"{sel}_mean"
    if col not in board:
        return least
    return separating_digits(list(board[col].astype(float)), least=least)


def ci_cell(row: pd.Series, col: str, digits: int) -> str:
    from lossbench.report_format import ci_text

    return ci_text(row.get(f"{col}_mean"), row.get(f"{col}_lo"), row.get(f"{col}_hi"), digits)


def pair_rows(pairs: list[dict[str, Any]], digits: int) -> list[dict[str, str]]:
    return [{"first": p["a"], "second": p["b"], "shared seeds": fmt(p["n_pairs"]),
             "mean difference (95% CI)": f"{fmt(p['mean_diff'], digits)} "
             f"[{fmt(p['diff_lo'], digits)}, {fmt(p['diff_hi'], digits)}]",
             "Wilcoxon p": p_text(p["p_wilcoxon"]), "Holm p": p_text(p["p_holm"]),
             "note": p["note"]} for p in pairs]


def write_markdown(path: Path, folders: list[Path], n_runs: int, tasks: list[Task],
                   lb: pd.DataFrame, pairs: list[dict[str, Any]],
                   plots: dict[str, dict[str, list[Path]]]) -> None:
    """leaderboard.md: per task and problem, the leaderboard, all-pairs tests and plots."""
    text = [f"# lossbench leaderboards\n\n{n_runs} runs from "
            f"{', '.join(str(f) for f in folders)}. Means and 95% t-intervals over the seeds of "
            "ok runs; the normalised score is the fraction of the gap between the trivial "
            "baseline (0) and the best loss (1) closed; full columns in leaderboard.csv. "
            "The verdicts and cross-problem statistics are in across.md.\n"]
    for task in tasks:
        text.append(f"\n## {task.name}\n\nRanked by {metric_words(task.sel)} "
                    f"({mode_words(task.mode)}).\n")
        if task.unfit:
            text.append(f"\nNot fit for this task (skipped): {', '.join(task.unfit)}.\n")
        board = lb[lb["task"] == task.name]
        for problem, sub in problems(board):
            text.append(f"\n### {problem}\n\n")
            text.append(md_table(compact(sub, task)))
            mine = [p for p in pairs if p["task"] == task.name and p["problem"] == problem]
            if mine:
                digits = separating_digits([abs(p["mean_diff"]) for p in mine], least=3)
                text.append(f"\n**All pairs.** {PAIRED_RULE}\n\n")
                text.append(md_table(pair_rows(mine, digits)))
                text.append("\n" + "\n".join(f"- {line}" for line in not_separated_text(mine))
                            + "\n")
            text += [f"\n![{p.stem}]({p.name})\n" for p in plots[task.name].get(problem, [])]
        text += [f"\n![{p.stem}]({p.name})\n" for p in plots[task.name].get("", [])]
    path.write_text("".join(text))


def print_table(result: dict[str, Any]) -> None:
    """Rich table per task on the terminal, then the verdict of each task kind."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Logs and pipes get a wide table rather than rich's 80 columns of wrapped names.
    console = Console(width=None if sys.stdout.isatty() else 160)
    for task in result["tasks"]:
        board = result["leaderboard"][result["leaderboard"]["task"] == task.name]
        table = Table(title=f"{task.name}: {metric_words(task.sel)} ({mode_words(task.mode)})",
                      box=box.SIMPLE, padding=(0, 1))
        rows = compact(board, task, short=True)
        keep = list(rows[0]) if rows else []
        for i, head in enumerate(keep):
            table.add_column(escape(head), justify="right" if i > 2 else "left",
                             no_wrap=i > 2, overflow="fold")
        for row in rows:
            table.add_row(*(escape(row[h]) for h in keep))
        console.print(table)
    for kind, verdict in result["verdicts"].items():
        console.print(f"[bold]Verdict, {escape(kind)}:[/bold] {escape(verdict)}")
    console.print(f"report written to {escape(str(result['out_dir']))} "
                  "(index.html, across.md, leaderboard.md)")


def build_report(folders: list[Path], out_dir: Path | None = None,
                 wandb_log: bool = False, rope: float = ROPE) -> dict:
    """Read all runs under folders and write the report files; returns tables and paths."""
    import pandas as pd

    from lossbench.report_across import across_summary, write_across
    from lossbench.report_html import write_index
    from lossbench.report_plots import colour_map, plot_task

    folders = [Path(f) for f in folders]
    runs = load_runs(find_results(folders))
    out = Path(out_dir) if out_dir else folders[0] / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot write the report to {out}: {exc.strerror}") from exc
    for run in runs:
        run["_overrides"] = parse_overrides(run.get("overrides"))
    tasks, frames, boards, pairs = [], {}, [], []
    for name in sorted({str(r["task"]) for r in runs}):
        task_runs = [r for r in runs if str(r["task"]) == name]
        task = task_info(name, task_runs)
        tasks.append(task)
        if not any(r["status"] != "skipped" for r in task_runs):
            continue
        frame, bframe = run_frames(task_runs, task)
        board = leaderboard(frame, bframe, task)
        frames[name] = frame
        boards.append(board)
        pairs += problem_pairs(frame, board, task)
    tasks = [t for t in tasks if t.name in frames]
    lb = pd.concat(boards, ignore_index=True)
    colours = colour_map(sorted(set(lb["entry"])))
    plots = {t.name: plot_task(frames[t.name], lb[lb["task"] == t.name], t, out, colours)
             for t in tasks}
    across = across_summary(tasks, lb, pairs, rope)
    across_plots = write_across(out, across, colours)
    front = ["task", "kind", "problem", "entry", "loss",
             *dict.fromkeys(k for t in tasks for k in t.swept), "rank", "normalised", "n_seeds",
             "n_diverged", "n_failed", "wall_s", "selection", "mode"]
    lb = lb[front + [c for c in lb.columns if c not in front]]
    pair_df = pd.DataFrame(pairs)
    lb.to_csv(out / "leaderboard.csv", index=False)
    pair_df.to_csv(out / "paired.csv", index=False)
    write_markdown(out / "leaderboard.md", folders, len(runs), tasks, lb, pairs, plots)
    all_plots = [p for by_problem in plots.values() for ps in by_problem.values() for p in ps]
    write_index(out / "index.html", folders, tasks, lb, pairs, across, plots, across_plots)
    result = {"leaderboard": lb, "paired": pair_df, "across": across, "out_dir": out,
              "plots": all_plots + [p for ps in across_plots.values() for p in ps],
              "tasks": tasks, "n_runs": len(runs),
              "verdicts": {k: v["verdict"] for k, v in across["kinds"].items()}}
    if wandb_log:
        from lossbench.report_wandb import log_wandb

        result["dashboard"] = log_wandb(folders, out, lb, pair_df, across, result["plots"],
                                        tasks)
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 on success, 2 on a user error (one line on stderr)."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__)
    parser.add_argument("folders", nargs="+", type=Path, help="sweep/run folders to scan")
    parser.add_argument("--out", type=Path, default=None, help="report folder (<first>/report)")
    parser.add_argument("--wandb", action="store_true", help="log tables and plots to wandb")
    parser.add_argument("--rope", type=float, default=ROPE, metavar="WIDTH",
                        help="region of practical equivalence of the Bayesian test, as a "
                        f"fraction of the trivial-baseline-to-best-loss gap (default {ROPE})")
    args = parser.parse_args(argv)
    if not 0 <= args.rope < 1:
        warn(f"--rope must be in [0, 1), got {args.rope}")
        return 2
    try:
        result = build_report(args.folders, args.out, wandb_log=args.wandb, rope=args.rope)
    except ReportError as exc:
        warn(str(exc))
        return 2
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
