"""A regular (non-editable) install finds its Hydra configs from any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_configs_and_runs_from_another_folder(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "wheel"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("lossbench-*.whl")
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    assert (target / "lossbench" / "conf" / "config.yaml").is_file()
    assert (target / "lossbench" / "conf" / "loss" / "huber.yaml").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "CI": "1"}
    probe = subprocess.run([sys.executable, "-c", "import lossbench; print(lossbench.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == str(target / "lossbench" / "__init__.py")
    proc = subprocess.run(
        [sys.executable, "-m", "lossbench", "task=regression", "loss=huber", "logger=none",
         "trainer.max_epochs=2"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (results,) = elsewhere.rglob("results.json")
    assert json.loads(results.read_text())["status"] == "ok"
