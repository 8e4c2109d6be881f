"""cpt-text pairs: two adjacent spans of one document (Neelakantan et al. 2022).

Span lengths are counted in WHITESPACE TOKENS ("words"). A document is read as one
stream of words and cut into

    x_0 | gap | y_0 | gap | x_1 | gap | y_1 | gap | ...

giving the pairs (x_0, y_0), (x_1, y_1), ...: every word is in at most one span, and `gap`
words (`gap_words`, 0 = truly adjacent) are skipped between consecutive spans. The length
of span i is drawn uniformly from [min_span_words, max_span_words] by a hash of
(seed, document id, i), so it is the same in every run, process and Python version. A
span's text is the original text of its words (inner newlines kept), stripped at both ends.
The last span of a document may be shorter than its drawn length if it still has
min_span_words words.

That is `layout="words"`. `layout="paragraphs"` is the stdlib_text builder's recipe instead
(`paragraph_spans`): blank-line paragraphs merged greedily into spans of min..max words (longer
paragraphs first cut into equal word chunks), and every two NEIGHBOURING spans form a pair, so
span i is the y of pair i-1 and the x of pair i; a document over max_document_chars is cut at the
last whitespace before that length; it is held whole (documents are docstrings and help topics).

Documents arrive in chunks (`SpanPairer.feed`), so a document is never held whole; only
the span being built is. Drop rules (counted once per case):
  empty                        the document has no word at all.
  too_short                    (words) a pair that cannot be completed at the end of a document
                               (the tail has fewer than min_span_words words for x or y); this
                               includes documents too short for any pair.
  near_duplicate               x and y whose sets of lowercased words have Jaccard similarity
                               >= max_jaccard (boilerplate, repeated lines).
  too_long_document_truncated  the document is longer than max_document_chars characters: it
                               is cut there (paragraphs: at the last whitespace before it) and the
                               rest is ignored.
The rule names are those of base.DROP_RULES.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator
from typing import ClassVar

from cpt_jax.data.sources.base import Record, RuleCounter
from cpt_jax.typecheck import SEED, Bound, at_least, between, check_field_types

_WORD = re.compile(r"\s*\S+")  # a word with the whitespace before it
_SPACE = re.compile(r"\s")
_CHUNK_CHARS = 1 << 16  # whole documents are fed in chunks of this size


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpanConfig:
    """Settings of the span-pair recipe; the text sources inherit these fields."""

    min_span_words: int = 32
    max_span_words: int = 128
    gap_words: int = 0  # words skipped between consecutive spans
    max_jaccard: float = 0.9  # x, y at or above this word-set Jaccard are near duplicates
    seed: int = 0  # span lengths are a function of (seed, document id, span index)
    max_document_chars: int = 1_000_000
    layout: str = "words"  # "words" (adjacent word spans) or "paragraphs" (see the module docstring)

    # Merged into the BOUNDS of the sources that inherit these fields (typecheck.declared_bounds).
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "min_span_words": at_least(1, "the shortest span, in words"),
        "max_span_words": at_least(1, "the longest span, in words; at least min_span_words"),
        "gap_words": at_least(0, "words skipped between spans; 0 for adjacent spans"),
        "max_jaccard": between(0.0, 1.0, "pairs at or above this word-set Jaccard are dropped", lo_open=True),
        "seed": SEED,
        "max_document_chars": at_least(1, "longer documents are cut to this many characters"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        name = type(self).__name__
        if self.min_span_words > self.max_span_words:
            raise ValueError(
                f"{name}: need 1 <= min_span_words <= max_span_words, got "
                f"{self.min_span_words} and {self.max_span_words}."
            )
        if self.layout not in ("words", "paragraphs"):
            raise ValueError(f"{name}.layout={self.layout!r} must be 'words' or 'paragraphs'.")


def span_length(config: SpanConfig, doc_id: str, index: int) -> int:
    """Length in words of span `index` of document `doc_id`, in [min, max] of `config`."""
    width = config.max_span_words - config.min_span_words + 1
    if width == 1:
        return config.min_span_words
    digest = hashlib.blake2b(f"{config.seed}\0{doc_id}\0{index}".encode(), digest_size=8).digest()
    return config.min_span_words + int.from_bytes(digest, "big") % width


def jaccard(x: str, y: str) -> float:
    """Jaccard similarity of the sets of lowercased whitespace tokens of x and y."""
    a, b = set(x.lower().split()), set(y.lower().split())
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class SpanPairer:
    """Cuts one document, fed in chunks, into adjacent-span pairs.

    `feed(chunk)` returns the pairs completed so far; `finish()` returns the last one (if
    any) and counts the document's drops. Once `full` is true the document has reached
    max_document_chars and later chunks are ignored, so callers may stop reading it.
    """

    def __init__(self, config: SpanConfig, doc_id: str, stats: RuleCounter):
        self._config = config
        self._doc_id = doc_id
        self._stats = stats
        self._chars = 0
        self.full = False
        self._carry: list[str] = []  # text after the last complete word (whitespace, partial word)
        self._any_word = False
        self._span_index = 0
        self._target = span_length(config, doc_id, 0)
        self._words: list[str] = []  # words of the span being built
        self._gap_left = 0
        self._x: str | None = None  # the finished x waiting for its y
        self._pairs: list[tuple[int, Record]] = []  # (pair number, counting dropped ones; pair)
        self._made = 0

    def feed(self, chunk: str) -> list[Record]:
        """Adds the next chunk of the document's text; returns the pairs it completed."""
        return [record for _, record in self.feed_numbered(chunk)]

    def finish(self) -> list[Record]:
        """Ends the document: returns its last pair, if complete, and counts drops."""
        return [record for _, record in self.finish_numbered()]

    def feed_numbered(self, chunk: str) -> list[tuple[int, Record]]:
        """`feed`, each pair with its number (dropped pairs counted)."""
        if self.full or not chunk:
            return []
        if self._chars + len(chunk) > self._config.max_document_chars:
            chunk = chunk[: self._config.max_document_chars - self._chars]
            self.full = True
            self._stats.count("too_long_document_truncated")
        self._chars += len(chunk)
        if _SPACE.search(chunk) is None:
            self._carry.append(chunk)  # no word boundary yet: defer joining (keeps this linear)
            return self.take_numbered()
        text = "".join(self._carry) + chunk
        words = _WORD.findall(text)
        if text[-1].isspace():
            self._carry = [text[len(text.rstrip()) :]]
        else:
            self._carry = [words.pop()]  # may continue in the next chunk
        for word in words:
            self._add_word(word)
        return self.take_numbered()

    def finish_numbered(self) -> list[tuple[int, Record]]:
        """`finish`, each pair with its number (dropped pairs counted)."""
        for word in _WORD.findall("".join(self._carry)):
            self._add_word(word)
        self._carry = []
        if not self._any_word:
            self._stats.count("empty")
        elif self._x is not None:  # x is done; y is being built (or in the gap before it)
            if len(self._words) >= self._config.min_span_words and self._gap_left == 0:
                self._emit_pair(self._x, _join(self._words))
            else:
                self._stats.count("too_short")
        elif self._words:  # an unfinished x
            self._stats.count("too_short")
        return self.take_numbered()

    def _add_word(self, word: str) -> None:
        self._any_word = True
        if self._gap_left:
            self._gap_left -= 1
            return
        self._words.append(word)
        if len(self._words) < self._target:
            return
        span = _join(self._words)
        self._words = []
        self._span_index += 1
        self._target = span_length(self._config, self._doc_id, self._span_index)
        self._gap_left = self._config.gap_words
        if self._x is None:
            self._x = span
        else:
            self._emit_pair(self._x, span)
            self._x = None

    def _emit_pair(self, x: str, y: str) -> None:
        if jaccard(x, y) >= self._config.max_jaccard:
            self._stats.count("near_duplicate")
        else:
            self._pairs.append((self._made, {"x": x, "y": y}))
        self._made += 1

    def take_numbered(self) -> list[tuple[int, Record]]:
        """The pairs completed and not yet taken, each with its number."""
        pairs, self._pairs = self._pairs, []
        return pairs


