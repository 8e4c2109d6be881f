"""Held-out retrieval tasks built from a prepared pair dataset, scored for any system.

A pair split (x_i, y_i) becomes a search task: x_i is the query, the de-duplicated y's are
the corpus, and y_i is the one relevant document. For stdlib_code that is code search
(docstring -> function); for stdlib_text, text search (span -> the next span).
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
    """queries: [Q] texts; docs: [D] texts; gold: int [Q], index of each query's document."""

    name: str
    queries: list[str]
    docs: list[str]
    gold: np.ndarray


def load_pair_task(dataset: str, split: str, data_dir: str, limit: int | None = None) -> PairTask:
    """The (x -> y) search task of one split, in the split's fixed order."""
    queries, docs, gold, index = [], [], [], {}
    for i, record in enumerate(iter_split_texts(dataset, split, data_dir)):
        if limit is not None and i >= limit:
            break
        queries.append(record["x"])
        gold.append(index.setdefault(record["y"], len(index)))
    docs = list(index)
    return PairTask(f"{dataset}/{split}", queries, docs, np.asarray(gold, np.int64))


def _scores_from_ranks(ranks: np.ndarray, top: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    out = {"mrr": mrr(ranks)}
    out.update(evaluate_ranking(top, gold, ks=(10,)))
    return out


def score_dense(task: PairTask, encoder: Encoder, batch_size: int = 128) -> dict[str, float]:
    """MRR over the whole corpus, and MRR@10 / nDCG@10 / recall@10, by exact cosine search
    over ``encoder``'s embeddings (``batch_size`` texts per encode call)."""
    q = encode_checked(encoder, task.queries, "query", batch_size)
    d = encode_checked(encoder, task.docs, "document", batch_size)
    _, top = exact_search(q, d, k=10)
    return _scores_from_ranks(rank_of_gold(q, d, task.gold), top, task.gold)


def score_bm25(task: PairTask) -> dict[str, float]:
    """The same metrics for the BM25 baseline (bm25s)."""
    index = BM25Index(task.docs)
    return _scores_from_ranks(index.rank_of_gold(task.queries, task.gold), index.search(task.queries, 10), task.gold)
