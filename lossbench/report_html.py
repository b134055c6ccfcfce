"""index.html: one self-contained page (images inline) that opens from disk with no server.
Every string that comes from users (data sets, losses, tags, folders) is escaped."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossbench.report_format import metric_words, mode_words, separating_digits

if TYPE_CHECKING:
    import pandas as pd

    from lossbench.report import Task

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222;
       line-height: 1.45; padding: 0 1em; }
.verdict { background: #eef5ff; border-left: 5px solid #2a6fdb; padding: 0.6em 1em;
           margin: 0.8em 0; font-size: 1.1em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.note { color: #555; font-size: 0.9em; }
details { margin: 0.4em 0 1em; }
"""


def image_tag(path: Path, alt: str, cls: str = "") -> str:
    """An <img> with the PNG inline as a data URI, so the page needs no files beside it."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    klass = f' class="{escape(cls)}"' if cls else ""
    return f'<img{klass} alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def html_table(rows: list[dict[str, Any]], numeric: set[str] | None = None) -> str:
    """A table from dict rows; every header and cell escaped."""
    if not rows:
        return '<p class="note">none</p>'
    head = list(rows[0])
    numeric = numeric or set()
    out = ["<table><thead><tr>", *(f"<th>{escape(str(h))}</th>" for h in head),
           "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td{" class=num" if h in numeric else ""}>{escape(str(row[h]))}</td>'
            for h in head) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def write_index(path: Path, folders: list[Path], tasks: list[Task], lb: pd.DataFrame,
                pairs: list[dict[str, Any]], across: dict[str, Any],
                plots: dict[str, dict[str, list[Path]]], across_plots: dict[str, list[Path]]
                ) -> Path:
    """The whole report as one page: verdicts, cross-problem tables, leaderboards, plots."""
    from lossbench.report import PAIRED_RULE, compact, not_separated_text, pair_rows, problems
    from lossbench.report_across import (
        POLICY,
        bayes_rows,
        pairwise_rows,
        rank_rows,
        rope_words,
        score_rows,
    )

    kinds = across["kinds"]
    body = ["<h1>lossbench report</h1>",
            f'<p class="note">Runs from {escape(", ".join(str(f) for f in folders))}.</p>',
            '<section id="verdict"><h2>Verdict</h2>']
    body += [f'<p class="verdict"><strong>{escape(kind)}:</strong> {escape(s["verdict"])}</p>'
             for kind, s in kinds.items()]
    body.append("</section>")
    for kind, s in kinds.items():
        body.append(f'<section class="kind"><h2>{escape(kind)}: across problems</h2>')
        body.append(f"<p>Score: {escape(s['metric_words'])} ({mode_words(s['mode'])}), mean "
                    f"over seeds; {len(s['problems'])} problem(s) used.</p>")
        if s["losses"]:
            body.append("<h3>Mean rank</h3>" + html_table(rank_rows(s)))
            friedman = (f"Friedman chi-square {s['friedman_statistic']:.3f}, "
                        f"p = {s['friedman_p']:.3g}" if s["friedman_p"] is not None else
                        f"Friedman test: not applicable ({escape(s['friedman_note'])})")
            cd = f"; Nemenyi critical difference {s['cd']:.3f}" if s["cd"] else ""
            body.append(f"<p>{friedman}{cd}.</p>")
            body += [image_tag(p, f"critical-difference diagram, {kind}", "cd")
                     for p in across_plots.get(kind, [])]
            body.append("<h3>Wins, ties and losses per pair</h3>" + html_table(pairwise_rows(s)))
            body.append(f"<h3>Bayesian signed-rank test ({escape(rope_words(s['rope']))})</h3>"
                        f'<p class="note">{escape(POLICY["bayesian"])}</p>'
                        + html_table(bayes_rows(s)))
        body.append("<h3>Scores per problem</h3><p class=note>Normalised score (0 = trivial "
                    "baseline, 1 = best loss), raw mean in brackets.</p>"
                    + html_table(score_rows(s)))
        left = s["excluded_problems"] + s["excluded_losses"] + s["bayesian_excluded_problems"]
        if left:
            body.append("<h3>Left out</h3>" + html_table(
                [{"what": x.get("problem") or x.get("loss"), "why": x["reason"]} for x in left]))
        body.append("</section>")
    body.append("<h2>How the numbers are made</h2><ul>")
    body += [f"<li><strong>{escape(k)}</strong>: {escape(v)}</li>"
             for k, v in across["policy"].items()]
    body.append("</ul>")
    for task in tasks:
        body.append(f'<section class="task"><h2>{escape(task.name)}: per problem</h2>'
                    f"<p>Ranked by {escape(metric_words(task.sel))} "
                    f"({mode_words(task.mode)}).</p>")
        for problem, board in problems(lb[lb["task"] == task.name]):
            body.append(f"<h3>{escape(problem)}</h3>" + html_table(compact(board, task)))
            mine = [p for p in pairs if p["task"] == task.name and p["problem"] == problem]
            if mine:
                digits = separating_digits([abs(p["mean_diff"]) for p in mine])
                body.append("<ul>" + "".join(f"<li>{escape(line)}</li>"
                                             for line in not_separated_text(mine)) + "</ul>")
                body.append(f"<details><summary>All pairs</summary><p class=note>"
                            f"{escape(PAIRED_RULE)}</p>{html_table(pair_rows(mine, digits))}"
                            "</details>")
            body += [image_tag(p, p.stem) for p in plots[task.name].get(problem, [])]
        body += [image_tag(p, p.stem) for p in plots[task.name].get("", [])]
        body.append("</section>")
    page = ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>lossbench report</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path
