"""Held-out retrieval tasks built from a prepared pair dataset, scored for any system.

A pair split (x_i, y_i) becomes a search task: x_i is the query, the de-duplicated y's are
the corpus, and y_i is the one relevant document. For stdlib_code that is code search
(docstring -> function); for stdlib_text, text search (span -> the next span).

A document whose text equals its query's is never retrieved for that query (as BEIR's
ignore_identical_ids): the text pairers chain spans (span i is y of pair i-1 and x of pair i),
so most text queries have their own verbatim copy among the documents, which every system
would rank first and which says nothing about finding the next span.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cpt_jax.data.pipeline import iter_split_texts
from cpt_jax.eval.bm25 import BM25Index
from cpt_jax.eval.common import Encoder, encode_checked
from cpt_jax.eval.retrieval import evaluate_ranking, exact_search, mrr, rank_of_gold


@dataclasses.dataclass(frozen=True)
class PairTask:
    """queries: [Q] texts; docs: [D] texts; gold: int [Q], index of each query's document;
    identical: int [E, 2] (query row, document index) where the document's text is the query's,
    never retrieved (at most one per query: the documents are distinct)."""

    name: str
    queries: list[str]
    docs: list[str]
    gold: np.ndarray
    identical: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), np.int64))


def identical_pairs(queries: list[str], docs: list[str], gold: np.ndarray) -> np.ndarray:
    """[E, 2] int64 (query row, document index) of documents equal to their query (a query's
    own gold excepted: a pair whose x is its y stays findable)."""
    position = {d: i for i, d in enumerate(docs)}
    pairs = [(row, position[q]) for row, q in enumerate(queries) if position.get(q, gold[row]) != gold[row]]
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def load_pair_task(dataset: str, split: str, data_dir: str, limit: int | None = None) -> PairTask:
    """The (x -> y) search task of one split, in the split's fixed order."""
    queries, docs, gold, index = [], [], [], {}
    for i, record in enumerate(iter_split_texts(dataset, split, data_dir)):
        if limit is not None and i >= limit:
            break
        queries.append(record["x"])
        gold.append(index.setdefault(record["y"], len(index)))
    docs, gold = list(index), np.asarray(gold, np.int64)
    return PairTask(f"{dataset}/{split}", queries, docs, gold, identical_pairs(queries, docs, gold))


def _scores_from_ranks(ranks: np.ndarray, top: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    out = {"mrr": mrr(ranks)}
    out.update(evaluate_ranking(top, gold, ks=(10,)))
    return out


def score_dense(task: PairTask, encoder: Encoder, batch_size: int = 128) -> dict[str, float]:
    """MRR over the whole corpus, and MRR@10 / nDCG@10 / recall@10, by exact cosine search
    over ``encoder``'s embeddings (``batch_size`` texts per encode call)."""
    q = encode_checked(encoder, task.queries, "query", batch_size)
    d = encode_checked(encoder, task.docs, "document", batch_size)
    # One more than 10: the query's own copy, if any, comes last and is dropped.
    _, top = exact_search(q, d, k=11, exclude=task.identical)
    ranks = rank_of_gold(q, d, task.gold, exclude=task.identical)
    return _scores_from_ranks(ranks, _without_identical(top, task), task.gold)


def score_bm25(task: PairTask) -> dict[str, float]:
    """The same metrics for the BM25 baseline (bm25s)."""
    index = BM25Index(task.docs)
    top, ranks = index.search_and_rank(task.queries, 11, task.gold, task.identical)
    return _scores_from_ranks(ranks, _without_identical(top, task), task.gold)


def _without_identical(top: np.ndarray, task: PairTask, k: int = 10) -> np.ndarray:
    """``top [Q, k + 1]`` cut to ``min(k, columns)`` columns with each query's excluded document
    moved last (dropped unless the corpus is that small; it is never a gold, so it adds nothing)."""
    keep = np.ones(top.shape, bool)
    rows, docs = task.identical[:, 0], task.identical[:, 1]
    keep[rows] = top[rows] != docs[:, None]
    width = min(k, top.shape[1])
    return np.stack([np.concatenate([row[m], row[~m]])[:width] for row, m in zip(top, keep)]) if len(top) else top
