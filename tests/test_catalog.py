"""`python -m lossbench.catalog`: every loss whole at any terminal width, each description a
whole sentence, and the Markdown table one row per loss."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from lossbench.losses import all_specs

SPECS = all_specs()


def catalog(*args: str, columns: int = 80) -> str:
    """The catalog as a user's terminal of `columns` columns prints it (a fresh process, so
    only lossbench's own losses are registered)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "lossbench.catalog", *args], env=env,
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_text_wraps_within_the_width_and_cuts_nothing(columns: int) -> None:
    out = catalog(columns=columns)
    assert max(len(line) for line in out.splitlines()) <= columns
    assert "…" not in out
    flat = " ".join(out.split())
    for spec in SPECS:
        # The loss's head line holds its name whole, then its description follows in full.
        head = f"{spec.name} [{', '.join(spec.tasks)}] {spec.input} -> {spec.target}"
        assert head in flat, head
        assert f"{head}{f' ({spec.paper})' if spec.paper else ''} {spec.summary}" in flat


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.tasks[0]}")
def test_each_description_is_a_whole_sentence(spec) -> None:
    text = spec.summary
    assert text.endswith("."), text
    assert text[0].isalpha(), text
    assert text.count("(") == text.count(")"), text
    assert "\n" not in text and "  " not in text


def test_a_docstring_gives_its_whole_first_paragraph() -> None:
    """cosine_embedding's first sentence spans two docstring lines; none of it is dropped."""
    (spec,) = [s for s in SPECS if s.name == "cosine_embedding"]
    assert spec.summary == (
        "torch's CosineEmbeddingLoss on in-batch pairs: 1 - cos for positives, "
        "max(0, cos - margin) for negatives."
    )


def test_markdown_is_one_row_per_loss_with_six_cells() -> None:
    lines = catalog("--markdown").strip().splitlines()
    assert lines[0] == "| loss | tasks | input | target | description | paper |"
    rows = lines[2:]
    assert len(rows) == len(SPECS)
    for row in rows:
        cells = re.split(r"(?<!\\)\|", row)[1:-1]  # an escaped \| stays inside its cell
        assert len(cells) == 6, row
    names = sorted(re.match(r"\| `([^`]+)`", row).group(1) for row in rows)
    assert names == sorted(spec.name for spec in SPECS)
    assert any(r"KL(target \|\| predicted)" in row for row in rows)
