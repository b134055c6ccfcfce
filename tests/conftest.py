"""Shared fixtures: the real CLI in a temp folder, a user's loss module, in-process runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# What a user writes in their own package: lossbench is not edited to use these.
USER_LOSSES = '''
    """A user's losses, importable as `my_losses` (on PYTHONPATH, outside lossbench)."""

    import torch
    from torch import nn

    from lossbench.losses import register_loss


    class MyLoss(nn.Module):
        """Mean absolute error, a plain nn.Module: forward(raw prediction, float target)."""

        def forward(self, prediction, target):
            return (prediction - target).abs().mean()


    @register_loss("my_l1", tasks="regression")
    class MyL1(nn.Module):
        """L1 registered with lossbench's decorator."""

        def __init__(self, reduction="mean"):
            super().__init__()
            self.reduction = reduction

        def forward(self, prediction, target):
            return torch.nn.functional.l1_loss(prediction, target, reduction=self.reduction)


    class Boom(nn.Module):
        """A loss with a bug: every forward raises."""

        def forward(self, prediction, target):
            raise RuntimeError("boom: this loss always fails\\nsecond line of the error")


    class NotALoss:
        """A class, but no torch.nn.Module."""
'''

# Lightning's console chatter lossbench must keep off the user's screen.
LIGHTNING_NOISE = (
    "GPU available", "TPU available", "💡 Tip", "does not have many workers",
    "log_every_n_steps", "Total params", "| Name", "LOCAL_RANK", "HPU available",
)
# Signs of a progress bar (tqdm or rich) in captured output.
PROGRESS_BAR = ("it/s]", "Epoch 0:", "━━", "██")


def python_env(home: Path, user_lib: Path) -> dict[str, str]:
    """The environment of a user in CI: no wandb key, a fresh HOME, their losses on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "LOSSBENCH_"))}
    env.pop("HYDRA_FULL_ERROR", None)
    env["CI"] = "1"
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(user_lib), env.get("PYTHONPATH")]))
    return env


class Cli:
    """`python -m lossbench ARGS` run in `cwd`, as a user runs it; results land in cwd/outputs."""

    def __init__(self, cwd: Path, user_lib: Path) -> None:
        self.cwd = cwd
        self.env = python_env(cwd / "home", user_lib)
        (cwd / "home").mkdir(parents=True, exist_ok=True)

    def command(self, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "lossbench", *args]

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(args), cwd=self.cwd, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=timeout,
        )

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the command and return at once (to run several side by side)."""
        return subprocess.Popen(
            self.command(args), cwd=self.cwd, env={**self.env, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    @staticmethod
    def wait(proc: subprocess.Popen[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{proc.args} ran over {timeout}s\n{out}\n{err}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="session")
def user_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the user's `my_losses.py`, for PYTHONPATH."""
    folder = tmp_path_factory.mktemp("user_lib")
    (folder / "my_losses.py").write_text(textwrap.dedent(USER_LOSSES).lstrip())
    return folder


@pytest.fixture(scope="session")
def user_losses(user_lib: Path) -> Iterator[Any]:
    """The user's module imported in this process (for run(cfg) with loss._target_)."""
    sys.path.insert(0, str(user_lib))
    import my_losses

    yield my_losses
    sys.path.remove(str(user_lib))


@pytest.fixture
def cli(tmp_path: Path, user_lib: Path) -> Cli:
    return Cli(tmp_path, user_lib)


@pytest.fixture(scope="module")
def module_cli(tmp_path_factory: pytest.TempPathFactory, user_lib: Path):
    """A Cli in a fresh folder, for module-scoped runs shared by several tests."""
    return lambda name: Cli(tmp_path_factory.mktemp(name), user_lib)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def results_under(folder: Path) -> list[dict[str, Any]]:
    """Every results.json beneath `folder`, read, in path order."""
    return [read_json(p) for p in sorted(Path(folder).rglob("results.json"))]


def sweep_dirs(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "outputs" / "sweeps").glob("*/*") if p.is_dir())


def wait_for(condition, timeout: float = 120, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


@pytest.fixture
def run_config(tmp_path: Path):
    """run(cfg) in this process: overrides in, results dict out (logger=none, 2 epochs)."""
    from lossbench.config import compose_config
    from lossbench.run import run

    counter = iter(range(1000))

    def run_with(*overrides: str, output_dir: Path | None = None) -> dict[str, Any]:
        out = output_dir or tmp_path / f"run{next(counter)}"
        return run(compose_config(with_test_defaults(overrides, out)))

    return run_with


def with_test_defaults(overrides: tuple[str, ...] | list[str], out: Path) -> list[str]:
    """Overrides plus the fast test defaults (logger=none, 2 epochs) they do not set."""
    given = {o.partition("=")[0].lstrip("+~") for o in overrides}
    defaults = {"logger": "none", "trainer.max_epochs": "2", "output_dir": str(out)}
    return [f"{k}={v}" for k, v in defaults.items() if k not in given] + list(overrides)
