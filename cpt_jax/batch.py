"""The batch as a typed pytree: what the data layer builds and the model, the step and GradCache read.

A pair batch holds two sides and, optionally, hard negatives:

    PairBatch(x: Side, y: Side, negatives: Negatives | None)
    Side = PaddedSide | PackedSide

    PaddedSide(tokens, mask)            int32 [n, seq]: one sequence per row, right-padded
    PackedSide(tokens, segments, ends)  int32 [groups, rows, seq], [groups, rows, seq], [groups, n]:
                                        several sequences per row (data/packing.py)
    Negatives(side, valid)              side: PaddedSide of [N, n, seq]; valid: int32 [N, n]
    ContentIds(x, y, negatives)         int32 [n, 2], [n, 2], [n, k, 2] or None: each text's
                                        64-bit content hash (false-negative masking in the loss)

Leaves are numpy arrays on the host (data/) and jax arrays inside the step; every leaf has the
batch's rows (or its packing groups) as its first dimension, so one sharding over the data axes
serves the whole tree. Layers dispatch on these types (isinstance), never on which keys exist.
This module sits below every layer that uses it: it imports no other cpt_jax module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

Array = Any  # numpy or jax array


def _pytree(cls: type) -> type:
    """A frozen dataclass registered as a pytree whose fields are all children."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=fields, meta_fields=[])


@_pytree
class PaddedSide:
    """Sequences one to a row. tokens, mask: int32 [n, seq] (mask 1 on real tokens, right-padded)."""

    tokens: Array
    mask: Array

    @property
    def num_sequences(self) -> int:
        return int(self.tokens.shape[0])


@_pytree
class PackedSide:
    """Sequences several to a row, in groups. tokens, segments: int32 [groups, rows, seq]
    (segments: the group-local index 0..n-1 of the sequence each token belongs to, -1: padding);
    ends: int32 [groups, n], each sequence's last token as the group-local flat index
    row * seq + column. Sequence j of group g is sequence g * n + j of the side."""

    tokens: Array
    segments: Array
    ends: Array

    @property
    def num_sequences(self) -> int:
        return int(self.ends.shape[0] * self.ends.shape[1])


Side = PaddedSide | PackedSide


@_pytree
class Negatives:
    """Hard negatives of the x side. side: PaddedSide of tokens, mask [N, n, seq] (tokenised as
    the y side); valid: int32 [N, n], 0 where a record had fewer than n negatives (such slots hold
    an empty text so their embeddings stay finite)."""

    side: PaddedSide
    valid: Array

    @property
    def per_pair(self) -> int:
        return int(self.valid.shape[1])


@_pytree
class ContentIds:
    """What each text of a batch is: a 64-bit hash of the normalised text (data/content.content_ids)
    split into two int32 words, so equal texts have equal ids and two different texts collide with
    probability about 2^-64 per pair (negligible at any batch size). x, y: int32 [n, 2], row i the
    texts of pair i (sequence i of a packed side: PackedSide keeps the order g * n + j, so these rows
    shard like the sequences); negatives: int32 [n, k, 2] of the hard negatives, or None."""

    x: Array
    y: Array
    negatives: Array | None = None


@_pytree
class PairBatch:
    """One batch of N (x, y) pairs: row i of x is paired with row i of y (sequence i of a packed
    side). negatives: hard negatives for each x, or None. ids: the content ids of every text
    (the loss masks false negatives with them), or None."""

    x: Side
    y: Side
    negatives: Negatives | None = None
    ids: ContentIds | None = None

    @property
    def num_pairs(self) -> int:
        return self.x.num_sequences

    def sides(self) -> dict[str, Side]:
        """The encoded sides by name: "x", "y" and, with negatives, "n" (grouped [N, n, seq])."""
        out: dict[str, Side] = {"x": self.x, "y": self.y}
        if self.negatives is not None:
            out["n"] = self.negatives.side
        return out


def padded_side(tokens: np.ndarray, mask: np.ndarray) -> PaddedSide:
    """A PaddedSide from the tokenizer's arrays, checked: same shape, int32."""
    if tokens.shape != mask.shape:
        raise ValueError(f"tokens {tokens.shape} and mask {mask.shape} must have the same shape.")
    return PaddedSide(np.asarray(tokens, np.int32), np.asarray(mask, np.int32))
