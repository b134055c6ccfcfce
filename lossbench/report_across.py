"""Across problems, per task kind: mean ranks, Friedman and Nemenyi, win/tie/loss counts,
Bayesian signed-rank tests, and the verdict; written to across.json and across.md."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossbench.report_format import (
    fmt,
    join_words,
    key_words,
    md_table,
    metric_words,
    mode_words,
    p_text,
    separating_digits,
)
from lossbench.stats import (
    ALPHA,
    BAYES_SAMPLES,
    MIN_PAIRS,
    ROPE,
    bayes_signed_rank,
    bootstrap_ci,
    friedman,
    nemenyi_cd,
    nemenyi_p,
    ranks,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from lossbench.report import Task

SCHEMA = 1
POLICY = {
    "score": "A loss's score on a problem is the mean over its ok seeds of the test selection "
             "metric at the best-validation epoch. A problem is one data set under one "
             "perturbation setting (and one value of any other swept setting that is not a "
             "hyperparameter of the loss); a loss's swept hyperparameters make separate entries.",
    "ranks": "Ranks are per problem, 1 = best; ties share the average rank.",
    "diverged": "A loss that diverged on any seed of a problem ranks after every loss that did "
                "not (several such share the last ranks), counts as a loss against each of them, "
                "and in the Bayesian test scores the lower of 0 (the trivial baseline) and the "
                "worst other loss on that problem.",
    "missing": "Failed runs are left out; a loss with no ok or diverged seed on a problem (all "
               "failed, not run) is a hole. Losses that do not fit the task kind are listed as "
               "unfit. Holes are removed by dropping, one at a time, the problem or loss with "
               "the largest share of holes (the problem on a tie, so that every loss stays "
               "ranked); what was dropped is listed.",
    "bayesian": "Bayesian signed-rank test (Benavoli et al. 2017, baycomp) on the normalised "
                "score, the fraction of the gap between the trivial baseline (0) and the best "
                "loss (1) of each problem; problems where no loss beats the trivial baseline "
                "are left out of it. It is run on every pair of losses, so no pair was chosen "
                "by its own outcome; the verdict quotes the pair of the two best mean ranks "
                "(chosen by mean rank, a different statistic).",
    "cd": "Friedman test (scipy, tie-corrected) over problems; critical difference and "
          "crossbars from the Nemenyi test (scikit-posthocs) at alpha 0.05. The verdict calls "
          "a rank difference significant only when Friedman rejects.",
}


def rope_words(rope: float) -> str:
    return f"ROPE {rope:.0%} of the baseline-to-best gap" if rope * 100 == round(rope * 100) \
        else f"ROPE {rope:g} of the baseline-to-best gap"


def problem_ids(tasks: list[Task], lb: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(task, problem) -> the problem's name within its kind; task-prefixed only on clashes."""
    pairs = list(dict.fromkeys(zip(lb["task"], lb["problem"], strict=True)))
    clash = {p for _, p in pairs if sum(q == p for _, q in pairs) > 1}
    return {(t, p): f"{t}: {p}" if p in clash else p for t, p in pairs}


def drop_holes(usable: pd.DataFrame) -> tuple[list[str], list[str], list[dict[str, str]]]:
    """Greedily drop the problem (row) or loss (column) with the largest share of holes."""
    rows, cols, dropped = list(usable.index), list(usable.columns), []
    while rows and cols:
        sub = usable.loc[rows, cols]
        if sub.to_numpy().all():
            break
        row_share = 1 - sub.mean(axis=1)
        col_share = 1 - sub.mean(axis=0)
        if col_share.max() > row_share.max():  # on a tie keep the losses, drop the problem
            name = col_share.idxmax()
            holes = [r for r in rows if not sub.at[r, name]]
            dropped.append({"loss": name, "reason": f"no usable result on {len(holes)} of "
                            f"{len(rows)} problems ({', '.join(holes[:3])}"
                            f"{', ...' if len(holes) > 3 else ''})"})
            cols.remove(name)
        else:
            name = row_share.idxmax()
            holes = [c for c in cols if not sub.at[name, c]]
            dropped.append({"problem": name, "reason": "no usable result for "
                            f"{join_words(holes[:4])}{' and more' if len(holes) > 4 else ''}"})
            rows.remove(name)
    return rows, cols, dropped


