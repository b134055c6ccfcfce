"""`python -m lossbench.catalog`: every registered loss, the tasks it serves, what it consumes."""

from __future__ import annotations

import argparse
import shutil
import textwrap

from lossbench.losses import all_specs

COLUMNS = ("loss", "tasks", "input", "target", "description", "paper")


def catalog_rows() -> list[tuple[str, str, str, str, str, str]]:
    """(name, tasks, input, target, description, paper) for every registration, sorted by task
    then name; the description is the loss's whole summary sentence."""
    rows = [
        (spec.name, ", ".join(spec.tasks), spec.input, spec.target, spec.summary, spec.paper)
        for spec in all_specs()
    ]
    order = {"regression": 0, "binary": 1, "multiclass": 2, "ranking": 3, "embedding": 4}
    return sorted(rows, key=lambda r: (order.get(r[1].split(", ")[0], 9), r[0]))


def _cell(text: str) -> str:
    """A Markdown table cell: a `|` inside would start a new cell."""
    return text.replace("|", "\\|")


def markdown() -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, *rest in catalog_rows():
        lines.append("| " + " | ".join([f"`{name}`", *map(_cell, rest)]) + " |")
    return "\n".join(lines)


def text(width: int = 80) -> str:
    """The catalog as plain text, `width` columns wide: one line per loss with its tasks,
    input -> target and paper, then its description beneath, wrapped at spaces, never cut."""
    indent = "    "
    lines = textwrap.wrap(
        "lossbench losses: name [tasks] input -> target (paper), then what it computes. input "
        "is what the loss gets from the raw head output, target what it gets from the labels.",
        width,
    ) + [""]
    for name, tasks, input, target, description, paper in catalog_rows():
        head = f"{name} [{tasks}] {input} -> {target}" + (f" ({paper})" if paper else "")
        lines += textwrap.wrap(head, width, subsequent_indent=indent)
        lines += textwrap.wrap(
            description, width, initial_indent=indent, subsequent_indent=indent
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.catalog", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--datasets", action="store_true",
                        help="the bundled data sets instead: rows, features, kind, package, "
                             "licence and citation (as python -m lossbench.data.bundled)")
    args = parser.parse_args(argv)
    if args.datasets:
        from lossbench.data import bundled

        bundled.main(["--markdown"] if args.markdown else [])
        return
    if args.markdown:
        print(markdown())
        return
    width = shutil.get_terminal_size().columns
    print(text(width))
    print("\n" + textwrap.fill("Data sets: python -m lossbench.catalog --datasets (rows, kind, "
                               "licence and citation of every bundled set)", width))


if __name__ == "__main__":
    main()
