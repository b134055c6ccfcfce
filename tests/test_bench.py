"""scripts/bench.py compares like with like: the plain loop reaches lossbench's test metric."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def test_bench_runs_both_sides_and_their_test_metrics_agree(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--tasks", "regression", "--only", "runs", "sweep",
         "--repeats", "1", "--sweep-runs", "2", "--sweep-repeats", "1", "--epochs", "3",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    case = json.loads(out.read_text())["cases"]["regression"]
    lossbench, plain = case["runs"]["lossbench"]["test"], case["runs"]["plain"]["test"]
    assert abs(lossbench - plain) <= 1e-5 * abs(plain), (lossbench, plain)
    assert "equal" in done.stdout and "DIFFER" not in done.stdout
    for ratio in ("ratio_train", "ratio_run"):
        assert case["runs"][ratio] > 0
    for ratio in ("ratio_sweep", "ratio_seeds"):
        assert case["sweep"][ratio] > 0
