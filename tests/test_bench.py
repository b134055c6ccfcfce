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


def test_bench_cases_time_a_whole_sweep_and_compare_every_job(tmp_path: Path) -> None:
    """`--only cases`, shrunk to 2 losses x 2 seeds of one epoch: both sides run the same 4
    jobs, and each job's test metric is compared."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--only", "cases", "--cases", "digits_5x5",
         "--case-epochs", "1", "--case-overrides", "loss=ce,mae", "seed=0,1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    case = json.loads(out.read_text())["sweep_cases"]["digits_5x5"]
    agreed = case["agreement"]
    assert case["jobs"] == agreed["jobs_lossbench"] == agreed["jobs_plain"] == 4, agreed
    assert agreed["compared"] == 4 and agreed["unmatched"] == 0, agreed
    assert agreed["same_order"] and agreed["same_config"] == 4, agreed
    assert agreed["statuses"] == {"ok": 4}, agreed
    # Stacked and separate training round differently: at most a test sample or two flips.
    assert agreed["max_abs_diff"] < 0.01, agreed
    assert "trainer.max_epochs=1" in case["overrides"] and "loss=ce,mae" in case["overrides"]
    assert case["ratio_case"] > 0 and case["ratio_case_cpu"] > 0
    assert "sweep -m | plain, process" in done.stdout
    assert f"{agreed['equal']}/4 jobs" in done.stdout
    assert "4 jobs in lossbench's sweep, 4 in the plain process, 4 compared" in done.stdout
