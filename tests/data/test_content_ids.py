"""Content ids of a batch's texts (data/pipeline.content_ids, filled by tokenize_pairs): equal for
texts equal after normalisation, different otherwise; kept by packing, ignored by fingerprints."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from cpt_jax.batch import ContentIds, PaddedSide
from cpt_jax.data.config import DataConfig
from cpt_jax.data.fingerprint import batch_fingerprint
from cpt_jax.data.packing import BatchPacker
from cpt_jax.data.content import content_keys
from cpt_jax.data.pipeline import content_ids, tokenize_pairs
from tests.data.stream_sources import CharTokenizer

CONFIG = DataConfig(max_len_x=12, max_len_y=16)


def _same(ids: np.ndarray, i: int, j: int) -> bool:
    return bool(np.all(ids[i] == ids[j]))


def test_equal_after_normalisation_means_equal_ids():
    texts = ["def f(x):\n    return x", "  def f(x): return x \n", "def f(x):\treturn   x", "def f(x): return X",
             "def f(x): return x.", "def f(y): return y", ""]
    ids = content_ids(texts)
    assert ids.dtype == np.int32 and ids.shape == (7, 2)
    assert _same(ids, 0, 1) and _same(ids, 0, 2)  # whitespace: stripped, runs collapsed
    assert _same(ids, 0, 3)  # case folded (data/content.py: the one rule, mining's too)
    assert not any(_same(ids, i, j) for i in range(3, 7) for j in range(i + 1, 7))  # punctuation, words
    keys = content_keys(texts)  # mining's int64 form of the same digests
    assert keys.dtype == np.int64 and keys[0] == keys[3] and keys.view("<i4").reshape(-1, 2).tolist() == ids.tolist()
    digest = hashlib.blake2b(b"def f(x): return x", digest_size=8).digest()
    assert ids[0].tobytes() == np.frombuffer(digest, "<i4").tobytes()  # the two words of the 64-bit hash
    assert content_ids([]).shape == (0, 2)


def test_many_distinct_texts_have_distinct_ids():
    ids = content_ids([f"text number {i}" for i in range(20_000)])
    assert len({tuple(r) for r in ids}) == 20_000


def test_tokenize_pairs_fills_the_ids_of_both_sides():
    records = [{"x": "a b", "y": "one"}, {"x": " a  b ", "y": "two"}, {"x": "c", "y": "one\n"}]
    batch = tokenize_pairs(records, CharTokenizer(), CONFIG)
    np.testing.assert_array_equal(batch.ids.x, content_ids(["a b", "a b", "c"]))
    np.testing.assert_array_equal(batch.ids.y, content_ids(["one", "two", "one"]))
    assert batch.ids.negatives is None and batch.negatives is None
    assert _same(batch.ids.x, 0, 1) and not _same(batch.ids.x, 0, 2) and _same(batch.ids.y, 0, 2)


def test_tokenize_pairs_ids_of_hard_negatives_follow_their_slots():
    records = [{"x": "q1", "y": "d1", "negatives": ["d2", "d1 "]}, {"x": "q2", "y": "d2", "negatives": ["d9"]}]
    batch = tokenize_pairs(records, CharTokenizer(), dataclasses.replace(CONFIG, num_negatives=2))
    assert batch.ids.negatives.shape == (2, 2, 2) and batch.ids.negatives.dtype == np.int32
    np.testing.assert_array_equal(batch.ids.negatives.reshape(4, 2), content_ids(["d2", "d1", "d9", ""]))
    np.testing.assert_array_equal(batch.negatives.valid, [[1, 1], [1, 0]])
    assert _same(np.concatenate([batch.ids.y, batch.ids.negatives[0]]), 0, 3)  # the false negative "d1 "


def test_packing_keeps_the_ids_and_fingerprints_ignore_them():
    records = [{"x": "x" * (i % 5 + 1), "y": f"y{i}"} for i in range(8)]
    batch = tokenize_pairs(records, CharTokenizer(), CONFIG)
    packed = BatchPacker(groups=2)(batch)
    assert not isinstance(packed.x, PaddedSide) and packed.ids is batch.ids
    without = dataclasses.replace(batch, ids=None)
    assert batch_fingerprint(batch) == batch_fingerprint(without)
    other = dataclasses.replace(batch, ids=ContentIds(batch.ids.y, batch.ids.x))
    assert batch_fingerprint(other) == batch_fingerprint(batch)