def cell_status(row: pd.Series, sel: str) -> str:
    """'diverged' (on any seed), 'ok' (a score from ok seeds) or 'failed' (no score: a hole)."""
    if row["n_diverged"] > 0:
        return "diverged"
    if row["n_seeds"] > 0 and math.isfinite(float(row.get(sel, math.nan))):
        return "ok"
    return "failed"


def kind_summary(kind: str, tasks: list[Task], lb: pd.DataFrame, ids: dict,
                 pairs: list[dict[str, Any]], rope: float = ROPE) -> dict[str, Any]:
    """The cross-problem statistics of one task kind (see POLICY)."""
    import numpy as np
    import pandas as pd

    task = tasks[0]
    sel = f"{task.sel}_mean"
    base = lb["entry"].str.startswith("baseline:")
    losses = lb[~base].copy()
    losses["pid"] = [ids[(t, p)] for t, p in zip(losses["task"], losses["problem"], strict=True)]
    losses["status"] = losses.apply(cell_status, axis=1, sel=sel)
    order = list(dict.fromkeys(losses["pid"]))
    entries = sorted(set(losses["entry"]))
    cells = losses.set_index(["pid", "entry"])
    usable = pd.DataFrame(False, index=order, columns=entries)
    for (pid, entry), row in cells.iterrows():
        usable.at[pid, entry] = row["status"] != "failed"
    unfit = sorted({u for t in tasks for u in t.unfit} - set(entries))
    rows, cols, dropped = drop_holes(usable)
    summary: dict[str, Any] = {
        "tasks": [t.name for t in tasks], "metric": task.sel, "metric_words":
        metric_words(task.sel), "mode": task.mode, "problems": rows,
        "excluded_problems": [d for d in dropped if "problem" in d],
        "losses": [], "excluded_losses": [d for d in dropped if "loss" in d]
        + [{"loss": u, "reason": "does not fit this task kind (skipped)"} for u in unfit],
        "cells": [{"problem": pid, "loss": entry, "status": row["status"],
                   "n_ok": int(row["n_seeds"]), "n_diverged": int(row["n_diverged"]),
                   "n_failed": int(row["n_failed"]), "mean": _num(row.get(sel)),
                   "normalised": _num(row["normalised"])}
                  for (pid, entry), row in cells.iterrows()],
        "seeds": sorted({int(n) for n in cells["n_seeds"] + cells["n_diverged"]
                         + cells["n_failed"]}),
        "mean_rank": {}, "mean_rank_ci": {}, "rank_matrix": {}, "friedman_p": None,
        "friedman_statistic": None, "friedman_note": None, "cd": None, "cd_method": "nemenyi",
        "nemenyi_p": {}, "pairwise": [], "bayesian": [], "bayesian_problems": [],
        "bayesian_excluded_problems": [], "rope": rope, "bayes_samples": BAYES_SAMPLES,
        "normalised_mean": {}, "datasets": [], "setting_keys": [], "settings": {},
        "holes_dropped": len(dropped), "leading_pair_per_problem": {},
    }
    summary["baseline_beats_all"] = baseline_beats_all(lb, ids, task)
    used = losses[losses["pid"].isin(rows)]
    summary["datasets"] = list(dict.fromkeys(used["dataset"]))
    keys = dict.fromkeys(k for t in tasks for k in t.context if k != "dataset" and k in used)
    summary["setting_keys"] = [k for k in keys if used[k].astype(str).nunique() > 1]
    summary["settings"] = {}  # data set -> the settings (what varies) of its problems
    for _, row in used.drop_duplicates("pid").iterrows():
        parts = [f"{key_words(k)} {fmt(row[k])}" for k in summary["setting_keys"]
                 if k != "perturb" and fmt(row[k])]
        summary["settings"].setdefault(row["dataset"], []).append(", ".join(parts) or "clean")
    if not rows or not cols:
        summary["verdict"] = verdict(kind, summary)
        return summary
    mean = np.array([[cells.at[(p, e), sel] for e in cols] for p in rows], dtype=float)
    diverged = np.array([[cells.at[(p, e), "status"] == "diverged" for e in cols] for p in rows])
    worst = -np.inf if task.mode == "max" else np.inf
    rank_matrix = ranks(np.where(diverged, worst, mean), task.mode)
    mean_rank = rank_matrix.mean(axis=0)
    by_rank = np.argsort(mean_rank, kind="stable")  # best first; equal ranks by name
    cols = [cols[j] for j in by_rank]
    rank_matrix, diverged, mean_rank = rank_matrix[:, by_rank], diverged[:, by_rank], \
        mean_rank[by_rank]
    n, k = rank_matrix.shape
    summary["losses"] = cols
    summary["mean_rank"] = {e: float(r) for e, r in zip(cols, mean_rank, strict=True)}
    summary["mean_rank_ci"] = {e: list(bootstrap_ci(rank_matrix[:, j])) for j, e in
                               enumerate(cols)}
    summary["rank_matrix"] = {p: dict(zip(cols, map(float, rank_matrix[i]), strict=True))
                              for i, p in enumerate(rows)}
    fr = friedman(rank_matrix)
    if fr:
        summary["friedman_statistic"], summary["friedman_p"] = fr
    else:
        summary["friedman_note"] = ("needs 3 or more losses" if k < 3 else
                                    "needs 2 or more problems" if n < 2 else
                                    "every problem is a full tie")
    if k >= 2:
        summary["cd"] = nemenyi_cd(k, n)
    if k >= 2 and n >= 2:
        pv = nemenyi_p(rank_matrix, cols)
        summary["nemenyi_p"] = {a: {b: float(pv.at[a, b]) for b in cols if b != a} for a in cols}
    for i, j in combinations(range(k), 2):
        a, b = rank_matrix[:, i], rank_matrix[:, j]
        summary["pairwise"].append({"a": cols[i], "b": cols[j], "wins": int((a < b).sum()),
                                    "ties": int((a == b).sum()), "losses": int((a > b).sum())})
    norm = np.array([[cells.at[(p, e), "normalised"] for e in cols] for p in rows], dtype=float)
    summary["normalised_mean"] = {e: _num(np.nanmean(norm[:, j])) if np.isfinite(norm[:, j]).any()
                                  else None for j, e in enumerate(cols)}
    bayes_scores(summary, norm, diverged, rows, cols, rope)
    if k >= 2:
        summary["leading_pair_per_problem"] = leading_pair_per_problem(pairs, rows, cols[:2])
    summary["verdict"] = verdict(kind, summary)
    return summary


