"""The span-pair recipe: adjacency, gaps, deterministic lengths, drop rules, streaming."""

from __future__ import annotations

import random

import pytest

from cpt_jax.data.sources.base import DropStats
from cpt_jax.data.sources.spans import SpanConfig, SpanPairer, jaccard, span_length, span_pairs


def _words(start: int, stop: int) -> str:
    return " ".join(f"w{i}" for i in range(start, stop))


def _pairs(document: str, config: SpanConfig, doc_id: str = "d") -> tuple[list[dict], dict]:
    stats = DropStats()
    return list(span_pairs(document, doc_id, config, stats)), stats.as_dict()


def test_adjacent_spans_of_fixed_length():
    pairs, dropped = _pairs(_words(0, 40), SpanConfig(min_span_words=10, max_span_words=10))
    assert pairs == [
        {"x": _words(0, 10), "y": _words(10, 20)},
        {"x": _words(20, 30), "y": _words(30, 40)},
    ]
    assert dropped == {}


def test_gap_words_are_skipped_between_spans():
    pairs, _ = _pairs(_words(0, 50), SpanConfig(min_span_words=10, max_span_words=10, gap_words=2))
    assert pairs == [
        {"x": _words(0, 10), "y": _words(12, 22)},
        {"x": _words(24, 34), "y": _words(36, 46)},
    ]


def test_random_lengths_are_in_range_and_stable():
    config = SpanConfig(min_span_words=3, max_span_words=9, seed=7)
    lengths = [span_length(config, "doc", i) for i in range(200)]
    assert set(lengths) == set(range(3, 10))
    assert lengths == [span_length(config, "doc", i) for i in range(200)]
    assert [span_length(config, "other", i) for i in range(20)] != lengths[:20]
    pairs, _ = _pairs(_words(0, 400), config, "doc")
    assert [len(p["x"].split()) for p in pairs[:3]] == [lengths[0], lengths[2], lengths[4]]
    assert [len(p["y"].split()) for p in pairs[:3]] == [lengths[1], lengths[3], lengths[5]]


def test_span_lengths_are_pinned():
    """Lengths come from blake2b, not Python's hash or RNG: a change here would silently
    change every corpus built with these settings."""
    config = SpanConfig(min_span_words=10, max_span_words=100, seed=0)
    assert [span_length(config, "a.txt#0", i) for i in range(4)] == [65, 52, 58, 12]


def test_empty_and_whitespace_documents():
    config = SpanConfig(min_span_words=2, max_span_words=2)
    assert _pairs("", config) == ([], {"empty": 1})
    assert _pairs(" \n\t\n ", config) == ([], {"empty": 1})


def test_too_short_tail_and_document():
    config = SpanConfig(min_span_words=10, max_span_words=10)
    assert _pairs(_words(0, 15), config) == ([], {"too_short": 1})
    pairs, dropped = _pairs(_words(0, 25), config)
    assert len(pairs) == 1 and dropped == {"too_short": 1}
    pairs, dropped = _pairs(_words(0, 40), config)  # ends exactly at a pair boundary
    assert len(pairs) == 2 and dropped == {}


def test_last_y_may_be_shorter_than_drawn_but_not_below_min():
    config = SpanConfig(min_span_words=5, max_span_words=50, seed=3)
    first = span_length(config, "d", 0)
    pairs, dropped = _pairs(_words(0, first + 5), config)
    assert pairs == [{"x": _words(0, first), "y": _words(first, first + 5)}] and dropped == {}
    pairs, dropped = _pairs(_words(0, first + 4), config)
    assert pairs == [] and dropped == {"too_short": 1}


def test_near_duplicate_spans_are_dropped():
    config = SpanConfig(min_span_words=6, max_span_words=6)
    pairs, dropped = _pairs("a b c d e f\nA B C D E F", config)
    assert pairs == [] and dropped == {"near_duplicate": 1}
    assert jaccard("a b c", "A  B\nc") == 1.0
    # Just under the threshold: 9 shared words of 11 distinct (0.82 < 0.9) is kept.
    doc = " ".join("abcdefghij") + " " + " ".join("abcdefghik")
    pairs, _ = _pairs(doc, SpanConfig(min_span_words=10, max_span_words=10))
    assert len(pairs) == 1


def test_span_text_keeps_inner_newlines():
    doc = "one two\n\nthree four\nfive six"
    pairs, _ = _pairs(doc, SpanConfig(min_span_words=3, max_span_words=3))
    assert pairs == [{"x": "one two\n\nthree", "y": "four\nfive six"}]


def test_huge_document_is_truncated_and_counted():
    doc = " ".join(f"w{i:07d}" for i in range(1_250_000))  # 10 MB, one document
    config = SpanConfig(min_span_words=10, max_span_words=10, max_document_chars=1000)
    pairs, dropped = _pairs(doc, config)
    # 1000 chars = 111 words and a cut "w": 5 pairs of 10 + 10 words, then an x with a 2-word y.
    assert dropped == {"too_long_document_truncated": 1, "too_short": 1}
    assert len(pairs) == 5 and pairs[-1]["y"].split()[-1] == "w0000099"


def test_chunked_feeding_equals_whole_document():
    rng = random.Random(0)
    doc = "".join(rng.choice(["alpha ", "beta\n", "gamma  ", "\n\n", "delta", "é "]) for _ in range(3000))
    config = SpanConfig(min_span_words=4, max_span_words=17, gap_words=1, max_document_chars=9000)
    whole, whole_dropped = _pairs(doc, config)
    for _ in range(5):
        stats = DropStats()
        pairer = SpanPairer(config, "d", stats)
        chunked, i = [], 0
        while i < len(doc):
            n = rng.randint(1, 40)
            chunked += pairer.feed(doc[i : i + n])
            i += n
        chunked += pairer.finish()
        assert chunked == whole
        assert stats.as_dict() == whole_dropped


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"min_span_words": 0}, r"SpanConfig.min_span_words=0 is out of range: must be >= 1"),
        ({"min_span_words": 9, "max_span_words": 8}, "1 <= min_span_words <= max_span_words, got 9 and 8"),
        ({"gap_words": -1}, "gap_words=-1"),
        ({"max_jaccard": 0.0}, "max_jaccard=0.0"),
        ({"max_document_chars": 0}, "max_document_chars=0"),
    ],
)
def test_span_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpanConfig(**kwargs)
