"""The report's figures: per-problem scores with baselines as reference lines, validation curves,
metric against a swept setting, and the critical-difference diagram; one colour per loss."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossbench.report_format import (
    fmt,
    key_words,
    kv_text,
    metric_words,
    mode_words,
    separating_digits,
    short_metric,
    slug,
)

if TYPE_CHECKING:
    import pandas as pd

    from lossbench.report import Task

BASELINE = "baseline:"
BASELINE_COLOUR = "#555555"


def colour_map(entries: list[str]) -> dict[str, str]:
    """One colour per loss for every plot of one report (tab10, then tab20's light shades)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    palette = [to_hex(c) for c in colormaps["tab10"].colors]
    palette += [to_hex(c) for c in colormaps["tab20"].colors[1::2]]
    losses = [e for e in entries if not e.startswith(BASELINE)]
    out = {e: palette[i % len(palette)] for i, e in enumerate(losses)}
    out.update({e: BASELINE_COLOUR for e in entries if e.startswith(BASELINE)})
    return out


def identical_groups(ok: pd.DataFrame, col: str, order: list[str]) -> list[list[str]]:
    """Entries whose per-seed values of col are all equal, grouped, in `order`."""
    groups: dict[tuple, list[str]] = {}
    for entry in order:
        g = ok[ok["entry"] == entry].sort_values("seed")
        key = tuple(zip(g["seed"], g[col].astype(float).round(12), strict=True)) if col in g \
            else (entry,)
        groups.setdefault(key or (entry,), []).append(entry)
    return list(groups.values())


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def problem_title(task: Task, problem: str) -> str:
    return f"{task.name} on {problem}"


def plot_task(frame: pd.DataFrame, lb: pd.DataFrame, task: Task, out: Path,
              colours: dict[str, str]) -> dict[str, list[Path]]:
    """{problem: its plots, "": the task's plots against swept numeric settings}."""
    from lossbench.report import problems

    ok = frame[frame["status"] == "ok"]
    plots: dict[str, list[Path]] = {}
    for problem, board in problems(lb):
        name = slug(task.name, problem)
        sub = ok[ok["problem"] == problem]
        paths = [p for p in (plot_selection(sub, board, task, name, out, colours),
                             plot_curves(sub, board, task, name, out, colours)) if p]
        plots[problem] = paths
    plots[""] = [p for key in task.swept for p in plot_sweeps(lb, task, key, out, colours)]
    return plots


def plot_selection(ok: pd.DataFrame, board: pd.DataFrame, task: Task, name: str, out: Path,
                   colours: dict[str, str]) -> Path | None:
    """Mean and 95% CI per loss; baselines as labelled reference lines, or noted off scale."""
    import numpy as np
    from matplotlib.figure import Figure

    sel = task.sel
    if f"{sel}_mean" not in board:
        return None
    base = board["entry"].str.startswith(BASELINE)
    losses = board[~base & board[f"{sel}_mean"].notna()].sort_values(["rank", "entry"])
    if not len(losses):
        return None
    groups = identical_groups(ok, sel, list(losses["entry"]))
    rows = [losses[losses["entry"] == g[0]].iloc[0] for g in groups]
    mean, lo, hi = (np.array([r[f"{sel}_{s}"] for r in rows], float) for s in ("mean", "lo", "hi"))
    fig = Figure(figsize=(7.5, 1.6 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    for i, group in enumerate(groups):
        ax.errorbar(mean[i], y[i], xerr=[[mean[i] - lo[i]], [hi[i] - mean[i]]], fmt="o",
                    capsize=3, color=colours.get(group[0], "C0"))
    digits = separating_digits(mean)
    labels = [f"{' = '.join(g)}  {fmt(m, digits)}" + (f"  (diverged {int(r['n_diverged'])}x)"
                                                       if r["n_diverged"] else "")
              for g, m, r in zip(groups, mean, rows, strict=True)]
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    span_lo, span_hi = float(np.nanmin(lo)), float(np.nanmax(hi))
    width = span_hi - span_lo or max(abs(span_hi) * 0.02, 1e-3)
    left, right = span_lo - 0.15 * width, span_hi + 0.15 * width
    off = []
    for _, b in board[base & board[f"{sel}_mean"].notna()].iterrows():
        value, label = float(b[f"{sel}_mean"]), b["entry"].removeprefix(BASELINE)
        if span_lo - width / 2 <= value <= span_hi + width / 2:  # near: widen the axis, draw a line
            left, right = min(left, value - 0.05 * width), max(right, value + 0.05 * width)
            ax.axvline(value, color=BASELINE_COLOUR, linestyle="--", linewidth=1)
            ax.annotate(f"{label} {fmt(value, digits)}", (value, 1), xycoords=("data",
                        "axes fraction"), xytext=(2, -2), textcoords="offset points",
                        rotation=90, va="top", ha="left", fontsize=8, color=BASELINE_COLOUR,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8,
                              "pad": 1})
        else:
            off.append(f"{label} {fmt(value, digits)} ({'left' if value < left else 'right'})")
    ax.set_xlim(left, right)
    if off:
        ax.text(0.01, -0.22 - 0.1 / max(len(rows), 1), "baselines off scale: " + "; ".join(off),
                transform=ax.transAxes, fontsize=8, color=BASELINE_COLOUR, va="top")
    ax.set_xlabel(f"{metric_words(sel)} ({mode_words(task.mode)}); mean and 95% CI over seeds")
    ax.set_title(problem_title(task, str(board["problem"].iloc[0])))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out / f"{name}_selection.png")


def plot_curves(ok: pd.DataFrame, board: pd.DataFrame, task: Task, name: str, out: Path,
                colours: dict[str, str]) -> Path | None:
    """Mean validation selection metric per epoch, one line per loss (identical ones merged)."""
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    if not task.val_metric:
        return None
    curves: dict[str, pd.Series] = {}
    order = list(board[~board["entry"].str.startswith(BASELINE)]
                 .sort_values(["rank", "entry"], na_position="last")["entry"])
    for entry in order:
        g = ok[ok["entry"] == entry]
        hist = pd.DataFrame([h for hs in g["history"] for h in hs if isinstance(h, dict)])
        if {"epoch", task.val_metric} <= set(hist.columns):
            curves[entry] = hist.groupby("epoch")[task.val_metric].mean()
    if not curves:
        return None
    merged: list[list[str]] = []
    for entry, curve in curves.items():
        twin = next((m for m in merged if curves[m[0]].index.equals(curve.index)
                     and np.allclose(curves[m[0]].to_numpy(float), curve.to_numpy(float),
                                     rtol=0, atol=1e-12, equal_nan=True)), None)
        if twin is None:
            merged.append([entry])
        else:
            twin.append(entry)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    for group in merged:
        curve = curves[group[0]]
        ax.plot(curve.index, curve.to_numpy(float), label=" = ".join(group),
                color=colours.get(group[0]), marker="o" if len(curve) < 15 else None,
                markersize=3)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric_words(task.val_metric)}, mean over seeds")
    ax.set_title(f"{problem_title(task, str(board['problem'].iloc[0]))}: "
                 f"{metric_words(task.val_metric)} per epoch")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, out / f"{name}_curves.png")