def bayes_scores(summary: dict[str, Any], norm: np.ndarray, diverged: np.ndarray,
                 rows: list[str], cols: list[str], rope: float) -> None:
    """Bayesian signed-rank test on the normalised scores of every pair of losses."""
    import numpy as np

    defined = np.isfinite(np.where(diverged, 0.0, norm)).all(axis=1)
    summary["bayesian_excluded_problems"] = [
        {"problem": p, "reason": "no loss beats the trivial baseline, or there is none"}
        for p, ok in zip(rows, defined, strict=True) if not ok]
    kept = norm[defined]
    div = diverged[defined]
    if not len(kept):
        return
    healthy = np.where(div, np.nan, kept)
    floor = np.minimum(0.0, np.nanmin(np.where(np.isfinite(healthy), healthy, np.inf), axis=1))
    scores = np.where(div, floor[:, None], kept)
    summary["bayesian_problems"] = [p for p, ok in zip(rows, defined, strict=True) if ok]
    summary["bayesian_scores"] = {p: dict(zip(cols, map(float, s), strict=True))
                                  for p, s in zip(summary["bayesian_problems"], scores,
                                                  strict=True)}
    if len(scores) < 2:
        return
    for i, j in combinations(range(len(cols)), 2):
        pa, peq, pb = bayes_signed_rank(scores[:, i], scores[:, j], rope=rope)
        summary["bayesian"].append({"a": cols[i], "b": cols[j], "p_a_better": pa,
                                    "p_equal": peq, "p_b_better": pb,
                                    "n_problems": int(len(scores)),
                                    "leading": i == 0})


