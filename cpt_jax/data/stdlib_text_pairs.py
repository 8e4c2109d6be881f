"""Text pairs mined from the running interpreter's standard library: neighbouring spans of one
document (long module and class docstrings, and the ``pydoc_data`` help topics), the cpt-text
setting of unlabelled pairs from the same document.

Sources, splits and the skip rules are shared with the code pairs (stdlib_corpus.py); every pair
left out or cut is counted under one of ``stdlib_corpus.SKIP_RULES``.
"""

from __future__ import annotations

import ast
import collections
import re
from collections.abc import Iterable, Iterator

from cpt_jax.data.stdlib_corpus import (
    MAX_DOCUMENT_CHARS,
    MAX_SPAN_JACCARD,
    Pair,
    SourceFile,
    check_split,
    checked_pairs,
    iter_sources,
    module_split,
    parse_sources,
    walk_defs,
)

SPAN_MIN_WORDS = 40
SPAN_MAX_WORDS = 120
# pydoc topics get the module name "pydoc-topic:<topic>": the hyphen cannot clash with an
# importable module, and it contains no dot, so each topic is its own split unit.
PYDOC_TOPIC_PREFIX = "pydoc-topic:"


def split_spans(
    text: str, min_words: int = SPAN_MIN_WORDS, max_words: int = SPAN_MAX_WORDS
) -> list[str]:
    """Splits a document into consecutive spans of roughly ``min_words``..``max_words``.

    Paragraphs (blank-line separated) are merged greedily until a span holds at
    least ``min_words``; paragraphs longer than ``max_words`` are first cut into
    equal word chunks. A tail shorter than ``min_words`` is merged into the
    previous span when it fits, else kept only if at least half of ``min_words``.
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


def _near_identical(a: str, b: str) -> bool:
    wa, wb = set(a.lower().split()), set(b.lower().split())
    if not wa or not wb:
        return True
    return len(wa & wb) / len(wa | wb) > MAX_SPAN_JACCARD


def document_pairs(
    key_prefix: str, module: str, document: str, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """Yields ``(key, {"x": span_i, "y": span_i+1, "module"})`` over :func:`split_spans`.

    A document over ``MAX_DOCUMENT_CHARS`` is cut first; pairs whose spans are
    near-identical (word-set Jaccard > 0.8) are dropped. Both are counted in ``skipped``.
    """
    skipped = collections.Counter() if skipped is None else skipped
    if len(document) > MAX_DOCUMENT_CHARS:
        skipped["truncated_document"] += 1
        head = document[:MAX_DOCUMENT_CHARS]
        cut = max(head.rfind(" "), head.rfind("\n"))
        document = head[:cut] if cut > 0 else head
    spans = split_spans(document)
    for i, (x, y) in enumerate(zip(spans, spans[1:])):
        if _near_identical(x, y):
            skipped["near_identical_spans"] += 1
        else:
            yield f"{key_prefix}:{i}", {"x": x, "y": y, "module": module}


def _pydoc_topics() -> dict[str, str]:
    from pydoc_data import topics  # stdlib; imported lazily, it is ~1 MB of text

    return topics.topics


def text_pairs_from_sources(
    sources: Iterable[SourceFile],
    documents: Iterable[tuple[str, str]] = (),
    skipped: collections.Counter[str] | None = None,
) -> Iterator[tuple[str, Pair]]:
    """The :func:`checked_pairs` among the :func:`document_pairs` of the module and class
    docstrings of the sources that parse, then of ``documents`` (``(module, text)``)."""
    skipped = collections.Counter() if skipped is None else skipped

    def mined() -> Iterator[tuple[str, Pair]]:
        for module in parse_sources(sources, skipped):
            module_doc = ast.get_docstring(module.tree, clean=True)
            if module_doc:
                yield from document_pairs(f"{module.name}:<module>", module.name, module_doc, skipped)
            for qualname, node in walk_defs(module.tree):
                if isinstance(node, ast.ClassDef):
                    class_doc = ast.get_docstring(node, clean=True)
                    if class_doc:
                        # The line number keeps keys unique when a class is defined in two branches.
                        key = f"{module.name}:{qualname}:{node.lineno}"
                        yield from document_pairs(key, module.name, class_doc, skipped)
        for name, document in documents:
            yield from document_pairs(name, name, document, skipped)

    return checked_pairs(mined(), skipped)


def iter_text_pairs(
    split: str, seed: int = 0, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """Yields neighbouring-span pairs of ``split``'s documents.

    Documents are module and class docstrings of the split's modules, then the
    ``pydoc_data.topics`` help topics (module ``"pydoc-topic:<topic>"``, split
    by hashing that name).
    """
    check_split(split)
    skipped = collections.Counter() if skipped is None else skipped
    topics = [
        (name, document)
        for topic, document in sorted(_pydoc_topics().items())
        if module_split(name := f"{PYDOC_TOPIC_PREFIX}{topic}", seed) == split
    ]
    return text_pairs_from_sources(iter_sources(split, seed, skipped), topics, skipped)
