"""`python -m lossbench.catalog`: every registered loss, the tasks it serves, what it consumes."""

from __future__ import annotations

import argparse

from lossbench.losses import all_specs


def catalog_rows() -> list[tuple[str, str, str, str, str]]:
    """(name, tasks, input, target, source) for every registration, sorted by task then name."""
    rows = []
    for spec in all_specs():
        source = spec.paper or spec.summary
        rows.append((spec.name, ", ".join(spec.tasks), spec.input, spec.target, source))
    order = {"regression": 0, "binary": 1, "multiclass": 2, "ranking": 3, "embedding": 4}
    return sorted(rows, key=lambda r: (order.get(r[1].split(", ")[0], 9), r[0]))


def markdown() -> str:
    lines = ["| loss | tasks | input | target | implements |", "|---|---|---|---|---|"]
    lines += [f"| `{n}` | {t} | {i} | {g} | {s} |" for n, t, i, g, s in catalog_rows()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.catalog", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lossbench losses")
    for column in ("loss", "tasks", "input", "target", "implements"):
        table.add_column(column)
    for row in catalog_rows():
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