def leading_pair_per_problem(pairs: list[dict[str, Any]], problems: list[str],
                             two: list[str]) -> dict[str, list[str]]:
    """Where the per-problem paired test of the two best-ranked losses says more than 'equal':
    problems where it separates them, and where only the bootstrap CI excludes 0."""
    out: dict[str, list[str]] = {"separated": [], "ci_excludes_zero": []}
    for p in pairs:
        if {p["a"], p["b"]} != set(two) or p["problem"] not in problems:
            continue
        if p["separated"]:
            out["separated"].append(p["problem"])
        elif p["diff_lo"] > 0 or p["diff_hi"] < 0:
            out["ci_excludes_zero"].append(p["problem"])
            out.setdefault("shared_seeds", []).append(p["n_pairs"])
    return out


def baseline_beats_all(lb: pd.DataFrame, ids: dict, task: Task) -> list[dict[str, Any]]:
    """Problems where some baseline's mean beats the best loss's (any problem of the kind)."""
    import numpy as np

    sel = f"{task.sel}_mean"
    out: list[dict[str, Any]] = []
    if sel not in lb:
        return out
    for (t, problem), board in lb.groupby(["task", "problem"], sort=False):
        base = board["entry"].str.startswith("baseline:")
        healthy = board[~base & (board["n_diverged"] == 0) & board[sel].notna()]
        bases = board[base & board[sel].notna()]
        if not len(healthy) or not len(bases):
            continue
        pick = np.argmax if task.mode == "max" else np.argmin
        best = healthy.iloc[int(pick(healthy[sel].to_numpy(float)))]
        top = bases.iloc[int(pick(bases[sel].to_numpy(float)))]
        beats = top[sel] > best[sel] if task.mode == "max" else top[sel] < best[sel]
        if beats:
            out.append({"problem": ids[(t, problem)],
                        "baseline": top["entry"].removeprefix("baseline:"),
                        "baseline_mean": float(top[sel]), "best_loss": best["entry"],
                        "best_mean": float(best[sel])})
    return out


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def bayes_pair(summary: dict[str, Any], a: str, b: str) -> tuple[float, float, float] | None:
    """P(a better), P(equal), P(b better) from the summary, in either stored order."""
    for row in summary["bayesian"]:
        if (row["a"], row["b"]) == (a, b):
            return row["p_a_better"], row["p_equal"], row["p_b_better"]
        if (row["a"], row["b"]) == (b, a):
            return row["p_b_better"], row["p_equal"], row["p_a_better"]
    return None


def verdict(kind: str, s: dict[str, Any]) -> str:
    """Two or three sentences from the numbers: leader, its nearest rival, baselines."""
    n, losses = len(s["problems"]), s["losses"]
    sentences = []
    if not n or not losses:
        sentences.append(f"No {kind} problem has a result for every loss, so there is no "
                         "cross-problem ranking (see across.md for the holes).")
    else:
        sentences.append(leader_sentence(kind, s))
        if len(losses) > 1:
            sentences.append(rival_sentence(s))
    sentences += baseline_sentences(s)
    left = s["holes_dropped"]
    if left:
        sentences.append(f"{left} problem(s) or loss(es) with missing results are left out "
                         "(listed in across.md).")
    return " ".join(sentences)


