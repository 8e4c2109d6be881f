"""Exact dense retrieval and ranking metrics (numpy, pure functions).

Embeddings are expected to be L2-normalised, so the dot product is cosine
similarity. Search scans documents in chunks and queries in blocks so peak
memory is O(Q * k + query_block * chunk_size), never O(Q * D);
:class:`TopKAccumulator` takes the chunks as they arrive, so a corpus can be
encoded and searched chunk by chunk without ever holding all its embeddings.

Ordering convention everywhere: higher score first, ties broken by lower
document index. It makes results deterministic and identical to a stable
brute-force sort of the full score matrix.

Relevance judgements ("qrels") are either
  * a mapping ``{query_row: {doc_index: grade}}`` (graded, BEIR style, keyed by
    row of ``ranked`` and column of the corpus; see :func:`qrels_to_index`), or
  * an int array ``gold [Q]``: one relevant document (grade 1) per query.

Metric conventions follow trec_eval / pytrec_eval, which BEIR uses:
  * a document is relevant iff its grade > 0;
  * nDCG gain is the grade itself (linear, ``rel``, not ``2**rel - 1``) with a
    ``log2(rank + 1)`` discount and the ideal DCG built from all judged grades;
  * queries without any relevant document are left out of the average, since
    every metric is undefined for them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

Qrels = Mapping[int, Mapping[int, float]] | np.ndarray


def top_k(scores: np.ndarray, k: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k per row, best first, ties broken by lower column.

    Args:
      scores: ``[B, n]`` finite scores, or -inf for entries that must rank last.
      k: number to keep; clamped to ``n``.
      offset: added to column positions to form the returned ids (the index of
        column 0 in the full corpus).

    Returns:
      ``(top_scores [B, k'], top_ids [B, k'])`` with ``k' = min(k, n)``.
    """
    b, n = scores.shape
    k = min(k, n)
    cols = np.broadcast_to(np.arange(n), (b, n))
    if k < n:
        # argpartition alone would pick arbitrary members among ties at the
        # k-th value; keep everything >= that threshold and, in the rare rows
        # with surplus ties, only the leftmost (lowest-index) tied entries.
        kth = np.partition(scores, n - k, axis=1)[:, n - k, None]
        keep = scores >= kth
        surplus = np.nonzero(keep.sum(axis=1) > k)[0]
        if surplus.size:
            sub, t = scores[surplus], kth[surplus]
            tied = sub == t
            need = k - np.sum(sub > t, axis=1, keepdims=True)
            keep[surplus] = (sub > t) | (tied & (np.cumsum(tied, axis=1) <= need))
        cols = np.nonzero(keep)[1].reshape(b, k)
    return _sort_desc(np.take_along_axis(scores, cols, axis=1), cols + offset, k)


