"""mine(config): hard negatives for every pair, written as PairedJsonl with its stats.

Each step fails before the next one costs anything:
  1. the model's directory is checked (model.check_model: nothing loaded yet);
  2. the pairs are read and the corpus is read once, texts only (corpus.index_corpus): an empty
     corpus, or a separate corpus holding none of the pairs' positives, stops here;
  3. the model is loaded;
  4. the queries are encoded (cached per chunk), the corpus is encoded chunk by chunk (cached) and
     searched as it arrives (search.py); positives missing from a separate corpus are encoded;
  5. the rules pick the negatives (filters.py), one more pass over the corpus fetches their
     texts, and the output and its stats are written (output.py).
Deterministic: the search breaks ties by corpus position and every rule is a function of the
scores and texts. An interrupted run reruns into the same cache and encodes only what is missing,
so its output is the output of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cpt_jax.mining import corpus as corpora
from cpt_jax.mining.cache import ChunkCache, embed_chunks
from cpt_jax.mining.config import MineConfig
from cpt_jax.mining.filters import MINING_RULES, Selection, select
from cpt_jax.mining.model import LoadedModel, check_model, load_model
from cpt_jax.mining.output import record_lines, write
from cpt_jax.mining.search import Candidates, search

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class MineResult:
    """Where the output and its stats went, and the stats."""

    output: str
    stats_path: str
    stats: dict[str, Any]


def mine(config: MineConfig, model: LoadedModel | None = None, log: Log = print) -> MineResult:
    """Mines ``config`` (see the module docstring); ``model`` replaces loading ``config.model``
    (a caller that holds an encoder already, or a test)."""
    if model is None:
        check_model(config.model)
    pairs = corpora.read_pairs(config.pairs, config.max_queries)
    corpus = _open_corpus(config, pairs)
    index = corpora.index_corpus(corpus, pairs.positives, config.chunk_size)
    positive_keys = corpora.text_keys(pairs.positives)
    in_corpus = (index.positive_ids >= 0) | np.isin(positive_keys, index.keys)
    if config.corpus is not None and not in_corpus.any():
        raise ValueError(
            f"none of the {len(pairs.positives)} positives of the pairs ({pairs.name}) is a document of the corpus "
            f"{corpus.description} (compared after normalisation); mine against the corpus the pairs were drawn from, "
            "so that no positive can come back as its own query's negative: check --corpus and --corpus_field, or "
            "leave --corpus out to search the pairs' positives."
        )
    if model is None:
        model = load_model(config.model)
    log(f"mining {len(pairs.queries)} pairs of {pairs.name} against {index.num_docs} documents of "
        f"{corpus.description} with {model.name}")
    run = _Run(config, model, log)
    queries = run.embed("queries", pairs.queries, "query")
    query_keys = np.stack([positive_keys, corpora.text_keys(pairs.queries)], axis=1)
    candidates = search(
        queries, query_keys, index.positive_ids, run.corpus_chunks(corpus, index), config.max_rank, config.query_block
    )
    positive_scores = run.positive_scores(queries, candidates, pairs.positives)
    selection = select(candidates, positive_scores, index.keys, config.num_negatives, config.min_rank,
                       config.margin, config.max_score)
    texts = corpora.texts_at(corpus, {int(i) for i in selection.ids[selection.ids >= 0]}, config.chunk_size)
    stats = _stats(config, model, pairs, corpus, index, in_corpus, positive_scores, selection, run)
    path = write(config.output, record_lines(pairs.queries, pairs.positives, positive_scores, selection, texts), stats)
    return MineResult(config.output, path, stats)


def _open_corpus(config: MineConfig, pairs: corpora.Pairs) -> corpora.Corpus:
    if config.corpus is None:
        return corpora.TextList(pairs.positives, f"the positives of {pairs.name}")
    return corpora.CorpusFile(config.corpus, config.corpus_field)


class _Run:
    """The caches and encoding of one mining run (one ChunkCache per role)."""

    def __init__(self, config: MineConfig, model: LoadedModel, log: Log) -> None:
        self.config, self.model, self.log = config, model, log
        self.caches: dict[str, ChunkCache] = {}

    def cache(self, role: str, side: str, sha256: str, count: int) -> ChunkCache:
        manifest = {"model": self.model.fingerprint, "side": side, "texts": {"sha256": sha256, "count": count},
                    "chunk_size": self.config.chunk_size}
        cache = self.caches[role] = ChunkCache(self.config.cache_dir, role, manifest)
        note = cache.open()
        if note:
            self.log(note)
        return cache

    def embed(self, role: str, texts: list[str], side: str) -> np.ndarray:
        """``[len(texts), d]`` embeddings of texts held in memory, through the cache."""
        cache = self.cache(role, side, corpora.texts_sha256(texts), len(texts))
        size = self.config.chunk_size
        chunks = (texts[start : start + size] for start in range(0, len(texts), size))
        out = np.concatenate(list(embed_chunks(self.model.encoder, chunks, cache, side, self.config.batch_size)))
        self.log(f"{role}: {len(texts)} texts ({cache.reused} chunks cached, {cache.encoded} encoded)")
        return out

    def corpus_chunks(self, corpus: corpora.Corpus, index: corpora.CorpusIndex) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(embeddings [C, d], keys [C])`` per corpus chunk, encoded or read from the cache."""
        cache = self.cache("corpus", "document", index.sha256, index.num_docs)
        total = -(-index.num_docs // self.config.chunk_size)
        start = 0
        chunks = embed_chunks(self.model.encoder, corpus.chunks(self.config.chunk_size), cache, "document",
                              self.config.batch_size)
        for number, emb in enumerate(chunks, 1):
            yield emb, index.keys[start : start + emb.shape[0]]
            start += emb.shape[0]
            self.log(f"corpus: chunk {number}/{total} searched ({cache.reused} cached, {cache.encoded} encoded)")

    def positive_scores(self, queries: np.ndarray, candidates: Candidates, positives: list[str]) -> np.ndarray:
        """``[Q]`` query-positive scores: from the corpus where the positive is in it, else encoded."""
        scores = candidates.positive_scores.copy()
        rows = np.flatnonzero(np.isnan(scores))
        if rows.size:
            texts = [positives[r] for r in rows]
            emb = self.embed("positives", texts, "document")
            scores[rows] = np.einsum("qd,qd->q", queries[rows], emb)
        return scores


def _stats(
    config: MineConfig, model: LoadedModel, pairs: corpora.Pairs, corpus: corpora.Corpus,
    index: corpora.CorpusIndex, in_corpus: np.ndarray, positive_scores: np.ndarray, selection: Selection, run: _Run,
) -> dict[str, Any]:
    per_query = selection.per_query
    kept = selection.scores[selection.ids >= 0]
    return {
        "output": config.output,
        "model": {"name": model.name, "fingerprint": model.fingerprint},
        "pairs": pairs.name,
        "source_drops": pairs.drops,
        "corpus": {"source": corpus.description, "documents": index.num_docs, "sha256": index.sha256,
                   "skipped_blank": getattr(corpus, "skipped_blank", 0)},
        "queries": {
            "total": len(pairs.queries),
            "full": int((per_query == config.num_negatives).sum()),
            "short": int(((per_query > 0) & (per_query < config.num_negatives)).sum()),
            "without_negatives": int((per_query == 0).sum()),
            "positive_not_in_corpus": int((~in_corpus).sum()),
        },
        "rules": config.rules(),
        "normalization": "whitespace runs collapsed to one space, ends stripped, casefolded (str.casefold)",
        "counts": selection.counts,
        "rule_descriptions": MINING_RULES,
        "negatives_written": int(per_query.sum()),
        "mean_scores": {"positive": float(np.mean(positive_scores)), "negative": float(np.mean(kept)) if kept.size else None},
        "cache": {role: {"directory": c.directory, "chunks_reused": c.reused, "chunks_encoded": c.encoded}
                  for role, c in run.caches.items()},
    }
