"""Readers (cpt_jax.data.stream) and mixture counts (cpt_jax.data.mixture): coverage, windowed
shuffle, exact resume from any state, bounded memory, and non-negative exact mixture counts."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from cpt_jax.data import mixture
from cpt_jax.data.stream import ReaderState, ShardSlice, SourceReader, reader_slices
from tests.data.stream_sources import pairs


def _keys(records):
    return [r["x"] for r in records]


@pytest.mark.parametrize("num_shards, readers", [(20, 4), (4, 4), (3, 8), (1, 5), (5, 16)])
def test_readers_split_every_shard_record_exactly_once(num_shards, readers):
    sizes = [7 + i for i in range(num_shards)]
    owned = {(i, j): 0 for i, size in enumerate(sizes) for j in range(size)}
    for v in range(readers):
        for piece in reader_slices(num_shards, readers, v):
            for j in range(piece.rank, sizes[piece.shard], piece.stride):
                owned[(piece.shard, j)] += 1
    assert set(owned.values()) == {1}
    if num_shards >= readers:
        assert reader_slices(num_shards, readers, 1) == [ShardSlice(i) for i in range(1, num_shards, readers)]
    else:
        assert reader_slices(3, 8, 4) == [ShardSlice(1, stride=3, rank=1)]  # readers 1, 4, 7 share shard 1


@pytest.mark.parametrize("shard_sizes, readers", [([5, 9, 3, 11, 6, 2, 8, 4], 4), ([30, 25, 40], 8)])
def test_one_epoch_of_all_readers_is_the_source_once(shard_sizes, readers):
    source = pairs("s", shard_sizes)
    everything = sorted(r["x"] for i in range(len(shard_sizes)) for r in source.read_shard(i))
    seen = []
    for v in range(readers):
        # Window 1: no shuffle, so the first epoch_size pairs are exactly epoch 0 (a window may
        # straddle epochs).
        reader = SourceReader(source, seed=0, reader=v, num_readers=readers, window=1)
        slices = reader_slices(len(shard_sizes), readers, v)
        epoch_size = sum(len(range(p.rank, shard_sizes[p.shard], p.stride)) for p in slices)
        got = _keys(reader.take(epoch_size))
        assert len(set(got)) == epoch_size
        seen += got
    assert sorted(seen) == everything


def test_window_permutes_the_stream_and_epochs_permute_shards():
    source = pairs("s", [4] * 6)
    natural = SourceReader(source, seed=0, reader=0, num_readers=1, window=1)
    shuffled = SourceReader(source, seed=0, reader=0, num_readers=1, window=6)
    a, b = _keys(natural.take(48)), _keys(shuffled.take(48))
    for w in range(8):
        assert sorted(a[6 * w : 6 * w + 6]) == sorted(b[6 * w : 6 * w + 6])  # same window, new order
    assert a != b
    shard_order = lambda keys: [k.split(".")[1] for k in keys[::4]]  # noqa: E731 - shard of each 4-pair block
    assert shard_order(a[:24]) != shard_order(a[24:]), "epoch 1 visits the shards in another order"
    assert sorted(a[:24]) == sorted(a[24:])
    other_seed = SourceReader(source, seed=1, reader=0, num_readers=1, window=6)
    assert _keys(other_seed.take(48)) != b


@pytest.mark.parametrize("cut", [0, 1, 5, 6, 13, 24, 47])
def test_restored_reader_continues_exactly_rereading_at_most_one_window(cut):
    source = pairs("s", [5, 9, 3, 11, 6, 2], negatives=(0, 2))
    whole = _keys(SourceReader(source, seed=3, reader=1, num_readers=2, window=6).take(80))
    first = SourceReader(source, seed=3, reader=1, num_readers=2, window=6)
    head = _keys(first.take(cut))
    state = first.state
    assert 0 <= state.index < 6 and state == ReaderState(*[int(v) for v in state])
    fresh = pairs("s", [5, 9, 3, 11, 6, 2], negatives=(0, 2))
    resumed = SourceReader(fresh, seed=3, reader=1, num_readers=2, window=6, state=state)
    tail = _keys(resumed.take(80 - cut))
    assert head + tail == whole
    # Whole windows from the current window's start: the restore re-reads only the state.index
    # pairs of that window already emitted.
    assert fresh.pulled == -(-(state.index + 80 - cut) // 6) * 6


def test_reader_never_holds_more_than_a_window():
    source = pairs("s", [50, 70, 30])
    window = 16
    reader = SourceReader(source, seed=0, reader=0, num_readers=1, window=window)
    emitted = 0
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        emitted += len(reader.take(n))
        held = source.pulled - emitted  # read from the shards but not yet handed out
        assert 0 <= held <= window and held == reader.buffered


def test_a_reader_without_pairs_fails_clearly():
    reader = SourceReader(pairs("tiny", [2]), seed=0, reader=3, num_readers=4, window=1)
    with pytest.raises(ValueError, match="too few pairs for DataConfig.stream_readers"):
        reader.take(1)
    with pytest.raises(ValueError, match="invalid for a shuffle window"):
        SourceReader(pairs("tiny", [2]), seed=0, reader=0, num_readers=1, window=4, state=ReaderState(index=4))


@pytest.mark.parametrize(
    "weights, rows",
    [
        ((0.4, 0.4, 0.2), 1),  # floor-for-all-but-the-last would give the last source -1 rows here
        ((0.3, 0.3, 0.4), 1),
        ((0.5, 0.6), 1),
        ((1, 2, 3, 4, 5), 3),
        ((0.01, 0.99), 7),
        ((0.7, 0.1, 0.1, 0.1), 2),
    ],
)
def test_mixture_counts_are_non_negative_and_track_the_weights(weights, rows):
    p = mixture.normalise(weights)
    for step in range(2000):
        counts = mixture.step_counts(p, rows, step)
        assert min(counts) >= 0 and sum(counts) == rows
    total = mixture.cumulative_counts(p, rows, 2000)
    assert all(abs(a - float(w) * rows * 2000) < len(weights) for a, w in zip(total, p))


def test_mixture_counts_are_exact_when_the_weights_divide_the_rows():
    assert all(mixture.step_counts(mixture.normalise((3, 1)), 4, s) == [3, 1] for s in range(50))
    assert all(mixture.step_counts(mixture.normalise((0.3, 0.7)), 10, s) == [3, 7] for s in range(50))
    p = mixture.normalise((1, 1, 2))
    assert p == (Fraction(1, 4), Fraction(1, 4), Fraction(1, 2))
    # Two rows per step: 1/4 of 2 is half a row, so sources 0 and 1 alternate, exact every 2 steps.
    assert all(mixture.cumulative_counts(p, 2, 2 * s) == [s, s, 2 * s] for s in range(50))
    with pytest.raises(ValueError, match="finite and positive"):
        mixture.normalise((1.0, 0.0))
