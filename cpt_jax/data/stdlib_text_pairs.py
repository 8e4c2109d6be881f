"""Text pairs mined from the running interpreter's standard library: neighbouring spans of one
document (long module and class docstrings, and the ``pydoc_data`` help topics), the cpt-text
setting of unlabelled pairs from the same document.

Sources, splits and the split-level pair checks are shared with the code pairs (stdlib_corpus.py);
the spans come from the one span pairer (sources/spans.py, layout "paragraphs"). Every pair left
out or cut is counted under a rule of sources/base.DROP_RULES.
"""

from __future__ import annotations

import ast
import collections
import math
from collections.abc import Iterable, Iterator

from cpt_jax.data import parallel
from cpt_jax.data.stdlib_corpus import (
    MAX_DOCUMENT_CHARS,
    MAX_SPAN_JACCARD,
    Pair,
    SourceFile,
    check_split,
    checked_pairs,
    iter_sources,
    module_split,
    parse_source,
)
from cpt_jax.data.sources import spans
from cpt_jax.data.sources.base import CounterSink
from cpt_jax.data.sources.code_pairs import walk_defs
from cpt_jax.data.sources.spans import SpanConfig

# The stdlib's span recipe, through the one span pairer (sources/spans.py): paragraph spans of
# 40..120 words, neighbours paired; a pair is dropped when its word-set Jaccard EXCEEDS 0.8 (the
# pairer drops at >= max_jaccard, hence the next float above 0.8); documents cut at 200,000 chars.
SPANS = SpanConfig(
    layout="paragraphs",
    min_span_words=40,
    max_span_words=120,
    max_jaccard=math.nextafter(MAX_SPAN_JACCARD, 1.0),
    max_document_chars=MAX_DOCUMENT_CHARS,
)
# pydoc topics get the module name "pydoc-topic:<topic>": the hyphen cannot clash with an
# importable module, and it contains no dot, so each topic is its own split unit.
PYDOC_TOPIC_PREFIX = "pydoc-topic:"


def document_pairs(
    key_prefix: str, module: str, document: str, skipped: collections.Counter[str] | None = None
) -> Iterator[tuple[str, Pair]]:
    """Yields ``(key, {"x": span_i, "y": span_i+1, "module"})`` of one document (SPANS); what is
    cut or dropped is counted in ``skipped``."""
    skipped = collections.Counter() if skipped is None else skipped
    for i, pair in spans.numbered_span_pairs(document, key_prefix, SPANS, CounterSink(skipped)):
        yield f"{key_prefix}:{i}", {"x": pair["x"], "y": pair["y"], "module": module}


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
        for pairs, counts in parallel.ordered_map(_docstring_pairs, sources):
            skipped.update(counts)
            yield from pairs
        for name, document in documents:
            yield from document_pairs(name, name, document, skipped)

    return checked_pairs(mined(), skipped)


def _docstring_pairs(source: SourceFile) -> tuple[list[tuple[str, Pair]], collections.Counter[str]]:
    """The span pairs of one source's module and class docstrings, and what it left out (run in
    a build worker: parallel.py)."""
    skipped: collections.Counter[str] = collections.Counter()
    module = parse_source(*source, skipped)
    if module is None:
        return [], skipped
    pairs = []
    module_doc = ast.get_docstring(module.tree, clean=True)
    if module_doc:
        pairs += document_pairs(f"{module.name}:<module>", module.name, module_doc, skipped)
    for qualname, node in walk_defs(module.tree):
        if isinstance(node, ast.ClassDef):
            class_doc = ast.get_docstring(node, clean=True)
            if class_doc:
                # The line number keeps keys unique when a class is defined in two branches.
                key = f"{module.name}:{qualname}:{node.lineno}"
                pairs += document_pairs(key, module.name, class_doc, skipped)
    return pairs, skipped


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
