"""MineConfig: what one hard-negative mining run reads, how it selects, and where it writes.

Frozen and checked when built: a bad field raises an error naming ``MineConfig.<field>`` (or
``ModelSpec.<field>``) and what to pass instead, before anything is read or encoded.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

from cpt_jax.data.sources import SourceConfig
from cpt_jax.mining.model import ModelSpec
from cpt_jax.typecheck import Bound, at_least, between, check_field_types


def default_cache_dir(output: str) -> str:
    """``<output without its extension>.cache``: beside the output, so a rerun finds it."""
    return os.path.splitext(output)[0] + ".cache"


@dataclasses.dataclass(frozen=True, kw_only=True)
class MineConfig:
    """One mining run.

    model:          the encoder (ModelSpec: a cpt-jax run or a sentence-transformers directory).
    pairs:          the (x, y) pairs as a source config (data/sources/), e.g.
                    PairedJsonlSource(paths=("pairs.jsonl",)) or
                    PreparedPairsSource(dataset="stdlib_code", data_dir="outputs/tfds", split="train");
                    x is the query, y its positive.
    output:         the PairedJsonl file written (its stats go to mining/output.stats_path(output)).
    corpus:         the documents to search: a .jsonl file (a text field per object) or a text file
                    (one document per line); None searches the pairs' own positives.
    corpus_field:   the JSONL field holding a document's text.
    cache_dir:      where corpus and query embeddings are cached per chunk ("" = default_cache_dir).
    num_negatives:  hard negatives written per query (fewer when fewer pass the rules).
    min_rank, max_rank: the rank window, 1-based, both included, counted after the documents equal
                    to the positive or the query are removed; the search keeps the top max_rank.
    margin:         keep a candidate only if score < positive_score * (1 - margin) (and below the
                    positive's score when that is <= 0); None turns the rule off. 0.05 is
                    NV-Retriever's TopK-PercPos at 95%.
    max_score:      keep a candidate only if score < max_score (cosine); None turns the rule off.
    chunk_size:     corpus documents encoded, cached and searched per step (the memory bound).
    query_block:    queries scored against a chunk at once (the score block is query_block x chunk).
    batch_size:     texts per encode call.
    max_queries:    mine only the first N pairs (None: all).
    """

    model: ModelSpec
    pairs: SourceConfig
    output: str
    corpus: str | None = None
    corpus_field: str = "text"
    cache_dir: str = ""
    num_negatives: int = 8
    min_rank: int = 1
    max_rank: int = 100
    margin: float | None = 0.05
    max_score: float | None = None
    chunk_size: int = 8192
    query_block: int = 1024
    batch_size: int = 128
    max_queries: int | None = None

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_negatives": at_least(1, "hard negatives written per query"),
        "min_rank": at_least(1, "ranks are 1-based"),
        "max_rank": at_least(1, "the deepest rank searched; ranks are 1-based"),
        "margin": between(0.0, 1.0, "a fraction of the positive's score", hi_open=True),
        "max_score": between(-1.0, 1.0, "a cosine similarity"),
        "chunk_size": at_least(1, "corpus documents per step"),
        "query_block": at_least(1, "queries scored per step"),
        "batch_size": at_least(1, "texts per encode call"),
        "max_queries": at_least(1, "pairs mined; None for all"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        if not self.output.strip():
            raise ValueError("MineConfig.output is empty; name the PairedJsonl file to write, e.g. mined.jsonl.")
        if self.min_rank > self.max_rank:
            raise ValueError(
                f"MineConfig.min_rank={self.min_rank} > max_rank={self.max_rank}: the rank window is empty; "
                "give min_rank <= max_rank, e.g. 10 and 100."
            )
        window = self.max_rank - self.min_rank + 1
        if self.num_negatives > window:
            raise ValueError(
                f"MineConfig.num_negatives={self.num_negatives} but the rank window {self.min_rank}..{self.max_rank} "
                f"holds only {window} ranks; widen the window (raise max_rank) or ask for fewer negatives."
            )
        if self.corpus is not None and not self.corpus.strip():
            raise ValueError("MineConfig.corpus is empty; give a file, or None to search the pairs' positives.")
        if not self.corpus_field:
            raise ValueError("MineConfig.corpus_field is empty; name the JSONL field holding the text, e.g. 'text'.")
        if not self.cache_dir:
            object.__setattr__(self, "cache_dir", default_cache_dir(self.output))
        if os.path.abspath(self.cache_dir) == os.path.abspath(self.output):
            raise ValueError(f"MineConfig.cache_dir and output are both {self.output!r}; give two paths.")

    def rules(self) -> dict[str, object]:
        """The selection settings, as recorded in the stats."""
        names = ("num_negatives", "min_rank", "max_rank", "margin", "max_score")
        return {name: getattr(self, name) for name in names}