def _sort_desc(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows of ``[B, n]`` by score descending then id ascending; keep the first k."""
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _check_embeddings(queries: np.ndarray, docs: np.ndarray, chunk_size: int, query_block: int) -> np.dtype:
    """Validate shapes and return the float dtype scores are computed in."""
    if queries.ndim != 2 or docs.ndim != 2 or queries.shape[1] != docs.shape[1]:
        raise ValueError(
            f"Expected queries [Q, d] and docs [D, d] with the same d, got {queries.shape} and "
            f"{docs.shape}; reshape the embeddings to 2-D matrices."
        )
    if docs.shape[0] == 0:
        raise ValueError("docs is empty; retrieval needs at least one document.")
    if chunk_size < 1 or query_block < 1:
        raise ValueError(f"chunk_size ({chunk_size}) and query_block ({query_block}) must be >= 1.")
    return np.result_type(queries.dtype, docs.dtype, np.float32)


def _block_scores(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Scores ``[B, C]`` of a query block ``[B, d]`` against a doc chunk ``[C, d]``."""
    s = q @ np.asarray(d, dtype=q.dtype).T
    if not np.isfinite(s).all():
        raise ValueError("Non-finite similarity scores; check the embeddings for NaN/inf.")
    return s


class TopKAccumulator:
    """Exact running top-k of fixed queries over documents that arrive in chunks.

    Document ids are positions in arrival order (the first chunk starts at 0).
    Each :meth:`add` scores one chunk block by block and merges it into the
    running result, so memory is O(Q * k + query_block * chunk) and no earlier
    chunk is kept. The result equals a stable sort of the full score matrix.
    """

    def __init__(
        self, queries: np.ndarray, k: int, query_block: int = 1024, query_keys: np.ndarray | None = None
    ) -> None:
        """queries: ``[Q, d]`` embeddings; k: results kept per query; query_block: queries scored per step.

        query_keys: ``[Q, m]`` int64 content keys a query must never retrieve (e.g. hashes of its
        own text and of its positive): a document whose key (``add(..., keys=)``) equals any of
        its query's keys scores -inf, by the same block mask as ``exclude`` (so excluding a
        repeated text costs no list of pairs). ``key_matches [Q, m]`` counts the documents
        excluded per query under the first of its keys each one matched.
        """
        queries = np.asarray(queries)
        if queries.ndim != 2:
            raise ValueError(f"queries must be a [Q, d] matrix, got shape {queries.shape}.")
        if query_keys is not None:
            query_keys = np.asarray(query_keys, np.int64)
            if query_keys.ndim != 2 or query_keys.shape[0] != queries.shape[0]:
                raise ValueError(f"query_keys must be [Q={queries.shape[0]}, m], got shape {query_keys.shape}.")
        self._query_keys = query_keys
        self.key_matches = np.zeros((queries.shape[0], 0 if query_keys is None else query_keys.shape[1]), np.int64)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        if query_block < 1:
            raise ValueError(f"query_block must be >= 1, got {query_block}.")
        self._queries = queries.astype(np.result_type(queries.dtype, np.float32), copy=False)
        self.k = k
        self.query_block = query_block
        self.num_docs = 0
        self._scores = np.empty((queries.shape[0], 0), dtype=self._queries.dtype)
        self._ids = np.empty((queries.shape[0], 0), dtype=np.int64)

    def add(self, docs: np.ndarray, exclude: np.ndarray | None = None, keys: np.ndarray | None = None) -> None:
        """Score the next chunk and merge it into the running top-k.

        Args:
          docs: ``[C, d]`` embeddings of documents ``num_docs .. num_docs + C - 1``.
          exclude: ``[E, 2]`` int (query row, document id) pairs, any ids; those
            inside this chunk score -inf, so they rank after every other
            document (callers drop them from the result).
          keys: ``[C]`` int64 content keys of the documents, matched against the
            ``query_keys`` given at construction (required with them).
        """
        if docs.ndim != 2 or docs.shape[1] != self._queries.shape[1]:
            raise ValueError(
                f"Expected a document chunk [C, d={self._queries.shape[1]}], got {docs.shape}; "
                "encode queries and documents with the same model."
            )
        if (keys is None) != (self._query_keys is None) or (keys is not None and np.shape(keys) != docs.shape[:1]):
            raise ValueError(
                f"keys must be given ([C={docs.shape[0]}] int64) exactly when the accumulator has query_keys; "
                f"got {None if keys is None else np.shape(keys)}."
            )
        start, end = self.num_docs, self.num_docs + docs.shape[0]
        if exclude is not None and len(exclude):
            exclude = np.asarray(exclude)
            exclude = exclude[(exclude[:, 1] >= start) & (exclude[:, 1] < end)]
        width = min(self.k, end)
        scores = np.empty((self._queries.shape[0], width), dtype=self._scores.dtype)
        ids = np.empty((self._queries.shape[0], width), dtype=np.int64)
        for qs in range(0, self._queries.shape[0], self.query_block):
            q = self._queries[qs : qs + self.query_block]
            s = _block_scores(q, docs)
            if exclude is not None and len(exclude):
                mine = exclude[(exclude[:, 0] >= qs) & (exclude[:, 0] < qs + q.shape[0])]
                s[mine[:, 0] - qs, mine[:, 1] - start] = -np.inf
            if keys is not None:
                self._exclude_keys(s, qs, np.asarray(keys, np.int64))
            ts, ti = top_k(s, self.k, offset=start)
            scores[qs : qs + q.shape[0]], ids[qs : qs + q.shape[0]] = _sort_desc(
                np.concatenate([self._scores[qs : qs + q.shape[0]], ts], axis=1),
                np.concatenate([self._ids[qs : qs + q.shape[0]], ti], axis=1),
                self.k,
            )
        self._scores, self._ids, self.num_docs = scores, ids, end

    def _exclude_keys(self, s: np.ndarray, qs: int, keys: np.ndarray) -> None:
        """Sets to -inf the scores ``s [B, C]`` of documents whose key equals one of the block's
        query keys (rows ``qs .. qs + B - 1``), counting each under the first key it matched."""
        hit = self._query_keys[qs : qs + s.shape[0], :, None] == keys[None, None, :]  # [B, m, C]
        self.key_matches[qs : qs + s.shape[0]] += (hit & (np.cumsum(hit, axis=1) == 1)).sum(axis=2)
        s[hit.any(axis=1)] = -np.inf

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [Q, k'], ids [Q, k'])``, ``k' = min(k, num_docs)``, best first."""
        if self.num_docs == 0:
            raise ValueError("No documents were added; retrieval needs at least one document.")
        return self._scores, self._ids


