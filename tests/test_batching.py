"""`instructaudio_diffusers.training.batching`: frame-budget and fixed-size batch samplers."""

import numpy as np
import pytest

from instructaudio_diffusers.training.batching import (
    FixedSizeBatchSampler,
    FrameBudgetBatchSampler,
    padding_fraction,
)

# Clip lengths like the corpus: 2-20 s at 43 latent frames per second.
LENGTHS = np.random.default_rng(0).integers(86, 861, size=500)
BUDGET = 4 * 860


def test_every_batch_fits_the_frame_budget():
    sampler = FrameBudgetBatchSampler(LENGTHS, BUDGET, seed=0)
    for epoch in range(3):
        for batch in sampler.batches(epoch):
            assert len(batch) * LENGTHS[batch].max() <= BUDGET


@pytest.mark.parametrize("tolerance", [0.0, 0.05, 0.5])
def test_every_clip_appears_exactly_once_per_epoch(tolerance):
    sampler = FrameBudgetBatchSampler(LENGTHS, BUDGET, seed=3, bucket_tolerance=tolerance)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen = [index for batch in sampler for index in batch]
        assert sorted(seen) == list(range(len(LENGTHS)))
        assert len(sampler) == len(sampler.batches(epoch))


def test_order_is_a_pure_function_of_seed_and_epoch():
    first = FrameBudgetBatchSampler(LENGTHS, BUDGET, seed=7)
    second = FrameBudgetBatchSampler(LENGTHS, BUDGET, seed=7)
    second.set_epoch(5)  # a sampler's history must not matter
    list(second)
    assert first.batches(2) == second.batches(2)
    assert first.batches(2) != first.batches(3)
    assert first.batches(2) != FrameBudgetBatchSampler(LENGTHS, BUDGET, seed=8).batches(2)


def test_batches_mix_differently_between_epochs():
    sampler = FrameBudgetBatchSampler(LENGTHS, BUDGET, seed=0)
    pairs = [{frozenset(batch) for batch in sampler.batches(epoch)} for epoch in (0, 1)]
    assert len(pairs[0] & pairs[1]) < len(pairs[0]) / 2


def test_padding_is_far_lower_than_with_fixed_batches():
    dynamic = FrameBudgetBatchSampler(LENGTHS, BUDGET, seed=0).batches(0)
    fixed = FixedSizeBatchSampler(len(LENGTHS), 4, seed=0).batches(0)
    dynamic_padding, fixed_padding = padding_fraction(dynamic, LENGTHS), padding_fraction(fixed, LENGTHS)
    assert dynamic_padding < 0.05 < 0.2 < fixed_padding
    # Same peak memory (4 longest clips), more clips per step on average.
    assert len(LENGTHS) / len(dynamic) > 1.5 * 4


def test_tolerance_trades_padding_for_variety():
    paddings = [
        padding_fraction(
            FrameBudgetBatchSampler(LENGTHS, BUDGET, bucket_tolerance=tolerance).batches(0), LENGTHS
        )
        for tolerance in (0.0, 0.05, 0.2)
    ]
    assert paddings == sorted(paddings) and paddings[-1] < 0.2


def test_max_batch_size_caps_short_clip_batches():
    lengths = np.full(100, 10)
    batches = FrameBudgetBatchSampler(lengths, 1000, seed=0, max_batch_size=8).batches(0)
    assert max(len(batch) for batch in batches) == 8
    assert sorted(i for batch in batches for i in batch) == list(range(100))


def test_rejects_a_budget_smaller_than_the_longest_clip():
    with pytest.raises(ValueError, match="longest clip"):
        FrameBudgetBatchSampler([10, 50], 40)
    with pytest.raises(ValueError, match="at least 1 frame"):
        FrameBudgetBatchSampler([0, 5], 40)


def test_fixed_size_sampler_covers_every_clip_in_batches_of_its_size():
    sampler = FixedSizeBatchSampler(10, 4, seed=1)
    batches = sampler.batches(0)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert batches != sampler.batches(1)
    assert [len(b) for b in FixedSizeBatchSampler(10, 4, drop_last=True).batches(0)] == [4, 4]


def test_accelerate_sharding_gives_each_process_the_same_number_of_batches():
    """Under DDP accelerate deals whole batches round-robin; ranks must see equal counts or training hangs."""
    from accelerate.data_loader import BatchSamplerShard

    sampler = FrameBudgetBatchSampler(LENGTHS, BUDGET, seed=0)
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=rank)) for rank in (0, 1)]
    assert (
        len(shards[0]) == len(shards[1]) == len(BatchSamplerShard(sampler, num_processes=2, process_index=0))
    )
    covered = {index for shard in shards for batch in shard for index in batch}
    assert covered == set(range(len(LENGTHS)))
    for shard in shards:
        assert all(len(batch) * LENGTHS[batch].max() <= BUDGET for batch in shard)
