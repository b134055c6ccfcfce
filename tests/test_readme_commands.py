"""Every command the README shows runs, as written, in a fresh folder: single runs for one epoch
(the only thing changed), sweeps on one seed and one epoch, the report on the sweep just made.

Left out, each for a stated reason: the quickstart blocks (CI runs the second verbatim, and
test_install the first's install), `+suite=tabular` (510 grid points; test_suite runs a slice
and every set), and `task=cifar10 ... trainer=gpu` (a GPU and a download; gpu_check.sh covers
it on a GPU). MNIST runs on small files in torchvision's real format, written here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_vision import write_mnist

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
LEFT_OUT = ("+suite=tabular ", "task=cifar10 ")
FAST = ["trainer.max_epochs=1", "logger=none", "threads=1"]


def readme_commands() -> list[tuple[bool, str]]:
    """(run in examples/, command) for every command line of the README's bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)[2:]:
        in_examples = False
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line == "cd examples":
                in_examples = True
            elif line.startswith("python ") and not any(
                    f"{skip}" in f"{line} " for skip in LEFT_OUT):
                commands.append((in_examples, line))
    return commands


def as_run(command: str, cwd: Path) -> list[str]:
    """The command as argv, shrunk: one epoch, no logger; sweeps on one seed; placeholders of
    the report command filled with the latest sweep; `[--optional]` parts left out."""
    command = re.sub(r" \[[^\]]*\]", "", command)
    folders = re.findall(r"outputs/sweeps/<day>/(?:<[^>]*>_?)+", command)
    if folders:  # the latest sweeps, oldest first, in the order the command names them
        made = sorted((cwd / "outputs" / "sweeps").glob("*/*"), key=os.path.getmtime)
        for placeholder, sweep in zip(folders, made[-len(folders):], strict=True):
            command = command.replace(placeholder, str(sweep), 1)
    args = shlex.split(command)
    if args[1:3] != ["-m", "lossbench"] or "--help" in args:
        return [sys.executable, *args[1:]]
    extra = list(FAST)
    if "-m" in args[3:]:
        extra += ["seed=0"] + (["tune_trials=2"] if any("+tune=" in a for a in args) else [])
    if any(a.startswith("task=mnist") for a in args):
        extra += [f"task.data_dir={cwd / 'data'}", "task.download=false", "task.val_size=50"]
    return [sys.executable, *args[1:], *extra]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("readme")
    (cwd / "examples").mkdir()
    for path in (ROOT / "examples").glob("*.py"):
        shutil.copy(path, cwd / "examples")
    write_mnist(cwd / "data", "MNIST", n_train=200, n_test=50)
    write_mnist(cwd / "examples" / "data", "MNIST", n_train=200, n_test=50)
    return cwd


def test_the_readme_shows_commands() -> None:
    commands = [c for _, c in readme_commands()]
    assert len(commands) >= 25
    assert any("task=table" in c for c in commands) and any("lossbench.report" in c
                                                           for c in commands)


def test_every_readme_command_runs(folder: Path) -> None:
    env = {**os.environ, "CI": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    for in_examples, command in readme_commands():
        cwd = folder / "examples" if in_examples else folder
        done = subprocess.run(as_run(command, cwd), cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, command
