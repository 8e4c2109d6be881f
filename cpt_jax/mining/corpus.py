"""What mining reads: the pairs (queries and their positives) and the corpus searched for negatives.

Pairs come from any source config of the data layer (data/sources/: PairedJsonlSource files, a
prepared dataset such as stdlib_code through PreparedPairsSource, ...), prepared if it must be,
read whole in shard order; x is the query, y its positive. The source's own drop counts (its
DROP_RULES names) are kept for the stats.

The corpus is a separate file streamed in chunks (never held whole): ``.jsonl`` holds one JSON
object per line with the text in a field (strict: a bad line is an error naming it); any other
file is one document per line. Blank documents are skipped (and counted); a document's id is its
position among the rest. Without a corpus file the pairs' positives are the corpus (in memory,
as the pairs are).

Equality of texts is the one rule of data/content.py (whitespace runs collapsed, ends stripped,
casefolded), which false-negative masking in the loss uses too; `text_key` is its 64-bit hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from cpt_jax.data.content import content_keys, normalize  # noqa: F401 - normalize: the rule, re-exported
from cpt_jax.data.sources import SourceConfig
from cpt_jax.eval.common import field, iter_jsonl


def text_key(text: str) -> int:
    """A signed 64-bit key of the text (data/content.py): equal for texts mining treats as equal."""
    return int(content_keys([text])[0])


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """``[len(texts)]`` int64 keys (text_key)."""
    return content_keys(texts)


def _update(digest: Any, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    digest.update(len(data).to_bytes(8, "little") + data)


def texts_sha256(texts: Sequence[str]) -> str:
    """SHA-256 of the texts in order (each as its UTF-8 length and bytes)."""
    digest = hashlib.sha256()
    for text in texts:
        _update(digest, text)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Pairs:
    """queries, positives: ``[Q]`` texts (x, y of each record, in order); drops: the source's drop
    counts by rule (DROP_RULES names); name: the source's name."""

    queries: list[str]
    positives: list[str]
    drops: dict[str, int]
    name: str


def read_pairs(config: SourceConfig, max_pairs: int | None = None) -> Pairs:
    """The first ``max_pairs`` (default: all) records of the source, shards in order."""
    prepare = getattr(config, "prepare", None)
    if callable(prepare):
        prepare()  # a built-in prepared dataset is built on demand, as training does
    source = config.build()
    records = itertools.chain.from_iterable(source.read_shard(i) for i in range(len(source.shards())))
    queries: list[str] = []
    positives: list[str] = []
    for record in itertools.islice(records, max_pairs):
        queries.append(record["x"])
        positives.append(record["y"])
    if not queries:
        raise ValueError(
            f"the pairs ({config!r}) hold no (x, y) record (drops: {source.stats.as_dict() or 'none'}); "
            "give a source with at least one pair."
        )
    return Pairs(queries, positives, source.stats.as_dict(), source.name)


class Corpus(Protocol):
    """The documents searched: in a fixed order, read in chunks as often as needed."""

    description: str

    def chunks(self, size: int) -> Iterator[list[str]]:
        """The documents in order, ``size`` at a time (the last chunk may be shorter)."""
        ...


class TextList:
    """Documents held in memory (the pairs' positives)."""

    def __init__(self, texts: Sequence[str], description: str) -> None:
        self.texts = list(texts)
        self.description = description

    def chunks(self, size: int) -> Iterator[list[str]]:
        for start in range(0, len(self.texts), size):
            yield self.texts[start : start + size]


class CorpusFile:
    """Documents of a .jsonl file (text in ``text_field``) or of a text file (one per line),
    streamed; blank documents are skipped and counted in ``skipped_blank`` by each full read."""

    def __init__(self, path: str, text_field: str = "text") -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"corpus {path} is not a file; give a .jsonl file (one object with a {text_field!r} field per "
                "line) or a text file (one document per line), or leave the corpus out to search the pairs' positives."
            )
        self.path = path
        self.text_field = text_field
        self.is_jsonl = path.endswith(".jsonl")
        self.description = f"{path} ({f'JSONL field {text_field!r}' if self.is_jsonl else 'one document per line'})"
        self.skipped_blank = 0

    def _texts(self) -> Iterator[str]:
        blank = 0
        if self.is_jsonl:
            texts = (field(obj, self.text_field, self.path, n) for n, obj in iter_jsonl(self.path))
        else:
            texts = _lines(self.path)
        for text in texts:
            if text.strip():
                yield text
            else:
                blank += 1
        self.skipped_blank = blank

    def chunks(self, size: int) -> Iterator[list[str]]:
        texts = self._texts()
        while chunk := list(itertools.islice(texts, size)):
            yield chunk


def _lines(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            yield line.rstrip("\r\n")


def texts_at(corpus: Corpus, ids: set[int], chunk_size: int) -> dict[int, str]:
    """``{id: text}`` of the documents at ``ids`` (one streamed pass over the corpus)."""
    wanted = np.array(sorted(ids), np.int64)
    out: dict[int, str] = {}
    start = 0
    for chunk in corpus.chunks(chunk_size):
        lo, hi = np.searchsorted(wanted, [start, start + len(chunk)])
        out.update((int(i), chunk[i - start]) for i in wanted[lo:hi])
        start += len(chunk)
    return out


@dataclasses.dataclass(frozen=True)
class CorpusIndex:
    """What one text-only pass over the corpus tells before anything is encoded.

    num_docs: D documents. sha256: of the documents in order (each as its UTF-8 length and bytes).
    keys: ``[D]`` int64 text_key of each document. positive_ids: ``[Q]`` int64, the first
    document whose text equals the query's positive exactly (its embedding is the positive's),
    -1 where none does.
    """

    num_docs: int
    sha256: str
    keys: np.ndarray
    positive_ids: np.ndarray


def index_corpus(corpus: Corpus, positives: Sequence[str], chunk_size: int) -> CorpusIndex:
    """Reads the corpus once (texts only); ValueError if it has no document."""
    rows_of: dict[str, list[int]] = {}
    for row, text in enumerate(positives):
        rows_of.setdefault(text, []).append(row)
    positive_ids = np.full(len(positives), -1, np.int64)
    digest, keys, num_docs = hashlib.sha256(), [], 0
    for chunk in corpus.chunks(chunk_size):
        for i, text in enumerate(chunk, num_docs):
            _update(digest, text)
            rows = rows_of.pop(text, None)  # the first occurrence only
            if rows is not None:
                positive_ids[rows] = i
        keys.append(text_keys(chunk))
        num_docs += len(chunk)
    if not num_docs:
        blank = getattr(corpus, "skipped_blank", 0)
        raise ValueError(
            f"the corpus {corpus.description} has no documents"
            + (f" ({blank} blank lines or texts skipped)" if blank else "")
            + "; give a corpus with at least one non-blank text, or leave it out to search the pairs' positives."
        )
    return CorpusIndex(num_docs, digest.hexdigest(), np.concatenate(keys), positive_ids)
