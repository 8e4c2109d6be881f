"""BEIR-format retrieval: nDCG@10, MRR@10 and Recall@100 by exact chunked search, and BM25.

A BEIR folder holds ``corpus.jsonl`` ({"_id", "title", "text"}), ``queries.jsonl``
({"_id", "text"}) and ``qrels/<split>.tsv`` (a header line, then
``query-id<TAB>corpus-id<TAB>score`` with integer grades). Rules, as BEIR's
EvaluateRetrieval with pytrec_eval:
  * document text is ``title + " " + text`` when the title is non-empty, else ``text``;
    queries are encoded with side="query", documents with side="document";
  * a grade > 0 is relevant (0 lines are judged non-relevant); nDCG has linear gains and
    the ideal DCG of all the query's judged grades (see :mod:`cpt_jax.eval.retrieval`);
  * only queries with at least one relevant document are encoded and averaged;
  * ignore_identical_ids: a document whose id equals the query's id is never returned for
    that query (in ArguAna or Quora the query itself sits in the corpus). It still counts
    as relevant if judged so, exactly as when BEIR drops it from the run;
  * the same qrels pair on two lines: the later grade wins (as BEIR's loader);
  * qrels naming a query missing from queries.jsonl are dropped; qrels naming a document
    missing from the corpus keep counting (recall denominator, ideal DCG) but can never be
    retrieved, as trec_eval scores a run against all judgements. Both are counted and
    reported in a warning, or raised as an error with ``strict=True``.

Memory: the corpus is streamed twice. A validation pass reads only ids, so a malformed
line fails before any encoding; the search pass encodes ``chunk_size`` documents at a time
and merges them into a running top-100 per query. Peak memory is O(Q * 100 +
chunk_size * d + query_block * chunk_size) plus the positions of judged documents: never
the whole corpus, its embeddings, or a query x corpus matrix. (BM25 needs the whole corpus
in its index.)
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator

import numpy as np

from cpt_jax.eval.bm25 import BM25Index
from cpt_jax.eval.common import Encoder, encode_checked, field, iter_jsonl, require_file
from cpt_jax.eval.retrieval import TopKAccumulator, mrr_at_k, ndcg_at_k, qrels_to_index, recall_at_k, top_k

K = 100  # the deepest cutoff of any reported metric
QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclasses.dataclass(frozen=True)
class BeirTask:
    """One folder and qrels split, resolved to corpus positions (no corpus text is held).

    query_ids, query_texts: ``[Q]`` queries with a relevant document, in queries.jsonl order.
    qrels: ``{query row: {corpus position (negative: not in the corpus): grade}}``.
    identical: ``[E, 2]`` int64 (query row, corpus position) pairs with equal ids.
    num_docs: documents in corpus.jsonl.
    """

    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[int, dict[int, float]]
    identical: np.ndarray
    num_docs: int


def _corpus_records(folder: str) -> Iterator[tuple[str, int, str, str]]:
    """``(path, line number, id, document text)`` per corpus line, validated."""
    path = require_file(os.path.join(folder, "corpus.jsonl"), 'the BEIR corpus, one {"_id", "title", "text"} per line')
    for line_no, obj in iter_jsonl(path):
        doc_id = str(field(obj, "_id", path, line_no, (str, int)))
        text = field(obj, "text", path, line_no)
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise ValueError(f"{path}:{line_no}: field 'title' must be a string, got {title!r}.")
        yield path, line_no, doc_id, f"{title} {text}" if title else text


def iter_corpus(folder: str, chunk_size: int) -> Iterator[list[str]]:
    """Document texts of ``corpus.jsonl`` in file order, ``chunk_size`` at a time."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    chunk: list[str] = []
    for _, _, _, text in _corpus_records(folder):
        chunk.append(text)
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _read_queries(folder: str) -> dict[str, str]:
    path = require_file(os.path.join(folder, "queries.jsonl"), 'the BEIR queries, one {"_id", "text"} per line')
    queries: dict[str, str] = {}
    for line_no, obj in iter_jsonl(path):
        qid = str(field(obj, "_id", path, line_no, (str, int)))
        if qid in queries:
            raise ValueError(f"{path}:{line_no}: query id {qid!r} appears twice; ids must be unique.")
        queries[qid] = field(obj, "text", path, line_no)
    return queries


def read_qrels(folder: str, split: str) -> dict[str, dict[str, int]]:
    """``{query id: {doc id: grade}}`` from ``qrels/<split>.tsv``, every line validated."""
    path = os.path.join(folder, "qrels", f"{split}.tsv")
    if not os.path.isfile(path):
        qrels_dir = os.path.join(folder, "qrels")
        have = sorted(f[:-4] for f in os.listdir(qrels_dir) if f.endswith(".tsv")) if os.path.isdir(qrels_dir) else []
        raise FileNotFoundError(f"Missing {path}: the relevance judgements of split {split!r}; splits here: {have}.")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").split("\t")
            if line_no == 1:
                if tuple(p.strip().lower() for p in parts) != QRELS_HEADER:
                    header = "\t".join(QRELS_HEADER)
                    raise ValueError(f"{path}:1: expected the header {header!r}, got {line.strip()!r}.")
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise ValueError(
                    f"{path}:{line_no}: expected 3 tab-separated fields, got {len(parts)}: {line.strip()!r}."
                )
            try:
                grade = int(parts[2])
            except ValueError:
                raise ValueError(f"{path}:{line_no}: score {parts[2]!r} is not an integer grade.") from None
            qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def _problem(message: str, strict: bool) -> None:
    if strict:
        raise ValueError(message)
    warnings.warn(message, stacklevel=3)


