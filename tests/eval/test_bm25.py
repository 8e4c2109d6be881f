"""BM25 baseline: tokenisation for code, ranking and gold ranks."""

import numpy as np
import pytest

from cpt_jax.eval.bm25 import BM25Index, bm25_rank_of_gold, bm25_search, tokenize

DOCS = [
    "def add(a, b): return a + b",
    "def getUserName(user): return user.profile",
    "sort a list of integers in ascending order",
    "def get_user_name(u): return u.full",
    "open a file and read all lines",
    "",
]


def test_tokenize_splits_identifiers_and_keeps_originals():
    assert tokenize("getUserName") == ["getusername", "get", "user", "name"]
    assert tokenize("get_user_name") == ["get_user_name", "get", "user", "name"]
    assert tokenize("HTTPServer.parseJSON()") == ["httpserver", "http", "server", "parsejson", "parse", "json"]
    assert tokenize("__init__") == ["init"]
    assert tokenize("the user", stopwords=True) == ["user"]
    assert tokenize("the user", stopwords=False) == ["the", "user"]


def test_obvious_match_ranks_first():
    idx = bm25_search(["read lines from a file", "sort integers"], DOCS, k=3)
    assert idx.shape == (2, 3)
    assert idx[0, 0] == 4 and idx[1, 0] == 2


def test_both_identifier_styles_match_user_name():
    top2 = bm25_search(["user name"], DOCS, k=2)[0]
    assert set(top2) == {1, 3}


def test_ties_break_by_lower_index():
    docs = ["alpha", "beta", "alpha", "gamma"]
    np.testing.assert_array_equal(bm25_search(["alpha", "zzz"], docs, k=4), [[0, 2, 1, 3], [0, 1, 2, 3]])
    # Stopword-only queries tokenise to nothing and score every document 0.
    np.testing.assert_array_equal(bm25_search(["the"], docs, k=2), [[0, 1]])


def test_rank_of_gold_matches_search_order():
    queries = ["user name", "add numbers", "sort list", "nothing matches zzz"]
    index = BM25Index(DOCS)
    full = index.search(queries, k=len(DOCS))
    gold = np.array([3, 0, 4, 5])
    expected = np.argmax(full == gold[:, None], axis=1) + 1
    np.testing.assert_array_equal(index.rank_of_gold(queries, gold), expected)
    np.testing.assert_array_equal(bm25_rank_of_gold(queries, DOCS, gold), expected)
    assert expected[-1] == 6  # all tied at 0: every lower index goes first


def test_excluded_documents_rank_last_and_do_not_count():
    queries = ["user name", "add numbers"]
    index = BM25Index(DOCS)
    exclude = np.array([[0, 1], [1, 0]])  # each query's best match
    top = index.search(queries, k=len(DOCS), exclude=exclude)
    assert top[0, -1] == 1 and top[1, -1] == 0
    np.testing.assert_array_equal(top[0, :-1], [d for d in index.search(queries, k=len(DOCS))[0] if d != 1])
    # Gold 3 for "user name" ranked behind doc 1 or tied with it; excluding doc 1 lifts it to the top.
    assert index.rank_of_gold(queries, np.array([3, 2]), exclude=exclude)[0] == 1
    with pytest.raises(ValueError, match="never excluded"):
        index.rank_of_gold(queries, np.array([1, 2]), exclude=exclude)


def test_errors():
    with pytest.raises(ValueError, match="docs is empty"):
        bm25_search(["x"], [], k=1)
    with pytest.raises(ValueError, match="gold indices"):
        bm25_rank_of_gold(["x"], DOCS, np.array([len(DOCS)]))


def test_bm25s_is_quiet_once_used():
    """bm25s is imported on first use (it starts JAX's backend); its DEBUG logging is silenced then."""
    import logging

    BM25Index(["alpha beta", "gamma delta"])
    assert logging.getLogger("bm25s").getEffectiveLevel() >= logging.WARNING