def _join(words: list[str]) -> str:
    return "".join(words).strip()


def span_pairs(document: str, doc_id: str, config: SpanConfig, stats: RuleCounter) -> Iterator[Record]:
    """The pairs of one whole document (see the module docstring); drops go to `stats`."""
    return (record for _, record in numbered_span_pairs(document, doc_id, config, stats))


def numbered_span_pairs(
    document: str, doc_id: str, config: SpanConfig, stats: RuleCounter
) -> Iterator[tuple[int, Record]]:
    """(i, pair i) for the kept pairs of one whole document; i counts dropped pairs too, so it
    names a pair stably (the stdlib builder's example keys)."""
    if config.layout == "paragraphs":
        yield from _paragraph_pairs(document, config, stats)
        return
    pairer = SpanPairer(config, doc_id, stats)
    for start in range(0, len(document), _CHUNK_CHARS):
        yield from pairer.feed_numbered(document[start : start + _CHUNK_CHARS])
        if pairer.full:
            break
    yield from pairer.finish_numbered()


def _paragraph_pairs(document: str, config: SpanConfig, stats: RuleCounter) -> Iterator[tuple[int, Record]]:
    if len(document) > config.max_document_chars:
        stats.count("too_long_document_truncated")
        head = document[: config.max_document_chars]
        cut = max(head.rfind(" "), head.rfind("\n"))
        document = head[:cut] if cut > 0 else head
    if not document.split():
        stats.count("empty")
        return
    spans = paragraph_spans(document, config.min_span_words, config.max_span_words)
    for i, (x, y) in enumerate(zip(spans, spans[1:])):
        if jaccard(x, y) >= config.max_jaccard:
            stats.count("near_duplicate")
        else:
            yield i, {"x": x, "y": y}


def paragraph_spans(text: str, min_words: int, max_words: int) -> list[str]:
    """Splits a document into consecutive spans of roughly ``min_words``..``max_words``.

    Paragraphs (blank-line separated) are merged greedily until a span holds at least
    ``min_words``; paragraphs longer than ``max_words`` are first cut into equal word chunks. A
    tail shorter than ``min_words`` is merged into the previous span when it fits, else kept only
    if at least half of ``min_words``.
    """
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        if not words:
            continue
        if len(words) <= max_words:
            pieces.append(paragraph.strip("\n").rstrip())
            continue
        n_chunks = -(-len(words) // max_words)
        size = -(-len(words) // n_chunks)
        pieces.extend(" ".join(words[i : i + size]) for i in range(0, len(words), size))
    spans: list[str] = []
    current: list[str] = []
    current_words = 0
    for piece in pieces:
        n = len(piece.split())
        if current and (current_words >= min_words or current_words + n > max_words):
            spans.append("\n\n".join(current))
            current, current_words = [], 0
        current.append(piece)
        current_words += n
    if current_words >= min_words:
        spans.append("\n\n".join(current))
    elif spans and len(spans[-1].split()) + current_words <= max_words:
        spans[-1] = "\n\n".join([spans[-1], *current])
    elif current_words >= min_words // 2:
        spans.append("\n\n".join(current))
    return spans
