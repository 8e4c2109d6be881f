"""Exact search, gold ranks and ranking metrics against brute force and hand-computed values."""

import math

import numpy as np
import pytest

from cpt_jax.eval.retrieval import (
    TopKAccumulator,
    evaluate_ranking,
    exact_search,
    mrr,
    mrr_at_k,
    ndcg_at_k,
    qrels_to_index,
    rank_of_gold,
    recall_at_k,
    top_k,
)


def _integer_embeddings(seed: int, q: int, d: int, dim: int = 4) -> tuple[np.ndarray, np.ndarray]:
    # Small integers make every dot product exact and create many ties.
    rng = np.random.default_rng(seed)
    return (
        rng.integers(-2, 3, (q, dim)).astype(np.float32),
        rng.integers(-2, 3, (d, dim)).astype(np.float32),
    )


def _brute_order(queries: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    full = queries @ docs.T
    order = np.argsort(-full, axis=1, kind="stable")  # stable => lower index wins ties
    return full, order


@pytest.mark.parametrize("chunk_size", [1, 3, 64, 1003, 4096])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_exact_search_matches_brute_force_with_ties(chunk_size, k):
    queries, docs = _integer_embeddings(0, 29, 1003)
    full, order = _brute_order(queries, docs)
    scores, idx = exact_search(queries, docs, k, chunk_size=chunk_size, query_block=8)
    np.testing.assert_array_equal(idx, order[:, :k])
    np.testing.assert_array_equal(scores, np.take_along_axis(full, order[:, :k], axis=1))


def test_exact_search_matches_brute_force_float():
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((40, 32))
    docs = rng.standard_normal((777, 32))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    full, order = _brute_order(queries, docs)
    scores, idx = exact_search(queries, docs, 50, chunk_size=100, query_block=16)
    np.testing.assert_array_equal(idx, order[:, :50])
    np.testing.assert_allclose(scores, np.take_along_axis(full, order[:, :50], axis=1), rtol=1e-12)


def test_exact_search_clamps_k_to_corpus_size():
    queries, docs = _integer_embeddings(2, 5, 7)
    _, order = _brute_order(queries, docs)
    scores, idx = exact_search(queries, docs, 100, chunk_size=3)
    assert idx.shape == scores.shape == (5, 7)
    np.testing.assert_array_equal(idx, order)


def test_exact_search_all_tied_prefers_lower_index():
    docs = np.ones((10, 3), dtype=np.float32)
    _, idx = exact_search(np.ones((2, 3), dtype=np.float32), docs, 4, chunk_size=3)
    np.testing.assert_array_equal(idx, [[0, 1, 2, 3]] * 2)


def test_top_k_offset_and_surplus_ties():
    scores = np.array([[1.0, 3.0, 3.0, 3.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    s, i = top_k(scores, 2, offset=10)
    np.testing.assert_array_equal(i, [[11, 12], [10, 11]])
    np.testing.assert_array_equal(s, [[3.0, 3.0], [5.0, 4.0]])


@pytest.mark.parametrize("chunks", [[1003], [1] * 20 + [983], [7, 500, 496]])
def test_accumulator_with_exclusions_matches_brute_force(chunks):
    queries, docs = _integer_embeddings(5, 13, 1003)
    rng = np.random.default_rng(6)
    exclude = np.stack([rng.integers(0, 13, 40), rng.integers(0, 1003, 40)], axis=1)
    full = (queries @ docs.T).astype(np.float64)
    full[exclude[:, 0], exclude[:, 1]] = -np.inf
    order = np.argsort(-full, axis=1, kind="stable")[:, :1003]
    acc = TopKAccumulator(queries, 1003, query_block=4)
    start = 0
    for size in chunks:
        acc.add(docs[start : start + size], exclude)
        start += size
    scores, idx = acc.result()
    np.testing.assert_array_equal(idx, order)  # excluded pairs come last, by index
    np.testing.assert_array_equal(scores, np.take_along_axis(full, order, axis=1))
    assert acc.num_docs == 1003


def test_accumulator_errors():
    with pytest.raises(ValueError, match="No documents"):
        TopKAccumulator(np.ones((2, 3)), 5).result()
    with pytest.raises(ValueError, match="same model"):
        TopKAccumulator(np.ones((2, 3)), 5).add(np.ones((4, 2)))


def test_exact_search_errors():
    with pytest.raises(ValueError, match="same d"):
        exact_search(np.zeros((2, 3)), np.zeros((4, 5)), 1)
    with pytest.raises(ValueError, match="NaN"):
        exact_search(np.full((1, 2), np.nan), np.ones((3, 2)), 1)
    with pytest.raises(ValueError, match="k must be"):
        exact_search(np.ones((1, 2)), np.ones((3, 2)), 0)


@pytest.mark.parametrize("chunk_size", [1, 7, 1003, 5000])
def test_rank_of_gold_matches_brute_force(chunk_size):
    queries, docs = _integer_embeddings(3, 31, 1003)
    gold = np.random.default_rng(4).integers(0, 1003, 31)
    _, order = _brute_order(queries, docs)
    expected = np.argmax(order == gold[:, None], axis=1) + 1
    np.testing.assert_array_equal(rank_of_gold(queries, docs, gold, chunk_size=chunk_size, query_block=4), expected)


def _exclusions(seed: int, q: int, d: int, gold: np.ndarray) -> np.ndarray:
    """Two (query, doc) pairs per query, never the query's gold."""
    rng = np.random.default_rng(seed)
    pairs = [(row, doc) for row in range(q) for doc in rng.choice(d, 3, replace=False) if doc != gold[row]]
    return np.asarray(pairs[: 2 * q], np.int64)


@pytest.mark.parametrize("chunk_size", [1, 7, 5000])
def test_exact_search_and_rank_of_gold_with_exclusions_match_brute_force(chunk_size):
    queries, docs = _integer_embeddings(5, 17, 301)
    gold = np.random.default_rng(6).integers(0, 301, 17)
    exclude = _exclusions(7, 17, 301, gold)
    full = (queries @ docs.T).astype(np.float64)
    full[exclude[:, 0], exclude[:, 1]] = -np.inf
    order = np.argsort(-full, axis=1, kind="stable")
    _, top = exact_search(queries, docs, 10, chunk_size=chunk_size, query_block=4, exclude=exclude)
    np.testing.assert_array_equal(top, order[:, :10])
    ranks = rank_of_gold(queries, docs, gold, chunk_size=chunk_size, query_block=4, exclude=exclude)
    np.testing.assert_array_equal(ranks, np.argmax(order == gold[:, None], axis=1) + 1)


def test_rank_of_gold_refuses_to_exclude_a_gold():
    with pytest.raises(ValueError, match="gold document is never excluded"):
        rank_of_gold(np.ones((1, 2)), np.ones((3, 2)), np.array([1]), exclude=np.array([[0, 1]]))
    with pytest.raises(ValueError, match="exclude pairs must be"):
        rank_of_gold(np.ones((1, 2)), np.ones((3, 2)), np.array([1]), exclude=np.array([[0, 3]]))


def test_rank_of_gold_rejects_out_of_range_gold():
    with pytest.raises(ValueError, match="gold indices"):
        rank_of_gold(np.ones((1, 2)), np.ones((3, 2)), np.array([3]))


def test_single_gold_metrics_hand_computed():
    ranked = np.arange(20)[None, :].repeat(2, axis=0)
    gold = np.array([2, 10])  # ranks 3 and 11
    assert mrr_at_k(ranked, gold, 10) == pytest.approx((1 / 3 + 0) / 2)
    assert mrr_at_k(ranked, gold, 20) == pytest.approx((1 / 3 + 1 / 11) / 2)
    assert ndcg_at_k(ranked, gold, 10) == pytest.approx((1 / math.log2(4)) / 2)
    assert recall_at_k(ranked, gold, 10) == pytest.approx(0.5)
    assert recall_at_k(ranked, gold, 11) == pytest.approx(1.0)
    assert mrr(np.array([3, 11])) == pytest.approx((1 / 3 + 1 / 11) / 2)
    assert mrr(np.array([3, 11]), k=10) == pytest.approx(1 / 6)


def test_graded_ndcg_matches_direct_formula():
    ranked = np.array([[5, 1, 7, 3, 9]])
    qrels = {0: {1: 3, 3: 1, 4: 2, 7: 0}}
    gains = [0, 3, 0, 1, 0]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, qrels, 5) == pytest.approx(dcg / idcg)
    assert mrr_at_k(ranked, qrels, 5) == pytest.approx(1 / 2)
    assert recall_at_k(ranked, qrels, 5) == pytest.approx(2 / 3)  # grade-0 doc 7 is not relevant


def test_queries_without_relevant_docs_are_skipped():
    ranked = np.array([[0, 1], [0, 1], [1, 0]])
    qrels = {0: {0: 1}, 1: {0: 0}, 2: {0: 1}}  # query 1 has no relevant doc; query 2 finds it at rank 2
    assert mrr_at_k(ranked, qrels, 2) == pytest.approx((1 + 1 / 2) / 2)


def test_evaluate_ranking_keys_and_cutoff_errors():
    ranked = np.arange(100)[None, :]
    result = evaluate_ranking(ranked, np.array([0]), ks=(10, 100))
    assert set(result) == {f"{m}@{k}" for m in ("mrr", "ndcg", "recall") for k in (10, 100)}
    assert all(v == pytest.approx(1.0) for v in result.values())
    with pytest.raises(ValueError, match="retrieve at least k"):
        evaluate_ranking(ranked[:, :10], np.array([0]), ks=(100,))
    with pytest.raises(ValueError, match="grade > 0"):
        ndcg_at_k(ranked, {0: {1: 0}}, 10)


def test_qrels_to_index_keeps_unretrievable_judgements():
    qrels = {"q2": {"d1": 1, "missing": 1}, "q9": {"d0": 1}}
    indexed = qrels_to_index(qrels, query_ids=["q1", "q2"], doc_ids=["d0", "d1"])
    assert list(indexed) == [1]
    assert indexed[1][1] == 1 and len(indexed[1]) == 2
    ranked = np.array([[0, 1], [1, 0]])
    assert recall_at_k(ranked, indexed, 2) == pytest.approx(0.5)
