"""Data order: batch samplers for variable-length audio (a frame budget per batch, or a fixed number of
clips), the per-item sampler of fixed-length crops, random streams keyed by position, and the loop's position.

Both yield lists of dataset indices (pass them to `DataLoader(batch_sampler=...)`) in an order that is a
pure function of `(seed, epoch)`, so a resumed run replays the data order exactly: set the epoch and skip
the batches already consumed. Under `accelerate`, the prepared `DataLoader` gives every process every
`num_processes`-th batch (`BatchSamplerShard`), so the samplers describe the global batch list.

Why a frame budget: with clips of 2-20 s, a fixed number of clips per batch must be sized for the worst
case (all clips long), and a typical batch is then half padding. `FrameBudgetBatchSampler` groups clips
of similar length and fills each batch up to `max_frames_per_batch` padded frames, so every step does
about the same (maximal) amount of useful work.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import Sampler


class _EpochBatchSampler(Sampler[list[int]]):
    """Shared plumbing: batches are computed by `batches(epoch)` and cached for the current epoch."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def _current(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.batches(self.epoch))
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        yield from (list(batch) for batch in self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __getstate__(self) -> dict:
        # DataLoader workers get a copy; the cache is cheap to rebuild and may be large.
        return {**self.__dict__, "_cache": None}


class FrameBudgetBatchSampler(_EpochBatchSampler):
    """Batches of similar-length clips whose padded size, `len(batch) * max(length)`, fits a frame budget.

    Each epoch: shuffle all clips with `(seed, epoch)`; stable-sort them by length bucket (clips whose lengths
    differ by less than `bucket_tolerance` share a bucket, so their order stays random); cut the sorted list
    greedily into batches that fit `max_frames_per_batch`; shuffle the batch order. Every clip appears in
    exactly one batch per epoch; batches differ between epochs only within buckets, which keeps padding below
    about `bucket_tolerance` while still varying which clips meet. The number of batches may change slightly
    from one epoch to the next.

    Args:
        lengths: frames of each clip (the unit of the budget; latent frames in training).
        max_frames_per_batch: padded frames allowed per batch; must hold the longest clip.
        seed: seed of the data order.
        bucket_tolerance: relative length difference within a bucket (0: sort by exact length).
        max_batch_size: optional cap on clips per batch (per-clip costs the budget does not count, such as
            the text tokens of each clip, grow with the number of clips).
        shuffle: `False` keeps buckets in ascending length and batches in that order (for inspection).
    """

    # accelerate's BatchSamplerShard reads this: None marks batches of varying size.
    batch_size = None

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames_per_batch: int,
        seed: int = 0,
        bucket_tolerance: float = 0.05,
        max_batch_size: int | None = None,
        shuffle: bool = True,
    ):
        super().__init__(seed)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or self.lengths.size == 0:
            raise ValueError("lengths must be a non-empty 1-D sequence of clip lengths.")
        if (self.lengths < 1).any():
            raise ValueError("every clip must be at least 1 frame long.")
        longest = int(self.lengths.max())
        if max_frames_per_batch < longest:
            raise ValueError(
                f"max_frames_per_batch={max_frames_per_batch} cannot hold the longest clip ({longest} frames); "
                "raise the budget or filter long clips out first."
            )
        if bucket_tolerance < 0:
            raise ValueError(f"bucket_tolerance must be >= 0, got {bucket_tolerance}.")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 when given, got {max_batch_size}.")
        self.max_frames_per_batch = int(max_frames_per_batch)
        self.bucket_tolerance = float(bucket_tolerance)
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        # Geometric buckets: the same relative tolerance for 2 s and 20 s clips.
        if self.bucket_tolerance > 0:
            self._buckets = np.floor(np.log(self.lengths) / math.log1p(self.bucket_tolerance)).astype(
                np.int64
            )
        else:
            self._buckets = self.lengths.copy()

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.lengths.size) if self.shuffle else np.arange(self.lengths.size)
        order = order[np.argsort(self._buckets[order], kind="stable")]
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for index in order.tolist():
            length = int(self.lengths[index])
            grown = max(longest, length)
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (grown * (len(current) + 1) > self.max_frames_per_batch or full):
                batches.append(current)
                current, grown = [], length
            current.append(index)
            longest = grown
        batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches)).tolist()]
        return batches


