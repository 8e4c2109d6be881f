"""Streaming search (cpt_jax/mining/search.py) against a brute-force numpy reference, the key
exclusions of eval's TopKAccumulator, and the memory claim: no score block of queries x corpus."""

from __future__ import annotations

import numpy as np
import pytest

from cpt_jax.eval import retrieval
from cpt_jax.mining.search import search


def _case(seed: int, q: int, d: int, dim: int = 4, distinct_keys: int = 40):
    """Integer embeddings (exact dot products, many ties) and keys from a small range, so that
    several documents share a key (copies of one text)."""
    rng = np.random.default_rng(seed)
    queries = rng.integers(-2, 3, (q, dim)).astype(np.float32)
    docs = rng.integers(-2, 3, (d, dim)).astype(np.float32)
    doc_keys = rng.integers(0, distinct_keys, d).astype(np.int64)
    query_keys = rng.integers(0, distinct_keys, (q, 2)).astype(np.int64)
    positive_ids = rng.integers(-1, d, q)
    return queries, docs, doc_keys, query_keys, positive_ids


def _chunks(docs, keys, size):
    return [(docs[s : s + size], keys[s : s + size]) for s in range(0, len(docs), size)]


def _brute_force(queries, docs, doc_keys, query_keys, k):
    """The full [Q, D] score matrix, excluded documents removed, stable-sorted per query."""
    full = queries @ docs.T
    ids, scores = [], []
    for row in range(len(queries)):
        eligible = np.flatnonzero(~np.isin(doc_keys, query_keys[row]))
        order = eligible[np.argsort(-full[row, eligible], kind="stable")][:k]  # stable: lower index wins ties
        ids.append(order)
        scores.append(full[row, order])
    return full, ids, scores


@pytest.mark.parametrize("chunk", [1, 7, 64, 500])
@pytest.mark.parametrize("k", [1, 10, 60])
def test_top_k_equals_brute_force_with_ties_and_exclusions(chunk, k):
    queries, docs, doc_keys, query_keys, positive_ids = _case(0, 37, 500)
    result = search(queries, query_keys, positive_ids, _chunks(docs, doc_keys, chunk), k, query_block=8)
    full, ids, scores = _brute_force(queries, docs, doc_keys, query_keys, k)
    for row in range(len(queries)):
        n = len(ids[row])
        np.testing.assert_array_equal(result.ids[row, :n], ids[row])
        np.testing.assert_array_equal(result.scores[row, :n], scores[row])
        assert np.all(np.isneginf(result.scores[row, n:]))  # fewer eligible documents than k
        # Excluded documents are counted under the first key they match (the positive's first).
        pos, own = doc_keys == query_keys[row, 0], doc_keys == query_keys[row, 1]
        np.testing.assert_array_equal(result.excluded[row], [pos.sum(), (own & ~pos).sum()])
    has = positive_ids >= 0
    np.testing.assert_array_equal(result.positive_scores[has], full[has, positive_ids[has]])
    assert np.isnan(result.positive_scores[~has]).all()


def test_float_embeddings_match_brute_force():
    rng = np.random.default_rng(3)
    queries = rng.standard_normal((25, 16)).astype(np.float32)
    docs = rng.standard_normal((301, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    doc_keys = np.arange(301, dtype=np.int64)
    query_keys = np.stack([np.arange(25), np.full(25, -5)], axis=1).astype(np.int64)  # positive of row i: doc i
    result = search(queries, query_keys, np.arange(25), _chunks(docs, doc_keys, 50), 30, query_block=4)
    _, ids, scores = _brute_force(queries, docs, doc_keys, query_keys, 30)
    np.testing.assert_array_equal(result.ids, np.stack(ids))
    np.testing.assert_allclose(result.scores, np.stack(scores), rtol=1e-6)
    assert not (result.ids == np.arange(25)[:, None]).any()  # a positive never comes back


def _largest_block(monkeypatch, queries, docs, doc_keys, query_keys, chunk, query_block):
    """Runs the search with eval's block scorer instrumented; the largest [B, C] block it was asked for."""
    shapes = []
    scorer = retrieval._block_scores
    monkeypatch.setattr(retrieval, "_block_scores", lambda q, d: shapes.append((q.shape[0], d.shape[0])) or scorer(q, d))
    search(queries, query_keys, np.full(len(queries), -1), _chunks(docs, doc_keys, chunk), 5, query_block)
    return max(shapes, key=lambda s: s[0] * s[1])


def test_the_search_never_scores_queries_by_corpus(monkeypatch):
    queries, docs, doc_keys, query_keys, _ = _case(1, 200, 1000)
    rows, cols = _largest_block(monkeypatch, queries, docs, doc_keys, query_keys, chunk=128, query_block=32)
    assert rows * cols <= 32 * 128 < 200 * 1000
    # The instrument sees the blocks it must: with a chunk and block as large as everything, the
    # one block is the full matrix (so the assertion above can fail).
    assert _largest_block(monkeypatch, queries, docs, doc_keys, query_keys, chunk=1000, query_block=200) == (200, 1000)


def test_the_accumulator_refuses_keys_on_one_side_only():
    acc = retrieval.TopKAccumulator(np.ones((2, 3), np.float32), 2, query_keys=np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="keys must be given"):
        acc.add(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"query_keys must be \[Q=2, m\]"):
        retrieval.TopKAccumulator(np.ones((2, 3), np.float32), 2, query_keys=np.zeros((3, 2), np.int64))
    plain = retrieval.TopKAccumulator(np.ones((2, 3), np.float32), 2)
    with pytest.raises(ValueError, match="keys must be given"):
        plain.add(np.ones((4, 3), np.float32), keys=np.zeros(4, np.int64))
