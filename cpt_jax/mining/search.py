"""Exact search of every query over a corpus that arrives chunk by chunk.

The running top-k is eval's `TopKAccumulator` (the one implementation: ties broken by lower
corpus index, equal to a stable sort of the full score matrix), so memory is the queries'
embeddings ``[Q, d]``, the top-k ``[Q, k]``, one chunk ``[C, d]`` and one score block
``[query_block, C]``: never ``[Q, D]``. Documents equal to a query's positive or to the query
itself (mining/corpus.text_key) are masked inside each block before the top-k, so they are never
ranked and cost no extra depth; the accumulator counts them.

The positive's score is taken where its exact text sits in the corpus (the same embedding a
negative would have); a positive absent from the corpus is scored by the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from cpt_jax.eval.retrieval import TopKAccumulator

EQUAL_TO_POSITIVE, EQUAL_TO_QUERY = 0, 1  # columns of query_keys and Candidates.excluded


@dataclasses.dataclass(frozen=True)
class Candidates:
    """The best documents of each query, best first.

    scores: ``[Q, K]`` float32; -inf past the documents that could be ranked (a corpus smaller
      than K after the exclusions). ids: ``[Q, K]`` int64 corpus positions.
    positive_scores: ``[Q]`` float32 query-positive scores; NaN where the positive is not in
      the corpus. excluded: ``[Q, 2]`` int64 documents never ranked, equal to the positive
      (column 0) or else to the query (column 1).
    """

    scores: np.ndarray
    ids: np.ndarray
    positive_scores: np.ndarray
    excluded: np.ndarray


def search(
    queries: np.ndarray,
    query_keys: np.ndarray,
    positive_ids: np.ndarray,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int,
    query_block: int = 1024,
) -> Candidates:
    """Top-k over the chunks, never ranking a query's positive or itself.

    Args:
      queries: ``[Q, d]`` L2-normalised query embeddings.
      query_keys: ``[Q, 2]`` int64 text keys of each query's positive and of the query.
      positive_ids: ``[Q]`` int64 corpus position of each positive's exact text, -1 if absent.
      chunks: ``(embeddings [C, d], keys [C] int64)`` of consecutive corpus documents.
      k: documents kept per query.
      query_block: queries scored against a chunk at once.
    """
    acc = TopKAccumulator(queries, k, query_block, query_keys=query_keys)
    positive_scores = np.full(queries.shape[0], np.nan, np.float32)
    for emb, keys in chunks:
        start = acc.num_docs
        rows = np.flatnonzero((positive_ids >= start) & (positive_ids < start + emb.shape[0]))
        positive_scores[rows] = np.einsum("qd,qd->q", queries[rows], emb[positive_ids[rows] - start])
        acc.add(emb, keys=keys)
    if acc.num_docs == 0:
        raise ValueError("the corpus gave no chunk to search; it must hold at least one document.")
    scores, ids = acc.result()
    return Candidates(scores.astype(np.float32), ids, positive_scores, acc.key_matches)
