"""Re-run every Findings experiment and rewrite the README's tables and plots from the results.

    python scripts/findings.py                     # all four, into outputs/findings/<name>
    python scripts/findings.py --only stability    # one
    python scripts/findings.py --out /tmp/f        # elsewhere (a folder with finished jobs
                                                   # is reused: only missing jobs train)
    python scripts/findings.py --report-only --out /tmp/f   # tables from finished sweeps

Each experiment is `python -m lossbench -m +experiment=<name> logger=none`, then
`python -m lossbench.report` over its sweep folder. The README table between
`<!-- findings:<name> -->` and `<!-- /findings:<name> -->` is rewritten from the report's
leaderboard.csv, the plot of the metric against the swept setting is copied to
docs/findings/<name>.png, and the line between `<!-- findings:commit -->` markers names the
commits the runs recorded in their results.json (`git`). The prose around the tables is not
generated: read it again after a run that changes the numbers.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Finding:
    """One README table: the swept settings shown, the metric columns (leaderboard.csv
    prefixes such as best/test/mae), and the plot the report draws against the setting."""

    settings: tuple[tuple[str, str], ...]
    metrics: tuple[tuple[str, str], ...]
    plot: str
    # Further report plots the README shows: {file in report/: name in docs/findings/}.
    extra: tuple[tuple[str, str], ...] = ()


FINDINGS: dict[str, Finding] = {
    "robust_regression": Finding(
        (("perturb.fraction", "fraction"),),
        (("best/test/mae", "best mae"), ("best/test/rmse", "best rmse")),
        "regression_vs_perturb.fraction.png"),
    "label_noise": Finding(
        (("perturb.rate", "rate"),),
        (("best/test/acc", "best acc"), ("last/test/acc", "last acc")),
        "multiclass_vs_perturb.rate.png",
        (("multiclass_digits_label_noise_rate=0.4_kind=symmetric_curves.png",
          "label_noise_curves_rate0.4.png"),)),
    "imbalance": Finding(
        (("perturb.positive_fraction", "positive_fraction"),),
        (("best/test/auroc", "best auroc"), ("best/test/ap", "best ap"),
         ("best/test/f1", "best f1")),
        "binary_vs_perturb.positive_fraction.png"),
    "stability": Finding(
        (("optimizer.lr", "lr"), ("task.input_scale", "input scale")),
        (("best/test/auroc", "best AUROC"), ("last/test/auroc", "last AUROC")),
        "binary_task.input_scale=1_vs_optimizer.lr.png"),
}


def fmt(value: float) -> str:
    """Three significant figures, as the report prints them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3g}"


def interval(row: dict, prefix: str) -> str:
    mean, lo, hi = (row.get(f"{prefix}_{k}") for k in ("mean", "lo", "hi"))
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(min(hi, 1.0) if 'auroc' in prefix else hi)}]"


def setting(value: object) -> str:
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def table(leaderboard: Path, finding: Finding) -> str:
    """The README table: one row per loss (and baseline) per setting, in the report's order."""
    import pandas as pd

    frame = pd.read_csv(leaderboard)
    head = ["loss", *(h for _, h in finding.settings), *(h for _, h in finding.metrics),
            "diverged"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in frame.to_dict("records"):
        cells = [str(row["entry"]), *(setting(row.get(c)) for c, _ in finding.settings),
                 *(interval(row, p) for p, _ in finding.metrics)]
        baseline = str(row["entry"]).startswith("baseline:")
        cells.append("" if baseline else str(int(row.get("n_diverged") or 0)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- findings:{re.escape(name)} -->\n).*?(\n<!-- /findings:"
                         rf"{re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"findings: README has no <!-- findings:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"findings: {' '.join(command)} exited {done.returncode}")


def commits(sweeps: list[Path]) -> str:
    """The commits the runs were made at, as their results.json files record them."""
    import json

    seen = sorted({str(json.loads(p.read_text()).get("git") or "unknown")[:7]
                   for sweep in sweeps for p in sweep.rglob("results.json")})
    return ", ".join(seen) or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "findings")
    parser.add_argument("--only", default=",".join(FINDINGS),
                        help=f"comma-separated, from: {', '.join(FINDINGS)}")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--report-only", action="store_true",
                        help="do not run the sweeps; report on the finished ones in --out")
    parser.add_argument("--lossbench-args", default="",
                        help="extra overrides for every sweep (e.g. for a quick dry run)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in FINDINGS]
    if unknown:
        raise SystemExit(f"findings: unknown experiment {unknown[0]!r} "
                         f"(choose from: {', '.join(FINDINGS)})")
    readme = args.readme.read_text()
    for name in names:
        sweep = args.out / name
        if not args.report_only:
            run([sys.executable, "-m", "lossbench", "-m", f"+experiment={name}",
                 "logger=none", f"hydra.sweep.dir={sweep}", *args.lossbench_args.split()])
        run([sys.executable, "-m", "lossbench.report", str(sweep)])
        readme = replace_block(readme, name, table(sweep / "report" / "leaderboard.csv",
                                                   FINDINGS[name]))
        figures = [(FINDINGS[name].plot, f"{name}.png"), *FINDINGS[name].extra]
        for source, shown in figures:
            plot = sweep / "report" / source
            if plot.exists():
                target = args.readme.parent / "docs" / "findings" / shown
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(plot, target)
    sweeps = [args.out / name for name in names]
    stamp = (f"Tables and plots made by `python scripts/findings.py` on "
             f"{date.today().isoformat()}, from runs at commit {commits(sweeps)}.")
    readme = replace_block(readme, "commit", stamp)
    args.readme.write_text(readme)
    print(f"findings: rewrote {', '.join(names)} in {args.readme}")


if __name__ == "__main__":
    main()
