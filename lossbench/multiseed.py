"""`seeds=N`, kept under its old import path: the stack of seeds lives in lossbench.stack."""

from lossbench.stack import SeedStackModule, run_seeds, seed_config

__all__ = ["SeedStackModule", "run_seeds", "seed_config"]
