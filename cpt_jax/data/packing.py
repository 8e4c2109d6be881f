"""Sequence packing: several tokenised sequences to a row, so the encoder computes no padding.

The tokenizer pads every sequence of a side to the side's max_len; on the standard-library code
pairs half of those positions are padding (docstrings average 32 of 64 tokens, functions 70 of
128). Packing places the sequences of each group one after another in as few rows of the same
length as first-fit decreasing finds, and records, per token, which sequence it belongs to
(`segments`, the encoder's block-diagonal attention) and, per sequence, where its last token is
(`ends`, EOS pooling). model/embedding.embed_packed gives the same embeddings as embed() of the
unpacked rows.

Groups keep the sharding exact: a batch of N pairs is split into G groups of N / G consecutive
pairs (G = the batch shards x GradCache chunks), each packed into its own rows, so every
device packs, encodes and pools only its own pairs and a GradCache chunk is a set of groups.
Shapes are static per compiled step, so the row count is one number for every group of a step
(`rows`); the train loop rounds it up (`round_rows`) to keep the number of compiled shapes small.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from cpt_jax.batch import PackedSide, PairBatch, PaddedSide


def first_fit_decreasing(lengths: np.ndarray, seq: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows of `seq` tokens for sequences of these lengths: lengths [n] int (each 1..seq) ->
    (row [n], offset [n], number of rows). Longest first, each into the first row it fits."""
    if lengths.size and (lengths.min() < 1 or lengths.max() > seq):
        raise ValueError(f"sequence lengths must be in 1..{seq}, got {lengths.min()}..{lengths.max()}")
    free = np.full(len(lengths), seq, np.int64)  # at most one row per sequence
    row = np.zeros(len(lengths), np.int64)
    offset = np.zeros(len(lengths), np.int64)
    used = 0
    for i in np.argsort(-lengths, kind="stable"):
        r = int(np.argmax(free >= lengths[i]))  # the first row with room (a new one at the latest)
        row[i], offset[i] = r, seq - free[r]
        free[r] -= lengths[i]
        used = max(used, r + 1)
    return row, offset, used


def rows_needed(mask: np.ndarray, groups: int) -> int:
    """The most rows any group of this side needs: mask [N, seq] (right-padded) -> int."""
    lengths = mask.sum(axis=1).reshape(groups, -1)
    return max(first_fit_decreasing(g, mask.shape[1])[2] for g in lengths)


def round_rows(needed: int, per_group: int, steps: int = 16) -> int:
    """needed rows rounded up to a multiple of ceil(per_group / steps), capped at per_group (one
    sequence per row always fits): at most `steps` distinct row counts, hence compiled shapes."""
    quantum = -(-per_group // steps)
    return min(per_group, -(-needed // quantum) * quantum)


def pack(tokens: np.ndarray, mask: np.ndarray, groups: int, rows: int) -> PackedSide:
    """tokens, mask: [N, seq] (right-padded, N divisible by groups) -> PackedSide (cpt_jax.batch)
    with `rows` rows per group. Raises ValueError if a group needs more rows (rows_needed tells how many)."""
    n_total, seq = tokens.shape
    if n_total % groups:
        raise ValueError(f"{n_total} sequences do not split into {groups} groups")
    n = n_total // groups
    packed_tokens = np.zeros((groups, rows, seq), tokens.dtype)
    segments = np.full((groups, rows, seq), -1, np.int32)
    ends = np.zeros((groups, n), np.int32)
    lengths = mask.sum(axis=1).astype(np.int64)
    for g in range(groups):
        first = g * n
        row, offset, used = first_fit_decreasing(lengths[first : first + n], seq)
        if used > rows:
            raise ValueError(f"group {g} needs {used} rows of {seq} tokens, more than rows={rows}")
        for j in range(n):
            r, o, length = row[j], offset[j], lengths[first + j]
            packed_tokens[g, r, o : o + length] = tokens[first + j, :length]
            segments[g, r, o : o + length] = j
            ends[g, j] = r * seq + o + length - 1
    return PackedSide(packed_tokens, segments, ends)


class BatchPacker:
    """Packs the x and y sides of every local batch (a PairBatch of PaddedSides [local, seq], as
    the data pipeline gives it) into PackedSides of [local groups, rows, seq]; hard negatives pass
    through unpacked.

    The row count of a side only grows, so a run compiles its step for a few shapes early on and
    then reuses them: when a group of any process needs more rows than the side has, it grows to
    that need times 1 + 1/sqrt(n) (n sequences per group), rounded by round_rows. A need is a sum
    over n sequences, whose relative spread shrinks as 1/sqrt(n), so the headroom makes later
    growth rare. `agree` maps this process's needs [2] to the element-wise maximum over all
    processes (a collective in multi-process runs; the identity for one process), so every
    process packs to the same global shape.
    """

    def __init__(self, groups: int, agree: Callable[[np.ndarray], np.ndarray] = lambda need: need) -> None:
        self.groups = groups  # this process's groups
        self.agree = agree
        self.rows = {"x": 0, "y": 0}

    def __call__(self, batch: PairBatch) -> PairBatch:
        sides = {"x": batch.x, "y": batch.y}
        for name, side in sides.items():
            if not isinstance(side, PaddedSide):
                raise TypeError(f"BatchPacker packs PaddedSides; side {name} is a {type(side).__name__}.")
        need = self.agree(np.array([rows_needed(side.mask, self.groups) for side in sides.values()], np.int32))
        packed = {}
        for (name, side), needed in zip(sides.items(), need):
            n = side.mask.shape[0] // self.groups
            if needed > self.rows[name]:
                self.rows[name] = round_rows(math.ceil(int(needed) * (1 + 1 / math.sqrt(n))), n)
            packed[name] = pack(side.tokens, side.mask, self.groups, self.rows[name])
        return dataclasses.replace(batch, **packed)
