"""Sequence packing: every sequence placed once, intact, in rows of the side's length."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpt_jax.batch import Negatives, PackedSide, PaddedSide, PairBatch
from cpt_jax.data.packing import BatchPacker, first_fit_decreasing, pack, round_rows, rows_needed
from tests.helpers import random_side


def _side(seed: int, n: int, seq: int, max_len: int):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, max_len + 1, n)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    return rng.integers(1, 100, (n, seq)).astype(np.int32) * mask, mask


def test_first_fit_decreasing_places_every_sequence_without_overlap():
    lengths = np.random.default_rng(0).integers(1, 17, 50)
    row, offset, used = first_fit_decreasing(lengths, 16)
    occupied = np.zeros((used, 16), int)
    for r, o, n in zip(row, offset, lengths):
        occupied[r, o : o + n] += 1
    assert occupied.max() == 1 and occupied.sum() == lengths.sum()
    assert used >= -(-lengths.sum() // 16)  # no fewer rows than the tokens need
    assert first_fit_decreasing(np.array([5, 3, 8, 8, 4, 4]), 16)[2] == 2  # 8+8, 5+4+4+3


def test_first_fit_decreasing_rejects_impossible_lengths():
    with pytest.raises(ValueError, match="1..16"):
        first_fit_decreasing(np.array([4, 17]), 16)
    with pytest.raises(ValueError, match="1..16"):
        first_fit_decreasing(np.array([0, 3]), 16)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_pack_keeps_every_sequence_intact_in_its_group(groups):
    tokens, mask = _side(1, 16, 12, 7)
    rows = rows_needed(mask, groups)
    packed = pack(tokens, mask, groups, rows)
    n = 16 // groups
    assert packed.tokens.shape == (groups, rows, 12) and packed.ends.shape == (groups, n)
    for g in range(groups):
        flat_tokens, flat_segments = packed.tokens[g].reshape(-1), packed.segments[g].reshape(-1)
        for j in range(n):
            length = mask[g * n + j].sum()
            where = np.flatnonzero(flat_segments == j)
            assert len(where) == length and np.all(np.diff(where) == 1)  # contiguous
            assert where[-1] // 12 == where[0] // 12  # in one row
            assert where[-1] == packed.ends[g, j]  # ends: its last token
            np.testing.assert_array_equal(flat_tokens[where], tokens[g * n + j, :length])
        assert np.all(flat_tokens[flat_segments < 0] == 0)
    # Rows beyond the need are padding; fewer are refused, naming the need.
    assert np.all(pack(tokens, mask, groups, rows + 2).segments[:, rows:] == -1)
    with pytest.raises(ValueError, match=f"needs {rows} rows"):
        pack(tokens, mask, groups, rows - 1)


def test_pack_needs_whole_groups():
    tokens, mask = random_side(np.random.default_rng(0), 6, 8)
    with pytest.raises(ValueError, match="6 sequences do not split into 4 groups"):
        pack(tokens, mask, 4, 6)


def test_round_rows_has_few_values_and_never_exceeds_one_sequence_per_row():
    assert [round_rows(r, 64) for r in (1, 4, 5, 33, 61, 64)] == [4, 4, 8, 36, 64, 64]
    assert round_rows(3, 5) == 3  # quantum 1
    assert len({round_rows(r, 100) for r in range(1, 101)}) <= 16


def test_batch_packer_rows_only_grow_and_follow_the_agreed_need():
    seen = []

    def agree(need):
        seen.append(need.copy())
        return need + np.array([0, 3])  # another process needs 3 more y rows

    packer = BatchPacker(groups=2, agree=agree)
    batches = [
        PairBatch(PaddedSide(t, m), PaddedSide(t2, m2), Negatives(PaddedSide(t2[:, None], m2[:, None]), m2[:, :1]))
        for (t, m), (t2, m2) in ((_side(s, 16, 12, 6), _side(s + 9, 16, 16, 12)) for s in range(4))
    ]
    rows = []
    for b in batches:
        out = packer(b)
        assert isinstance(out.x, PackedSide) and isinstance(out.y, PackedSide)
        assert out.negatives is b.negatives  # hard negatives pass through
        rows.append((out.x.tokens.shape[1], out.y.tokens.shape[1]))
        assert rows[-1][1] >= min(seen[-1][1] + 3, 8)  # capped at one sequence per row (8 per group)
    assert all(a <= b for a, b in zip(rows, rows[1:]))
    np.testing.assert_array_equal(seen[0], [rows_needed(side.mask, 2) for side in (batches[0].x, batches[0].y)])
    # Growth overshoots the need by 1/sqrt(8 per group), rounded to the quantum of 1 row.
    assert rows[0][0] == min(8, math.ceil(seen[0][0] * (1 + 1 / math.sqrt(8))))
