"""Mini-batches sliced by index from tensors already on the device: no DataLoader, no workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

# Returns one epoch's sample order (a 1-D index tensor) given the generator.
OrderFn = Callable[[torch.Generator], Tensor]


class TensorBatches:
    """An iterable of (x, y) batches that Lightning accepts in place of a DataLoader.

    The order is reshuffled every epoch by a generator seeded once, so a seed fixes the whole
    sequence of batches; `order` replaces plain shuffling (e.g. m samples per class). Under
    DDP each of `world_size` processes draws the same order and takes an equal share of it.
    """

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, seed: int = 0,
        order: OrderFn | None = None, drop_last: bool = False, rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y, self.batch_size, self.drop_last = x, y, batch_size, drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.order = order or (lambda g: torch.randperm(len(self.x), generator=g))
        self.rank, self.world_size = rank, world_size
        # Equal shares: processes with different batch counts would wait on each other forever.
        self._n_samples = len(x) // world_size

    def __len__(self) -> int:
        full, rest = divmod(self._n_samples, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)

    def batch_indices(self) -> Iterator[Tensor]:
        """This epoch's batches as index tensors on the data's device (one draw per epoch)."""
        index = self.order(self.generator)
        if self.world_size > 1:
            share = len(index) // self.world_size
            index = index[self.rank * share : (self.rank + 1) * share]
        index = index.to(self.x.device, non_blocking=True)
        stop = len(index) - (len(index) % self.batch_size if self.drop_last else 0)
        for start in range(0, stop, self.batch_size):
            yield index[start : start + self.batch_size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batch in self.batch_indices():
            yield self.x[batch], self.y[batch]


class BatchIndexSampler:
    """A DataLoader sampler drawing exactly the batches `TensorBatches` slices on the device
    (same generator, same order function): streamed and on-device runs see one batch order,
    so `task.data_path` changes speed, not results. It runs in the main process; workers only
    slice the tensors it names."""

    def __init__(self, batches: TensorBatches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches.batch_indices():
            yield batch.tolist()


class OncePerEpoch:
    """A one-item iterable: Lightning's loop turns once an epoch while the module walks the
    real mini-batches itself (its per-batch hooks cost more than a small model's step)."""

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[int]:
        yield 0
