"""Keep Python's cycle collector off the objects that live as long as the process.

Importing torch, Lightning, torchmetrics and scikit-learn makes over a million objects that
are never garbage; the collector walks them all at each full collection during the imports
(~0.1 s each, ~1 s in all), again during the runs, and once more at interpreter exit (~1 s).
lossbench imports them with the collector paused, then `gc.freeze()`s what exists: objects
made later are collected as usual.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_imports() -> None:
    """Import what a run needs (collector paused), then freeze every object alive now. Call it
    before any run's objects exist: garbage that is frozen is never freed. Once per process;
    later calls do nothing."""
    global _frozen
    if _frozen:
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import pytorch_lightning  # noqa: F401

        import lossbench.run  # noqa: F401
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()
    _frozen = True


def freeze_before_exit() -> None:
    """The process is done: skip the final walk over everything (atexit handlers still run)."""
    gc.freeze()