def load_beir(folder: str, split: str = "test", strict: bool = False) -> BeirTask:
    """Read queries and qrels, validate every corpus line, resolve judged ids to positions."""
    queries = _read_queries(folder)
    qrels = read_qrels(folder, split)
    unknown = [q for q in qrels if q not in queries]
    if unknown:
        _problem(
            f"{folder}: {len(unknown)} of {len(qrels)} query ids in qrels/{split}.tsv are not in queries.jsonl "
            f"(e.g. {unknown[:3]}); their judgements are ignored.",
            strict,
        )
    query_ids = [q for q in queries if any(g > 0 for g in qrels.get(q, {}).values())]
    if not query_ids:
        raise ValueError(f"{folder}: no query in queries.jsonl has a document with score > 0 in qrels/{split}.tsv.")
    judged = {d for q in query_ids for d in qrels[q]}
    wanted = judged | set(query_ids)
    positions: dict[str, int] = {}
    lines: dict[str, int] = {}
    num_docs = 0
    for path, line_no, doc_id, _ in _corpus_records(folder):
        if doc_id in wanted:
            if doc_id in positions:
                raise ValueError(
                    f"{path}:{line_no}: document id {doc_id!r} also at line {lines[doc_id]}; ids must be unique."
                )
            positions[doc_id], lines[doc_id] = num_docs, line_no
        num_docs += 1
    if num_docs == 0:
        raise ValueError(f"{folder}/corpus.jsonl has no documents.")
    missing = sorted(judged - positions.keys())
    if missing:
        _problem(
            f"{folder}: {len(missing)} of {len(judged)} judged document ids in qrels/{split}.tsv are not in "
            f"corpus.jsonl (e.g. {missing[:3]}); they count as relevant but can never be retrieved.",
            strict,
        )
    identical = [(row, positions[q]) for row, q in enumerate(query_ids) if q in positions]
    return BeirTask(
        query_ids=query_ids,
        query_texts=[queries[q] for q in query_ids],
        qrels=qrels_to_index({q: qrels[q] for q in query_ids}, query_ids, positions),
        identical=np.asarray(identical, dtype=np.int64).reshape(-1, 2),
        num_docs=num_docs,
    )


def score_ranking(task: BeirTask, scores: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    """nDCG@10, MRR@10, Recall@100 of a top-k result ``(scores, ids) [Q, k']``, plus the sizes.

    Excluded entries (score -inf) and the columns missing when the corpus is smaller than
    100 become position ``num_docs``, which no judgement names.
    """
    ranked = np.full((ids.shape[0], K), task.num_docs, dtype=np.int64)
    ranked[:, : ids.shape[1]] = np.where(np.isneginf(scores), task.num_docs, ids)
    return {
        "ndcg@10": ndcg_at_k(ranked, task.qrels, 10),
        "mrr@10": mrr_at_k(ranked, task.qrels, 10),
        "recall@100": recall_at_k(ranked, task.qrels, 100),
        "num_queries": len(task.query_ids),
        "num_docs": task.num_docs,
    }


def evaluate_beir(
    encoder: Encoder,
    folder: str,
    split: str = "test",
    chunk_size: int = 10_000,
    batch_size: int = 128,
    query_block: int = 1024,
    strict: bool = False,
) -> dict[str, float]:
    """Dense retrieval metrics of ``encoder`` on one BEIR folder, by exact search.

    Args:
      encoder: has ``encode(texts, side, batch_size) -> float32 [n, d]``, L2-normalised rows.
      folder: a BEIR dataset folder (see module docstring).
      split: the qrels file, ``qrels/<split>.tsv``.
      chunk_size: documents read, encoded and scored per step (bounds memory).
      batch_size: passed to ``encoder.encode``.
      query_block: queries scored against a chunk per step.
      strict: raise, rather than warn, on qrels ids missing from queries or corpus.

    Returns:
      ``{"ndcg@10", "mrr@10", "recall@100", "num_queries", "num_docs"}``.
    """
    task = load_beir(folder, split, strict)
    acc = TopKAccumulator(encode_checked(encoder, task.query_texts, "query", batch_size), K, query_block)
    for texts in iter_corpus(folder, chunk_size):
        acc.add(encode_checked(encoder, texts, "document", batch_size), task.identical)
    return score_ranking(task, *acc.result())


def evaluate_beir_bm25(folder: str, split: str = "test", strict: bool = False) -> dict[str, float]:
    """The same metrics for BM25 (:mod:`cpt_jax.eval.bm25`) over the same documents and rules."""
    task = load_beir(folder, split, strict)
    index = BM25Index([text for chunk in iter_corpus(folder, 10_000) for text in chunk])
    excluded = dict(task.identical.tolist())
    k = min(K, task.num_docs)
    scores = np.empty((len(task.query_texts), k), dtype=np.float32)
    ids = np.empty((len(task.query_texts), k), dtype=np.int64)
    for row, query in enumerate(task.query_texts):
        s = index.scores(query)
        if row in excluded:
            s = s.copy()
            s[excluded[row]] = -np.inf
        scores[row], ids[row] = (a[0] for a in top_k(s[None, :], k))
    return score_ranking(task, scores, ids)