class FixedSizeBatchSampler(_EpochBatchSampler):
    """`batch_size` clips per batch in a random order per `(seed, epoch)`; the last batch may be smaller.

    The conventional baseline to `FrameBudgetBatchSampler`, with the same epoch/resume semantics.
    """

    def __init__(
        self, num_samples: int, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False
    ):
        super().__init__(seed)
        if num_samples < 1:
            raise ValueError("the dataset is empty: nothing to batch.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last

    def batches(self, epoch: int) -> list[list[int]]:
        order = (
            np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            if self.shuffle
            else np.arange(self.num_samples)
        ).tolist()
        batches = [
            order[start : start + self.batch_size] for start in range(0, self.num_samples, self.batch_size)
        ]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of padded frames when every batch is padded to its longest clip (0 = no padding)."""
    lengths = np.asarray(lengths)
    padded = sum(len(batch) * int(lengths[list(batch)].max()) for batch in batches if len(batch))
    real = sum(int(lengths[list(batch)].sum()) for batch in batches if len(batch))
    return 1.0 - real / padded if padded else 0.0


class EpochSeededSampler(Sampler):
    """Yields `(index, epoch)` keys in an order that is a pure function of `(seed, epoch)`.

    Resuming exactly then needs no sampler state: set the epoch, skip the batches already consumed.
    The epoch travels with each index so that per-item randomness (random crops) can be drawn from
    `item_rng(seed, epoch, index)` in the dataset, identical in any worker process and after a resume.

    It deliberately has no `generator` attribute: accelerate would replace or re-seed that.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True):
        if num_samples < 1:
            raise ValueError("the dataset is empty: nothing to train on.")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        for index in order.tolist():
            yield index, self.epoch


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one dataset item in one epoch (see `EpochSeededSampler`)."""
    return np.random.default_rng([seed, epoch, index])


def keyed_generator(*keys: int) -> torch.Generator:
    """A CPU torch generator that is a pure function of integer `keys` (e.g. seed, epoch, batch, rank).

    Noise drawn from it is the same whether or not the run was interrupted and resumed, unlike noise
    from the global RNG. CPU generators also give the same numbers on any accelerator.
    """
    derived = int(np.random.SeedSequence([int(key) for key in keys]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(derived)


@dataclass
class TrainingProgress:
    """Where the loop stands; saved in every checkpoint (`checkpointing.CheckpointState`) for exact resume.

    `batches_in_epoch` counts micro-batches of `epoch` already consumed by this process.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])

    def resume_position(self, batches_per_epoch: int) -> tuple[int, int]:
        """`(epoch, batches to skip)` to continue with; a finished epoch rolls over to the next one."""
        if self.batches_in_epoch >= batches_per_epoch:
            return self.epoch + 1, 0
        return self.epoch, self.batches_in_epoch


def updates_per_epoch(batches_per_epoch: int, gradient_accumulation_steps: int) -> int:
    """Optimizer steps of an epoch of `batches_per_epoch` micro-batches: accelerate forces an optimizer step at the
    end of every epoch, so `ceil(batches / accumulation)`."""
    return math.ceil(batches_per_epoch / gradient_accumulation_steps)


def training_length(
    batches_per_epoch: int,
    gradient_accumulation_steps: int,
    max_train_steps: int | None,
    num_train_epochs: int,
) -> tuple[int, int]:
    """`(max_train_steps, num_train_epochs)` made consistent, for epochs of equal length (see `updates_per_epoch`)."""
    updates = updates_per_epoch(batches_per_epoch, gradient_accumulation_steps)
    if max_train_steps is None:
        max_train_steps = num_train_epochs * updates
    return max_train_steps, math.ceil(max_train_steps / updates)
