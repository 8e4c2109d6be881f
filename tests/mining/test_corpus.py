"""Reading mining's inputs (cpt_jax/mining/corpus.py): normalisation and keys, corpus files in
chunks, the one text-only pass over the corpus, the pairs from a data-layer source."""

from __future__ import annotations

import numpy as np
import pytest

from cpt_jax.data.sources import PairedJsonlSource
from cpt_jax.mining import corpus
from tests.mining.conftest import write_jsonl


def test_normalisation_collapses_whitespace_strips_and_casefolds():
    assert corpus.normalize("  Open\tthe  FILE\n") == "open the file"
    assert corpus.normalize("Straße") == corpus.normalize("STRASSE")  # casefold, not lower
    assert corpus.text_key("def f():\n    return 1") == corpus.text_key("DEF F():  RETURN 1 ")
    assert corpus.text_key("return 1") != corpus.text_key("return 2")
    keys = corpus.text_keys(["a", "A ", "b"])
    assert keys.dtype == np.int64 and keys[0] == keys[1] != keys[2]


def test_a_jsonl_corpus_streams_in_chunks_and_skips_blank_texts(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": f"doc {i}"} if i % 4 else {"text": "  "} for i in range(10)])
    c = corpus.CorpusFile(path)
    assert [len(chunk) for chunk in c.chunks(3)] == [3, 3, 1]
    assert c.skipped_blank == 3
    assert corpus.texts_at(c, {0, 4, 6}, 2) == {0: "doc 1", 4: "doc 6", 6: "doc 9"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field 'text'"):
        list(corpus.CorpusFile(str(bad)).chunks(5))


def test_a_text_corpus_is_one_document_per_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("first line\n\nsecond line\r\nthird\n")
    assert list(corpus.CorpusFile(str(path)).chunks(10)) == [["first line", "second line", "third"]]
    with pytest.raises(FileNotFoundError, match="is not a file; give a .jsonl file"):
        corpus.CorpusFile(str(tmp_path / "missing.jsonl"))


def test_the_index_finds_positives_hashes_texts_and_refuses_an_empty_corpus(tmp_path):
    docs = corpus.TextList(["a", "b", "A", "b", "c"], "docs")
    index = corpus.index_corpus(docs, ["b", "A", "z"], chunk_size=2)
    assert index.num_docs == 5
    np.testing.assert_array_equal(index.positive_ids, [1, 2, -1])  # exact text, first occurrence
    np.testing.assert_array_equal(index.keys, corpus.text_keys(["a", "b", "A", "b", "c"]))
    assert index.sha256 == corpus.texts_sha256(["a", "b", "A", "b", "c"])
    assert corpus.index_corpus(corpus.TextList(["a", "b", "A", "b", "d"], "d"), [], 2).sha256 != index.sha256
    empty = write_jsonl(tmp_path / "e.jsonl", [{"text": " "}])
    with pytest.raises(ValueError, match=r"the corpus .*e.jsonl .* has no documents \(1 blank lines or texts skipped\)"):
        corpus.index_corpus(corpus.CorpusFile(empty), ["a"], 2)


def test_pairs_come_from_a_source_config_in_order(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"q": f"query {i}", "d": f"doc {i}"} for i in range(5)] + [{"q": "", "d": "x"}])
    pairs = corpus.read_pairs(PairedJsonlSource(paths=(path,), x_field="q", y_field="d"))
    assert pairs.queries == [f"query {i}" for i in range(5)] and pairs.positives[4] == "doc 4"
    assert pairs.drops == {"empty": 1} and pairs.name == "paired_jsonl"
    assert len(corpus.read_pairs(PairedJsonlSource(paths=(path,), x_field="q", y_field="d"), 2).queries) == 2
    only_empty = write_jsonl(tmp_path / "none.jsonl", [{"x": " ", "y": "y"}])
    with pytest.raises(ValueError, match=r"hold no \(x, y\) record \(drops: \{'empty': 1\}\)"):
        corpus.read_pairs(PairedJsonlSource(paths=(only_empty,)))
