"""Pair tasks: a document equal to its query is never retrieved, for the dense systems and BM25."""

import numpy as np

from cpt_jax.eval.tasks import PairTask, identical_pairs, score_bm25, score_dense
from tests.eval.fakes import HashEncoder

# A chained document: span i is y of pair i-1 and x of pair i, as the text pairers cut them.
SPANS = [f"topic{i} word{i} shared{i} shared{i + 1} common text" for i in range(14)]


def _chain_task() -> PairTask:
    queries, docs = SPANS[:-1], SPANS[1:]
    gold = np.arange(len(queries), dtype=np.int64)
    return PairTask("chain/test", queries, docs, gold, identical_pairs(queries, docs, gold))


def test_identical_pairs_name_each_query_copy_but_never_a_gold():
    task = _chain_task()
    # Query i (span i) is document i - 1 (y of pair i - 1); query 0 has no copy.
    np.testing.assert_array_equal(task.identical, [[i, i - 1] for i in range(1, 13)])
    assert identical_pairs(["a", "b"], ["a", "c"], np.array([0, 1])).shape == (0, 2)  # x == y stays findable


def test_copies_of_the_query_are_not_scored_for_dense_and_bm25():
    # Twelve queries, each with its gold (its words and one more) and, for all but the first, its own copy.
    queries = [f"alpha{i} beta{i}" for i in range(12)]
    docs = [f"alpha{i} beta{i} gamma" for i in range(12)] + queries[1:]
    gold = np.arange(12, dtype=np.int64)
    task = PairTask("copies/test", queries, docs, gold, identical_pairs(queries, docs, gold))
    np.testing.assert_array_equal(task.identical, [[i, 11 + i] for i in range(1, 12)])
    without = PairTask(task.name, queries, docs, gold)
    for score in (lambda t: score_dense(t, HashEncoder(), batch_size=5), score_bm25):
        assert score(task) == {"mrr": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0, "recall@10": 1.0}
        # Kept, each copy outranks its gold: rank 2 for 11 of the 12 queries.
        assert score(without)["mrr"] == (1 + 11 / 2) / 12


def test_a_corpus_of_ten_still_scores_at_ten():
    # Ten documents, one of them the first query's copy: its ranked list keeps the copy last.
    queries = ["alpha beta", "gamma delta"]
    docs = ["alpha beta", "alpha beta gamma"] + [f"filler{i}" for i in range(7)] + ["gamma delta eps"]
    gold = np.array([1, 9])
    task = PairTask("ten/test", queries, docs, gold, identical_pairs(queries, docs, gold))
    for scores in (score_dense(task, HashEncoder(), batch_size=4), score_bm25(task)):
        assert scores["mrr"] == 1.0 and scores["ndcg@10"] == 1.0
