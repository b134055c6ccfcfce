"""scripts/findings.py rewrites the README's Findings tables from a real (tiny) re-run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_findings_rewrites_the_table_from_the_runs(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    out = tmp_path / "findings"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "findings.py"), "--only", "stability",
         "--out", str(out), "--readme", str(readme),
         "--lossbench-args", "trainer.max_epochs=2 hydra.sweeper.params.seed=0 threads=1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    text = readme.read_text()
    block = text.split("<!-- findings:stability -->\n")[1].split("\n<!-- /findings")[0]
    rows = [line.split(" | ") for line in block.splitlines()[2:]]
    results = [json.loads(p.read_text()) for p in out.rglob("results.json")]
    assert len(results) == 12
    for r in results:  # each run's own figure is in its row (one seed: the mean is the value)
        lr = r["config"]["optimizer"]["lr"]
        scale = r["config"]["task"]["input_scale"]
        row = next(c for c in rows if c[0] == f"| {r['loss']}" and float(c[1]) == lr
                   and float(c[2]) == scale)
        if r["status"] == "ok":
            shown = float(row[3].split()[0])  # "mean [lo, hi]"
            assert shown == pytest.approx(r["metrics"]["best"]["test/auroc"], abs=6e-3)
    assert re.search(r"on \d{4}-\d\d-\d\d, from runs at commit \w+", text)
    assert (tmp_path / "docs" / "findings" / "stability.png").exists()
    # Everything outside the generated blocks is untouched.
    assert text.split("<!-- findings:commit -->")[0] == (ROOT / "README.md").read_text().split(
        "<!-- findings:commit -->")[0]
