"""The README stays true: CI runs its test command, its loss table and custom-loss commands work."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    second = code_blocks(README)[1].strip()
    assert second in (ROOT / ".ci" / "run").read_text()


def test_loss_table_is_the_registry() -> None:
    """A fresh process: tests register losses of their own in this one."""
    catalog = subprocess.run([sys.executable, "-m", "lossbench.catalog", "--markdown"],
                             capture_output=True, text=True, check=True).stdout.strip()
    table = README.split("<!-- catalogue: python -m lossbench.catalog --markdown -->\n")[1]
    assert table.split("\n<!-- /catalogue -->")[0] == catalog


def test_custom_loss_commands_run_as_written(tmp_path: Path) -> None:
    """The two commands of "Add your own loss", run from a copy of examples/ (2 epochs)."""
    section = README.split("### Add your own loss")[1]
    commands = [
        line for line in code_blocks(section)[0].splitlines() if line.startswith("python -m")
    ]
    assert len(commands) == 2
    shutil.copy(ROOT / "examples" / "my_losses.py", tmp_path)
    env = {**os.environ, "CI": "1"}
    for command in commands:
        args = shlex.split(command)[1:] + ["trainer.max_epochs=2", "logger=none"]
        proc = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
    results = [json.loads(p.read_text()) for p in tmp_path.rglob("results.json")]
    assert sorted(r["loss"] for r in results) == ["LogCosh", "poly1"]
    assert all(r["status"] == "ok" for r in results)