def plot_sweeps(lb: pd.DataFrame, task: Task, key: str, out: Path,
                colours: dict[str, str]) -> list[Path]:
    """The selection metric against a numeric swept setting, one figure per value of the other
    settings; losses on the left, baselines in a panel of their own so they cannot squash the
    losses' range."""
    from matplotlib.figure import Figure

    from lossbench.report import entry_label

    sel = task.sel
    sub = lb[lb[key].notna()] if key in lb else lb[:0]
    if sub[key].dtype.kind not in "iuf" or sub[key].nunique() < 2 or f"{sel}_mean" not in sub:
        return []
    others = [k for k in task.context if k != key and k in sub and sub[k].nunique() > 1]
    paths = []
    # A loss's own hyperparameter joins that loss's entries into one line.
    line_keys = ["loss", *(k for k in task.variant if k != key)] if key in task.variant \
        else ["entry"]
    for values, part in (sub.groupby(others, dropna=False) if others else [((), sub)]):
        values = values if isinstance(values, tuple) else (values,)
        base = part["entry"].str.startswith(BASELINE)
        if base.any():
            fig = Figure(figsize=(10, 4.5))
            ax, bax = fig.subplots(1, 2, sharex=True, gridspec_kw={"width_ratios": [2.2, 1]})
            panels = ((ax, part[~base]), (bax, part[base]))
            bax.set_title("baselines (own scale)", fontsize=10)
        else:
            fig = Figure(figsize=(7.5, 4.5))
            ax = fig.add_subplot()
            panels = ((ax, part),)
        ticks = sorted(part[key].astype(float).unique())
        for panel, rows in panels:
            for i, (line, g) in enumerate(rows.groupby(line_keys, dropna=False)):
                g = g.sort_values(key)
                x = g[key].to_numpy(float)
                entry = g["entry"].iloc[0] if line_keys == ["entry"] else \
                    entry_label(line[0], line_keys[1:], list(line[1:]))
                base = entry.startswith(BASELINE)  # grey, told apart by line and marker
                colour = BASELINE_COLOUR if base else \
                    colours.get(entry, colours.get(g["entry"].iloc[0], "C0"))
                panel.plot(x, g[f"{sel}_mean"].to_numpy(float), color=colour,
                           marker="sD^v"[i % 4] if base else "o",
                           linestyle=("--", ":", "-.")[i % 3] if base else "-",
                           label=entry.removeprefix(BASELINE))
                panel.fill_between(x, g[f"{sel}_lo"].to_numpy(float),
                                   g[f"{sel}_hi"].to_numpy(float), alpha=0.15, color=colour)
            if len(ticks) <= 8:
                panel.set_xticks(ticks, [fmt(t, 3) for t in ticks])
            panel.set_xlabel(key_words(key))
            panel.grid(alpha=0.3)
            if panel.lines:
                panel.legend(fontsize="small")
        ax.set_ylabel(f"{short_metric(sel)} ({mode_words(task.mode)})")
        ax.set_title("losses: mean and 95% CI at the best-validation epoch", fontsize=10)
        where = kv_text([key_words(k) for k in others], list(values))
        fig.suptitle(f"{task.name}{': ' + where if where else ''}: {short_metric(sel)} against "
                     f"{key_words(key)}")
        stem = slug(task.name, kv_text(others, values, "_"), "vs", key)
        paths.append(_save(fig, out / f"{stem}.png"))
    return paths


