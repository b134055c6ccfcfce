"""Shared fixtures: the real CLI in a temp folder, a user's loss module, in-process runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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


def python_env(home: Path, user_lib: Path) -> dict[str, str]:
    """The environment of a user in CI: no wandb key, a fresh HOME, their losses on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "LOSSBENCH_"))}
    env.pop("HYDRA_FULL_ERROR", None)
    env["CI"] = "1"
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(user_lib), env.get("PYTHONPATH")]))
    return env


class Cli:
    """`python -m lossbench ARGS` run in `cwd`, as a user runs it; results land in cwd/outputs.

    Calls return a CompletedProcess with text stdout/stderr and `.cwd`, the folder it ran in.
    """

    def __init__(self, cwd: Path, user_lib: Path) -> None:
        self.cwd = cwd
        self.env = python_env(cwd / "home", user_lib)
        (cwd / "home").mkdir(parents=True, exist_ok=True)

    def command(self, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "lossbench", *args]

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(args), cwd=self.cwd, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=timeout,
        )
        done.cwd = self.cwd  # type: ignore[attr-defined]
        return done

    def start(self, *args: str, env: dict[str, str] | None = None) -> Started:
        """Start the command and return at once (to run several side by side)."""
        proc = subprocess.Popen(
            self.command(args), cwd=self.cwd, env={**self.env, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        return Started(proc, self.cwd)


class Started:
    """A command running in the background; `wait()` gives its CompletedProcess (once run)."""

    def __init__(self, proc: subprocess.Popen[str], cwd: Path) -> None:
        self.proc, self.cwd = proc, cwd
        self._done: subprocess.CompletedProcess[str] | None = None

    def wait(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        if self._done is None:
            try:
                out, err = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
                pytest.fail(f"{self.proc.args} ran over {timeout}s\n{out}\n{err}")
            self._done = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)
            self._done.cwd = self.cwd  # type: ignore[attr-defined]
        return self._done


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


@pytest.fixture(scope="session")
def new_cli(tmp_path_factory: pytest.TempPathFactory, user_lib: Path):
    """`new_cli(name)`: a Cli in a fresh folder, for runs shared by several tests."""
    return lambda name: Cli(tmp_path_factory.mktemp(name), user_lib)


# Three user losses x a sane and an absurd learning rate: 2 ok, 2 diverged, 2 failed jobs.
CUSTOM_LOSS_SWEEP = (
    "-m", "task=regression", "loss=custom",
    "loss._target_=my_losses.MyLoss,my_losses.MyL1,my_losses.Boom",
    "optimizer.lr=0.003,1e30", "logger=none", "trainer.max_epochs=3", "threads=1",
)


@pytest.fixture(scope="session")
def custom_loss_sweep(new_cli) -> Started:
    """`python -m lossbench -m loss=custom loss._target_=... optimizer.lr=...`, started."""
    return new_cli("custom_loss_sweep").start(*CUSTOM_LOSS_SWEEP)


def with_test_defaults(overrides: tuple[str, ...] | list[str], out: Path) -> list[str]:
    """Overrides plus the fast test defaults they do not set: no logger, 2 epochs, 1 thread."""
    given = {o.partition("=")[0].lstrip("+~") for o in overrides}
    defaults = {
        "logger": "none", "trainer.max_epochs": "2", "threads": "1", "output_dir": str(out),
    }
    return [f"{k}={v}" for k, v in defaults.items() if k not in given] + list(overrides)


@pytest.fixture(scope="session")
def run_in():
    """`run_in(folder, *overrides)`: lossbench.run.run(cfg) in this process, into `folder`."""
    from lossbench.config import compose_config
    from lossbench.run import run

    def run_with(folder: Path, *overrides: str) -> dict[str, Any]:
        return run(compose_config(with_test_defaults(overrides, folder)))

    return run_with


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: torch's intra-op threads cost more than they give (ms per op on a busy CPU)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def multirun_statuses(
    folder: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """`python -m lossbench -m ARGS` with outputs under `folder`; {loss: status} of its runs."""
    env = {**os.environ, "LOSSBENCH_OUT": str(folder), "CI": "1"}
    proc = subprocess.run([sys.executable, "-m", "lossbench", "-m", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    found = [json.loads(p.read_text()) for p in folder.rglob("results.json")]
    return proc, {r["loss"]: r["status"] for r in found}
