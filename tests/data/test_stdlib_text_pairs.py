"""Tests for cpt_jax.data.stdlib_text_pairs."""

from __future__ import annotations

import collections
import textwrap

import pytest
from pydoc_data import topics as pydoc_topics

from cpt_jax.data import stdlib_corpus as corpus
from cpt_jax.data import stdlib_text_pairs as text_pairs
from cpt_jax.data.sources.spans import paragraph_spans


def test_split_spans_sizes_and_order():
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(30)) for i in range(7)]
    long_paragraph = " ".join(f"long{j}" for j in range(300))
    spans = paragraph_spans("\n\n".join(paragraphs + [long_paragraph]), 40, 120)
    words = [s.split() for s in spans]
    assert all(20 <= len(w) <= 120 for w in words)
    flat = [w for ws in words for w in ws]
    assert flat == " ".join(paragraphs + [long_paragraph]).split()  # order kept, nothing lost


def test_document_pairs_are_neighbours_and_drop_duplicates():
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(50)) for i in range(4)]
    pairs = [p for _, p in text_pairs.document_pairs("doc", "m", "\n\n".join(paragraphs))]
    assert [(p["x"], p["y"]) for p in pairs] == list(zip(paragraphs, paragraphs[1:]))
    repeated = "\n\n".join([paragraphs[0]] * 3)
    assert list(text_pairs.document_pairs("doc", "m", repeated)) == []


def test_real_text_pairs_are_neighbouring_topic_spans():
    topics = pydoc_topics.topics
    pairs = [p for _, p in text_pairs.iter_text_pairs("test")]
    topic_pairs = [p for p in pairs if p["module"].startswith("pydoc-topic:")]
    assert topic_pairs and len(topic_pairs) < len(pairs)
    for pair in pairs:
        assert corpus.module_split(pair["module"]) == "test"
    for pair in topic_pairs:
        doc = " ".join(topics[pair["module"].removeprefix("pydoc-topic:")].split())
        x, y = " ".join(pair["x"].split()), " ".join(pair["y"].split())
        assert doc.index(x) + len(x) + 1 == doc.index(y)


def test_a_ten_megabyte_document_is_cut_and_counted():
    paragraphs = (" ".join(f"<{i}:{j}>" for j in range(50)) for i in range(30_000))
    document = "\n\n".join(paragraphs)
    assert len(document) > 10_000_000
    skipped: collections.Counter[str] = collections.Counter()
    pairs = [p for _, p in text_pairs.text_pairs_from_sources([], [("pydoc-topic:huge", document)], skipped)]
    assert skipped == {"too_long_document_truncated": 1}
    head = document[: corpus.MAX_DOCUMENT_CHARS]
    assert head.startswith(pairs[0]["x"])
    assert pairs[-1]["y"] in head and head.index(pairs[-1]["y"]) + len(pairs[-1]["y"]) > len(head) - 1000
    assert all(word.endswith(">") for word in pairs[-1]["y"].split())  # cut between words, not inside one


def test_class_docstrings_defined_twice_get_distinct_keys():
    doc = " ".join(f"word{i}" for i in range(50))
    other = " ".join(f"other{i}" for i in range(50))
    source = textwrap.dedent(
        f'''
        import sys
        if sys.platform == "win32":
            class Path:
                """{doc}

                {other}"""
        else:
            class Path:
                """{other}

                {doc}"""
        '''
    ).encode()
    keys = [k for k, _ in text_pairs.text_pairs_from_sources([("m", source)])]
    assert keys == ["m:Path:4:0", "m:Path:9:0"]


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="Unknown split"):
        next(text_pairs.iter_text_pairs("dev"))