def exact_search(
    queries: np.ndarray,
    docs: np.ndarray,
    k: int,
    chunk_size: int = 8192,
    query_block: int = 1024,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact dot-product top-k search.

    Args:
      queries: ``[Q, d]`` query embeddings.
      docs: ``[D, d]`` document embeddings (may be a memmap; read chunk by chunk).
      k: results per query; clamped to ``D``.
      chunk_size: documents scored per step.
      query_block: queries scored per step.
      exclude: ``[E, 2]`` (query row, document index) pairs never retrieved: they score -inf,
        so they come last (callers that need exactly k others ask for k + E per query).

    Returns:
      ``(scores [Q, k'], indices [Q, k'])``, ``k' = min(k, D)``, best first,
      ties broken by lower document index.
    """
    queries = np.asarray(queries)
    dtype = _check_embeddings(queries, docs, chunk_size, query_block)
    acc = TopKAccumulator(queries.astype(dtype, copy=False), k, query_block)
    for ds in range(0, docs.shape[0], chunk_size):
        acc.add(docs[ds : ds + chunk_size], exclude)
    return acc.result()


def rank_of_gold(
    queries: np.ndarray,
    docs: np.ndarray,
    gold: np.ndarray,
    chunk_size: int = 8192,
    query_block: int = 1024,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """1-based rank of each query's single gold document over the whole corpus.

    rank = 1 + #docs scoring strictly higher + #docs tied with a lower index,
    i.e. the gold's position under the :func:`exact_search` ordering.

    Args:
      queries: ``[Q, d]`` query embeddings.
      docs: ``[D, d]`` document embeddings.
      gold: ``[Q]`` int index into ``docs`` of each query's relevant document.
      exclude: ``[E, 2]`` (query row, document index) pairs that do not count (as in
        :func:`exact_search`); a query's gold cannot be excluded.

    Returns:
      ``[Q]`` int64 ranks in ``[1, D]``.
    """
    queries = np.asarray(queries)
    queries = queries.astype(_check_embeddings(queries, docs, chunk_size, query_block), copy=False)
    gold = np.asarray(gold)
    num_docs = docs.shape[0]
    if gold.shape != (queries.shape[0],):
        raise ValueError(f"gold must have shape [Q]=({queries.shape[0]},), got {gold.shape}.")
    if gold.size and (gold.min() < 0 or gold.max() >= num_docs):
        raise ValueError(f"gold indices must lie in [0, {num_docs}); got range [{gold.min()}, {gold.max()}].")
    exclude = checked_exclude(exclude, gold, num_docs)
    ranks = np.empty(queries.shape[0], dtype=np.int64)
    for qs in range(0, queries.shape[0], query_block):
        q = queries[qs : qs + query_block]
        g_idx = gold[qs : qs + query_block]
        g = np.einsum("qd,qd->q", q, np.asarray(docs[g_idx], dtype=q.dtype))[:, None]
        before = np.zeros(q.shape[0], dtype=np.int64)
        mine = exclude[(exclude[:, 0] >= qs) & (exclude[:, 0] < qs + q.shape[0])]
        for ds in range(0, num_docs, chunk_size):
            s = _block_scores(q, docs[ds : ds + chunk_size])
            cols = np.arange(ds, ds + s.shape[1])[None, :]
            # The matmul may round the gold's own score differently from the
            # einsum above; pin it so the gold never outranks itself.
            s = np.where(cols == g_idx[:, None], g, s)
            inside = mine[(mine[:, 1] >= ds) & (mine[:, 1] < ds + s.shape[1])]
            s[inside[:, 0] - qs, inside[:, 1] - ds] = -np.inf
            before += np.sum((s > g) | ((s == g) & (cols < g_idx[:, None])), axis=1)
        ranks[qs : qs + query_block] = before + 1
    return ranks


def checked_exclude(exclude: np.ndarray | None, gold: np.ndarray, num_docs: int) -> np.ndarray:
    """``exclude`` as an ``[E, 2]`` int64 array (empty for None); ValueError if a pair is out of
    range or would exclude its query's own gold document."""
    exclude = np.zeros((0, 2), np.int64) if exclude is None else np.asarray(exclude, np.int64).reshape(-1, 2)
    if len(exclude):
        rows, cols = exclude[:, 0], exclude[:, 1]
        if rows.min() < 0 or rows.max() >= len(gold) or cols.min() < 0 or cols.max() >= num_docs:
            raise ValueError(f"exclude pairs must be (query row in [0, {len(gold)}), document in [0, {num_docs})).")
        if np.any(gold[rows] == cols):
            raise ValueError("exclude names a query's own gold document; a gold document is never excluded.")
    return exclude


def qrels_to_index(
    qrels: Mapping[Hashable, Mapping[Hashable, float]],
    query_ids: Sequence[Hashable],
    doc_ids: Sequence[Hashable] | Mapping[Hashable, int],
) -> dict[int, dict[int, float]]:
    """Re-key id-based qrels (e.g. BEIR strings) by query row and corpus column.

    ``doc_ids`` is the corpus in column order, or a mapping id -> column that
    may hold only the judged documents (so a large corpus need not be listed).
    Judged documents missing from it are kept under a negative index so they
    still count in recall and ideal DCG but can never be retrieved.
    """
    doc_pos = doc_ids if isinstance(doc_ids, Mapping) else {d: i for i, d in enumerate(doc_ids)}
    out: dict[int, dict[int, float]] = {}
    for row, qid in enumerate(query_ids):
        if qid not in qrels:
            continue
        judged: dict[int, float] = {}
        for j, (did, grade) in enumerate(qrels[qid].items()):
            judged[doc_pos.get(did, -1 - j)] = grade
        out[row] = judged
    return out


def _judgements(ranked: np.ndarray, qrels: Qrels, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gains of the top-k ranked docs and ideal gains, for queries with a relevant doc.

    Returns:
      ``(gains [n, k], ideal [n, k], num_relevant [n])`` over the ``n``
      evaluated queries; gains are grades clipped at 0.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [Q, K] doc indices, got shape {ranked.shape}.")
    if not 1 <= k <= ranked.shape[1]:
        raise ValueError(
            f"Cutoff k={k} needs k in [1, {ranked.shape[1]}] (columns of ranked); "
            "retrieve at least k documents per query or lower k."
        )
    top = ranked[:, :k]
    if isinstance(qrels, np.ndarray):
        if qrels.shape != (ranked.shape[0],):
            raise ValueError(f"gold array must have shape [Q]=({ranked.shape[0]},), got {qrels.shape}.")
        gains = (top == qrels[:, None]).astype(np.float64)
        ideal = np.zeros_like(gains)
        ideal[:, 0] = 1.0
        return gains, ideal, np.ones(ranked.shape[0])
    rows = [r for r in sorted(qrels) if any(g > 0 for g in qrels[r].values())]
    if not rows:
        raise ValueError("No query has a document with grade > 0; check that qrels match the ranked rows.")
    if rows[0] < 0 or rows[-1] >= ranked.shape[0]:
        raise ValueError(f"qrels query rows must lie in [0, {ranked.shape[0]}); re-key them with qrels_to_index.")
    gains = np.zeros((len(rows), k))
    ideal = np.zeros((len(rows), k))
    num_relevant = np.zeros(len(rows))
    for n, r in enumerate(rows):
        judged = qrels[r]
        gains[n] = [max(judged.get(int(d), 0), 0) for d in top[r]]
        best = sorted((g for g in judged.values() if g > 0), reverse=True)
        ideal[n, : min(k, len(best))] = best[:k]
        num_relevant[n] = len(best)
    return gains, ideal, num_relevant


def mrr_at_k(ranked: np.ndarray, qrels: Qrels, k: int) -> float:
    """Mean reciprocal rank of the first relevant doc within the top k (0 if none).

    Args:
      ranked: ``[Q, K]`` doc indices, best first; ``k <= K``.
      qrels: graded mapping or ``gold [Q]`` array (see module docstring).
    """
    gains, _, _ = _judgements(ranked, qrels, k)
    hit = gains > 0
    first = np.argmax(hit, axis=1)
    return float(np.mean(np.where(hit.any(axis=1), 1.0 / (first + 1), 0.0)))


def ndcg_at_k(ranked: np.ndarray, qrels: Qrels, k: int) -> float:
    """Mean nDCG@k with linear gain ``grade`` and ``1 / log2(rank + 1)`` discount.

    Args:
      ranked: ``[Q, K]`` doc indices, best first; ``k <= K``.
      qrels: graded mapping or ``gold [Q]`` array (see module docstring).
    """
    gains, ideal, _ = _judgements(ranked, qrels, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    return float(np.mean((gains @ discount) / (ideal @ discount)))


def recall_at_k(ranked: np.ndarray, qrels: Qrels, k: int) -> float:
    """Mean fraction of each query's relevant docs found in the top k.

    Args:
      ranked: ``[Q, K]`` doc indices, best first; ``k <= K``.
      qrels: graded mapping or ``gold [Q]`` array (see module docstring).
    """
    gains, _, num_relevant = _judgements(ranked, qrels, k)
    return float(np.mean((gains > 0).sum(axis=1) / num_relevant))


def mrr(ranks: np.ndarray, k: int | None = None) -> float:
    """Mean reciprocal rank from full 1-based ranks ``[Q]``; ranks above ``k`` score 0."""
    ranks = np.asarray(ranks)
    if ranks.size == 0 or ranks.min() < 1:
        raise ValueError("ranks must be a non-empty array of 1-based ranks (as from rank_of_gold).")
    rr = 1.0 / ranks
    if k is not None:
        rr = np.where(ranks <= k, rr, 0.0)
    return float(np.mean(rr))


def evaluate_ranking(ranked: np.ndarray, qrels: Qrels, ks: Sequence[int] = (10, 100)) -> dict[str, float]:
    """All of MRR, nDCG and recall at each cutoff, e.g. ``{"mrr@10": ..., "recall@100": ...}``.

    Args:
      ranked: ``[Q, K]`` doc indices, best first, with ``K >= max(ks)``.
      qrels: graded mapping or ``gold [Q]`` array (see module docstring).
    """
    out: dict[str, float] = {}
    for k in ks:
        out[f"mrr@{k}"] = mrr_at_k(ranked, qrels, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, qrels, k)
        out[f"recall@{k}"] = recall_at_k(ranked, qrels, k)
    return out