def plot_cd(kind: str, s: dict[str, Any], out: Path, colours: dict[str, str]) -> Path | None:
    """Critical-difference diagram (scikit-posthocs): mean ranks, Nemenyi crossbars and CD."""
    import pandas as pd
    import scikit_posthocs as sp
    from matplotlib.figure import Figure

    if not s["nemenyi_p"] or len(s["losses"]) < 2:
        return None
    groups: dict[tuple, list[str]] = {}  # losses with the same rank on every problem: one entry
    for loss in s["losses"]:
        key = tuple(s["rank_matrix"][p][loss] for p in s["problems"])
        key += tuple(round(v, 12) for v in (c["mean"] or 0.0 for c in s["cells"]
                                             if c["loss"] == loss and c["problem"] in
                                             s["problems"]))
        groups.setdefault(key, []).append(loss)
    heads = {g[0]: " = ".join(g) for g in groups.values()}
    ranks = pd.Series({heads[h]: s["mean_rank"][h] for h in heads})
    sig = pd.DataFrame(1.0, index=ranks.index, columns=ranks.index)
    for a in heads:
        for b in heads:
            if a != b:
                sig.at[heads[a], heads[b]] = s["nemenyi_p"][a][b]
    fig = Figure(figsize=(8, 1.6 + 0.35 * len(ranks)))
    ax = fig.add_subplot()
    sp.critical_difference_diagram(
        ranks, sig, ax=ax, cd=s["cd"], label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
        color_palette={heads[h]: colours.get(h, "C0") for h in heads})
    ax.set_title(f"{kind}: mean rank over {len(s['problems'])} problems (1 = best); bars join "
                 f"losses Nemenyi does not separate; CD = {s['cd']:.2f}", fontsize=10, pad=28)
    return _save(fig, out / f"{slug(kind)}_critical_difference.png")
