"""BM25 lexical baseline over text and code, scored by the ``bm25s`` package.

Only tokenisation and ranking order are ours; term weighting is bm25s's
(Lucene variant, k1=1.5, b=0.75 by default). Rankings follow the same
convention as :mod:`cpt_jax.eval.retrieval`: higher score first, ties broken
by lower document index.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence

import numpy as np

from cpt_jax.eval.retrieval import checked_exclude, top_k

_WORD = re.compile(r"[^\W_]+(?:_+[^\W_]+)*")
# Boundaries inside an identifier: lower/digit->Upper ("getUser") and the end
# of an acronym before a capitalised word ("HTTPServer").
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@functools.cache
def _bm25s():
    """The bm25s module, imported on first use: importing it starts JAX's backend (it can rank with
    jax), which must not happen before a multi-process run calls jax.distributed.initialize. Its
    index build logs at DEBUG, so its logger is quietened after the import (which sets it up)."""
    import bm25s
    import bm25s.stopwords

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@functools.cache
def _stopwords() -> frozenset[str]:
    return frozenset(_bm25s().stopwords.STOPWORDS_EN)


def tokenize(text: str, stopwords: bool = True) -> list[str]:
    """Lowercased tokens for code and prose.

    Each identifier is kept whole and also split on underscores and camelCase,
    so ``getUserName`` and ``get_user_name`` both match the query "user name"
    while an exact identifier match still scores higher. Any other
    non-alphanumeric character separates tokens.

    Args:
      text: a query or document.
      stopwords: drop English stopwords (bm25s's list) from the output.
    """
    tokens: list[str] = []
    for ident in _WORD.findall(text):
        parts = [p for piece in ident.split("_") for p in _CAMEL.split(piece)]
        tokens.append(ident.lower())
        if len(parts) > 1:
            tokens.extend(p.lower() for p in parts)
    if stopwords:
        drop = _stopwords()
        tokens = [t for t in tokens if t not in drop]
    return tokens


class BM25Index:
    """A bm25s index over a fixed corpus, queried for top-k or gold ranks."""

    def __init__(self, docs: Sequence[str], stopwords: bool = True, k1: float = 1.5, b: float = 0.75):
        """Tokenise and index ``docs`` (``D`` strings)."""
        if len(docs) == 0:
            raise ValueError("docs is empty; BM25 needs at least one document.")
        self.stopwords = stopwords
        self.num_docs = len(docs)
        self._bm25 = _bm25s().BM25(k1=k1, b=b)
        self._bm25.index([tokenize(d, stopwords) for d in docs], show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for one query, ``[D]`` float32."""
        tokens = tokenize(query, self.stopwords)
        if not tokens:  # bm25s.get_scores rejects an empty token list
            return np.zeros(self.num_docs, dtype=np.float32)
        return self._bm25.get_scores(tokens)

    def search(self, queries: Sequence[str], k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """Top-k document indices ``[Q, min(k, D)]``, best first; ``exclude`` ``[E, 2]`` (query row,
        document) pairs score -inf (as in retrieval.exact_search)."""
        return self.search_and_rank(queries, k, exclude=exclude)[0]

    def rank_of_gold(self, queries: Sequence[str], gold: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """1-based rank ``[Q]`` of each query's gold document over the whole corpus, the
        ``exclude`` pairs (never a query's gold) not counted.

        rank = 1 + #docs scoring strictly higher + #docs tied with a lower index.
        """
        return self.search_and_rank(queries, 1, gold, exclude)[1]

    def search_and_rank(
        self, queries: Sequence[str], k: int, gold: np.ndarray | None = None, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`search` and, with ``gold``, :meth:`rank_of_gold` from one scoring of each query:
        (top ``[Q, min(k, D)]``, ranks ``[Q]`` or None)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        if gold is not None:
            gold = np.asarray(gold)
            if gold.shape != (len(queries),):
                raise ValueError(f"gold must have shape [Q]=({len(queries)},), got {gold.shape}.")
            if gold.size and (gold.min() < 0 or gold.max() >= self.num_docs):
                raise ValueError(f"gold indices must lie in [0, {self.num_docs}); got [{gold.min()}, {gold.max()}].")
            exclude = checked_exclude(exclude, gold, self.num_docs)
        excluded = _by_row(exclude)
        top = np.empty((len(queries), min(k, self.num_docs)), dtype=np.int64)
        ranks = None if gold is None else np.empty(len(queries), dtype=np.int64)
        for i, query in enumerate(queries):
            s = self.scores(query)
            if i in excluded:
                s = s.astype(np.float64)  # -inf below every real score, whatever the dtype
                s[excluded[i]] = -np.inf
            top[i] = top_k(s[None, :], top.shape[1])[1][0]
            if ranks is not None:
                g = gold[i]
                ranks[i] = 1 + np.sum(s > s[g]) + np.sum(s[:g] == s[g])
        return top, ranks


def _by_row(exclude: np.ndarray | None) -> dict[int, list[int]]:
    """``[E, 2]`` (query row, document) pairs (or None) -> {row: [documents]}."""
    out: dict[int, list[int]] = {}
    for row, doc in np.zeros((0, 2), np.int64) if exclude is None else np.asarray(exclude, np.int64).reshape(-1, 2):
        out.setdefault(int(row), []).append(int(doc))
    return out


def bm25_search(queries: Sequence[str], docs: Sequence[str], k: int, stopwords: bool = True) -> np.ndarray:
    """Index ``docs`` and return top-k indices ``[Q, min(k, D)]`` per query, best first."""
    return BM25Index(docs, stopwords).search(queries, k)


def bm25_rank_of_gold(
    queries: Sequence[str], docs: Sequence[str], gold: np.ndarray, stopwords: bool = True
) -> np.ndarray:
    """Index ``docs`` and return each query's 1-based gold rank ``[Q]`` (for full-corpus MRR)."""
    return BM25Index(docs, stopwords).rank_of_gold(queries, gold)