def leader_sentence(kind: str, s: dict[str, Any]) -> str:
    n, losses, mr = len(s["problems"]), s["losses"], s["mean_rank"]
    names = []
    for dataset in s["datasets"]:  # 'digits (clean; label noise rate 0.4)' where settings vary
        settings = s["settings"].get(dataset, [])
        keys = [key_words(k) for k in s["setting_keys"] if k != "perturb"]
        names.append(dataset if len(settings) < 2 else
                     f"{dataset} ({'; '.join(settings)})" if len(settings) <= 3 else
                     f"{dataset} under {len(settings)} settings of {join_words(keys)}")
    listed = join_words(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    seeds = s["seeds"]
    seed_text = (f"{seeds[0]} seed{'s' if seeds[0] != 1 else ''} each" if len(seeds) == 1
                 else f"{seeds[0]}-{seeds[-1]} seeds each")
    best = losses[0]
    lo, hi = s["mean_rank_ci"][best]
    shared = [e for e in losses[1:] if mr[e] == mr[best]]
    who = (f"{join_words([best, *shared])} share the best mean rank" if shared
           else f"{best} has the best mean rank")
    return (f"Across {n} {kind} problem{'s' if n != 1 else ''} ({listed}; {seed_text}) {who}, "
            f"{mr[best]:.2f} [{lo:.2f}, {hi:.2f}] among {len(losses)} losses.")


def rival_sentence(s: dict[str, Any]) -> str:
    losses, mr = s["losses"], s["mean_rank"]
    best, second = losses[0], losses[1]
    rope = rope_words(s["rope"])
    probs = bayes_pair(s, best, second)
    if probs is None:
        text = (f"{best} and {second} are not compared by the Bayesian test "
                f"({len(s['bayesian_problems'])} problem(s) with a normalised score; it needs 2)")
    else:
        pb, peq, ps = probs
        if peq >= max(pb, ps) and peq >= 0.5:
            text = f"{best} and {second} are practically equivalent (P = {peq:.2f}, {rope})"
        elif pb >= 0.5:
            text = f"{best} is practically better than {second} (P = {pb:.2f}, {rope})"
        elif ps >= 0.5:
            text = (f"{second} is practically better than {best} (P = {ps:.2f}, {rope}) "
                    "although it ranks lower on average")
        else:
            text = (f"the Bayesian test does not decide between {best} and {second}: "
                    f"P({best} better) = {pb:.2f}, P(equivalent) = {peq:.2f}, "
                    f"P({second} better) = {ps:.2f} ({rope})")
    per = s.get("leading_pair_per_problem") or {}
    if probs is not None and (peq >= 0.5 or max(pb, ps) < 0.5):  # equal or undecided: say
        if per.get("separated"):                                 # where the seeds disagree
            text += (f", though the per-problem paired test separates them on "
                     f"{join_words(per['separated'][:3])}")
        if per.get("ci_excludes_zero"):
            few = min(per["shared_seeds"])
            why = (f"{few} seeds, too few for the Wilcoxon test" if few < MIN_PAIRS
                   else "not significant after Holm's correction")
            text += (f", though on {join_words(per['ci_excludes_zero'][:3])} their paired "
                     f"bootstrap CI excludes 0 ({why})")
    if s["friedman_p"] is None:
        text += f"; the Friedman test does not apply ({s['friedman_note']})"
    elif s["friedman_p"] >= ALPHA:
        text += (f"; the Friedman test finds no significant difference between the ranks "
                 f"(p = {p_text(s['friedman_p'])})")
    else:
        below = [e for e in losses[1:] if mr[e] - mr[best] > s["cd"]]
        if below:
            text += (f"; {join_words(below)} rank{'s' if len(below) == 1 else ''} significantly "
                     f"below {best} (Friedman p = {p_text(s['friedman_p'])}, "
                     f"Nemenyi CD {s['cd']:.2f})")
        else:
            text += (f"; Friedman p = {p_text(s['friedman_p'])}, but no loss ranks more than the "
                     f"Nemenyi CD ({s['cd']:.2f}) below {best}")
    return (text[0].upper() + text[1:] if text.startswith("the ") else text) + "."


def baseline_sentences(s: dict[str, Any]) -> list[str]:
    """Problems where a baseline beats every trained loss, grouped by baseline."""
    beats = s["baseline_beats_all"]
    if not beats:
        return []
    total = len({c["problem"] for c in s["cells"]})
    metric = metric_words(s["metric"]).split(" at ")[0]
    by_base: dict[str, list[str]] = {}
    for b in beats:
        d = separating_digits([b["baseline_mean"], b["best_mean"]])
        by_base.setdefault(b["baseline"], []).append(
            f"{b['problem']} ({fmt(b['baseline_mean'], d)} vs {b['best_loss']} "
            f"{fmt(b['best_mean'], d)})")
    join = "; ".join if any("," in b["problem"] for b in beats) else join_words
    parts = [f"{name} on {join(where[:3])}"
             + (f" and {len(where) - 3} more" if len(where) > 3 else "")
             for name, where in by_base.items()]
    where = (f"every problem ({total})" if len(beats) == total
             else f"{len(beats)} of {total} problems")
    return [f"A baseline beats every trained loss on {where}, in {metric}: "
            f"{'; '.join(parts)}."]


def across_summary(tasks: list[Task], lb: pd.DataFrame, pairs: list[dict[str, Any]],
                   rope: float = ROPE) -> dict[str, Any]:
    """Every task kind's cross-problem summary, as across.json holds it."""
    ids = problem_ids(tasks, lb)
    kinds = {}
    for kind in sorted({t.kind for t in tasks}):
        ktasks = [t for t in tasks if t.kind == kind]
        mine = [{**p, "problem": ids[(p["task"], p["problem"])]} for p in pairs
                if p["kind"] == kind]
        kinds[kind] = kind_summary(kind, ktasks, lb[lb["kind"] == kind], ids, mine, rope)
    return {"schema": SCHEMA, "alpha": ALPHA, "rope": rope, "policy": POLICY, "kinds": kinds}


def write_across(out: Path, across: dict[str, Any], colours: dict[str, str]) -> dict[str, list]:
    """across.json, across.md and the CD diagrams; returns {kind: [plot paths]}."""
    from lossbench.report_plots import plot_cd

    plots = {kind: [p] for kind, s in across["kinds"].items()
             if (p := plot_cd(kind, s, out, colours)) is not None}
    (out / "across.json").write_text(json.dumps(across, indent=2, allow_nan=False) + "\n")
    (out / "across.md").write_text(across_markdown(across, plots))
    return plots


def rank_rows(s: dict[str, Any]) -> list[dict[str, str]]:
    counts = {e: [0, 0, 0] for e in s["losses"]}
    for p in s["pairwise"]:
        for who, (w, t, lo) in ((p["a"], (p["wins"], p["ties"], p["losses"])),
                                (p["b"], (p["losses"], p["ties"], p["wins"]))):
            counts[who] = [counts[who][0] + w, counts[who][1] + t, counts[who][2] + lo]
    return [{"loss": e, "mean rank (95% bootstrap CI over problems)":
             f"{s['mean_rank'][e]:.2f} [{s['mean_rank_ci'][e][0]:.2f}, "
             f"{s['mean_rank_ci'][e][1]:.2f}]",
             "mean normalised score": fmt(s["normalised_mean"].get(e), 3),
             "wins / ties / losses against the others": "{} / {} / {}".format(*counts[e])}
            for e in s["losses"]]


def pairwise_rows(s: dict[str, Any]) -> list[dict[str, str]]:
    look = {(p["a"], p["b"]): p for p in s["pairwise"]}
    rows = []
    for a in s["losses"]:
        row = {"loss (wins/ties/losses against the column)": a}
        for b in s["losses"]:
            if a == b:
                row[b] = "-"
            elif (a, b) in look:
                p = look[(a, b)]
                row[b] = f"{p['wins']}/{p['ties']}/{p['losses']}"
            else:
                p = look[(b, a)]
                row[b] = f"{p['losses']}/{p['ties']}/{p['wins']}"
        rows.append(row)
    return rows


def bayes_rows(s: dict[str, Any]) -> list[dict[str, str]]:
    rows = sorted(s["bayesian"], key=lambda r: not r["leading"])
    return [{"first": r["a"], "second": r["b"], "P(first better)": f"{r['p_a_better']:.3f}",
             "P(practically equal)": f"{r['p_equal']:.3f}",
             "P(second better)": f"{r['p_b_better']:.3f}", "problems": str(r["n_problems"]),
             "involves the best mean rank": "yes" if r["leading"] else ""} for r in rows]


def score_rows(s: dict[str, Any]) -> list[dict[str, str]]:
    """Problems x losses: normalised score with the raw metric beside it."""
    cells = {(c["problem"], c["loss"]): c for c in s["cells"]}
    names = s["losses"] or sorted({c["loss"] for c in s["cells"]})
    problems = list(dict.fromkeys(c["problem"] for c in s["cells"]))
    rows = []
    for p in problems:
        digits = separating_digits([cells[(p, e)]["mean"] for e in names if (p, e) in cells
                                    and cells[(p, e)]["mean"] is not None])
        row = {"problem": p}
        for e in names:
            c = cells.get((p, e))
            if c is None:
                row[e] = "not run"
            elif c["status"] == "failed":
                row[e] = "failed"
            else:
                raw = fmt(c["mean"], digits) or "no metric"
                text = f"{fmt(c['normalised'], 3) or '-'} ({raw})"
                row[e] = text + (f", diverged {c['n_diverged']}x" if c["n_diverged"] else "")
        row["used"] = "yes" if p in s["problems"] else "left out"
        rows.append(row)
    return rows


def kind_markdown(kind: str, s: dict[str, Any], plots: list[Path]) -> str:
    text = [f"\n## {kind}\n\n",
            f"Score: {s['metric_words']} ({mode_words(s['mode'])}), mean over seeds; "
            f"tasks: {', '.join(s['tasks'])}; {len(s['problems'])} problem(s) used.\n\n"]
    if s["losses"]:
        text.append("### Mean rank\n\n" + md_table(rank_rows(s)))
        fr = (f"Friedman chi-square {s['friedman_statistic']:.3f}, p = "
              f"{p_text(s['friedman_p'])}" if s["friedman_p"] is not None
              else f"Friedman test: not applicable ({s['friedman_note']})")
        cd = f"; Nemenyi critical difference {s['cd']:.3f} at alpha {ALPHA}" if s["cd"] else ""
        text.append(f"\n{fr}{cd}.\n")
        text += [f"\n![critical-difference diagram, {kind}]({p.name})\n" for p in plots]
        text.append("\n### Wins, ties and losses per pair\n\n" + md_table(pairwise_rows(s)))
        text.append(f"\n### Bayesian signed-rank test ({rope_words(s['rope'])})\n\n"
                    f"{POLICY['bayesian']} {BAYES_SAMPLES} posterior samples, seed 0.\n\n")
        text.append(md_table(bayes_rows(s)) if s["bayesian"] else
                    "_not run: fewer than 2 problems with a normalised score_\n")
    text.append("\n### Scores per problem\n\nNormalised score (0 = trivial baseline, 1 = best "
                "loss) with the raw mean in brackets.\n\n" + md_table(score_rows(s)))
    left = s["excluded_problems"] + s["excluded_losses"] + s["bayesian_excluded_problems"]
    if left:
        text.append("\n### Left out\n\n" + md_table(
            [{"what": x.get("problem") or x.get("loss"), "why": x["reason"]} for x in left]))
    return "".join(text)


def across_markdown(across: dict[str, Any], plots: dict[str, list[Path]]) -> str:
    text = ["# lossbench: across problems\n\n## Verdict\n\n"]
    text += [f"- **{kind}**: {s['verdict']}\n" for kind, s in across["kinds"].items()]
    text.append("\n## How the numbers are made\n\n")
    text += [f"- **{name}**: {line}\n" for name, line in across["policy"].items()]
    for kind, s in across["kinds"].items():
        text.append(kind_markdown(kind, s, plots.get(kind, [])))
    return "".join(text)
