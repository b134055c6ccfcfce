"""`python -m lossbench.catalog --datasets` lists every bundled set with its size, kind,
package, licence and citation; sizes checked against the packages' own loaders."""

from __future__ import annotations

import re
import subprocess
import sys

import palmerpenguins
import statsmodels.api as sm
from sklearn import datasets


def test_catalog_lists_the_bundled_data_sets() -> None:
    out = subprocess.run([sys.executable, "-m", "lossbench.catalog", "--datasets"],
                         capture_output=True, text=True, check=True,
                         env={"COLUMNS": "80", "PATH": ""}).stdout
    entries = dict(re.findall(r"^(\w+)  \w+, (\d+) rows", out, flags=re.M))
    assert len(entries) >= 17
    assert int(entries["diabetes"]) == len(datasets.load_diabetes().target)
    assert int(entries["wine"]) == len(datasets.load_wine().target)
    assert int(entries["fair"]) == len(sm.datasets.fair.load_pandas().data)
    assert int(entries["penguins"]) == len(palmerpenguins.load_penguins())
    assert all(len(line) <= 80 for line in out.splitlines()), "wrapped, never cut"
    assert out.count("licence:") == len(entries) and out.count("cite:") == len(entries)
