"""TextFilesSource: globs, gzip, text / Markdown / JSONL documents, drop rules, resume."""

from __future__ import annotations

import gzip
import json
import pathlib

import pytest

from cpt_jax.data.sources import TextFilesSource
from cpt_jax.data.sources.base import DropStats
from cpt_jax.data.sources.spans import SpanConfig, span_pairs

SPANS = {"min_span_words": 5, "max_span_words": 5}


def _words(start: int, stop: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(start, stop))


def _read_all(source) -> list[dict]:
    return [r for i in range(len(source.shards())) for r in source.read_shard(i)]


def test_globs_gzip_and_one_shard_per_file(tmp_path: pathlib.Path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "b.txt").write_text(_words(0, 20, "b"))
    (tmp_path / "sub" / "deeper" / "a.txt").write_text(_words(0, 20, "a"))
    with gzip.open(tmp_path / "sub" / "c.txt.gz", "wt") as f:
        f.write(_words(0, 20, "c"))
    (tmp_path / "sub" / "skip.md").write_text("not matched")
    source = TextFilesSource(paths=(str(tmp_path / "**" / "*.txt"), str(tmp_path / "**" / "*.gz")), **SPANS).build()
    assert source.shards() == sorted(
        [str(tmp_path / "b.txt"), str(tmp_path / "sub" / "deeper" / "a.txt"), str(tmp_path / "sub" / "c.txt.gz")]
    )
    by_shard = [list(source.read_shard(i)) for i in range(3)]
    for shard, pairs in zip(source.shards(), by_shard):
        prefix = pathlib.Path(shard).name[0]
        assert pairs == [
            {"x": _words(0, 5, prefix), "y": _words(5, 10, prefix)},
            {"x": _words(10, 15, prefix), "y": _words(15, 20, prefix)},
        ]
    assert source.stats.kept == 6 and source.stats.as_dict() == {}


def test_glob_without_match_is_named(tmp_path: pathlib.Path):
    (tmp_path / "a.txt").write_text("x")
    config = TextFilesSource(paths=(str(tmp_path / "*.txt"), str(tmp_path / "*.text")))
    with pytest.raises(ValueError, match=r"the glob '.*\*\.text' matches no file"):
        config.build()


def test_plain_text_file_is_one_streamed_document(tmp_path: pathlib.Path):
    # Paragraph breaks do not end the document; a span may cross them.
    (tmp_path / "a.txt").write_text(_words(0, 3) + "\n\n" + _words(3, 10) + "\n")
    source = TextFilesSource(paths=(str(tmp_path / "a.txt"),), **SPANS).build()
    assert list(source.read_shard(0)) == [{"x": "w0 w1 w2\n\nw3 w4", "y": _words(5, 10)}]


def test_blank_line_documents(tmp_path: pathlib.Path):
    (tmp_path / "a.txt").write_text(_words(0, 10) + "\n \n\n" + _words(10, 17) + "\n\n" + _words(20, 30, "v"))
    source = TextFilesSource(paths=(str(tmp_path / "a.txt"),), documents="blank_line", **SPANS).build()
    assert list(source.read_shard(0)) == [
        {"x": _words(0, 5), "y": _words(5, 10)},
        {"x": _words(20, 25, "v"), "y": _words(25, 30, "v")},
    ]
    assert source.stats.as_dict() == {"too_short": 1}  # the 7-word block


def test_markdown_drops_front_matter_and_code_fences(tmp_path: pathlib.Path):
    text = "\n".join(
        [
            "---",
            "title: secret front matter",
            "---",
            "# Heading one two",
            "",
            "prose three four five",
            "```python",
            "code = inside_fence",
            "```",
            "  ~~~~",
            "tilde fenced ``` not closing",
            "~~~~",
            "more prose six seven",
        ]
    )
    (tmp_path / "a.md").write_text(text)
    source = TextFilesSource(paths=(str(tmp_path / "a.md"),), format="markdown", **SPANS).build()
    assert list(source.read_shard(0)) == [
        {"x": "# Heading one two\n\nprose", "y": "three four five\nmore prose"},
    ]
    assert source.stats.as_dict() == {"too_short": 1}


def test_markdown_unclosed_front_matter_is_text(tmp_path: pathlib.Path):
    (tmp_path / "a.md").write_text("---\n" + _words(0, 9) + "\n")
    source = TextFilesSource(paths=(str(tmp_path / "a.md"),), format="markdown", **SPANS).build()
    assert list(source.read_shard(0)) == [{"x": "---\nw0 w1 w2 w3", "y": _words(4, 9)}]


def test_jsonl_documents_and_their_drop_rules(tmp_path: pathlib.Path):
    lines = [
        json.dumps({"body": _words(0, 10), "id": 1}),
        "{not json",
        json.dumps({"id": 2}),
        json.dumps({"body": 7}),
        json.dumps({"body": "   "}),
        "",
        json.dumps([1, 2]),
        json.dumps({"body": _words(0, 3)}),
        json.dumps({"body": "x" * 200}),
        json.dumps({"body": _words(10, 20)}),
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines))
    source = TextFilesSource(
        paths=(str(tmp_path / "*.jsonl"),), format="jsonl", field="body", max_line_chars=150, **SPANS
    ).build()
    assert list(source.read_shard(0)) == [
        {"x": _words(0, 5), "y": _words(5, 10)},
        {"x": _words(10, 15), "y": _words(15, 20)},
    ]
    assert source.stats.as_dict() == {
        "empty": 1,
        "line_too_long": 1,
        "malformed_json": 2,
        "malformed_record": 1,
        "missing_field": 1,
        "too_short": 1,
    }


def test_jsonl_wrong_field_is_a_clear_error(tmp_path: pathlib.Path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"content": "a b", "url": "u"}) + "\n")
    source = TextFilesSource(paths=(str(tmp_path / "a.jsonl"),), format="jsonl").build()
    message = r"has the field\(s\) \['text'\]; the first object has keys \['content', 'url'\]"
    with pytest.raises(ValueError, match=message):
        list(source.read_shard(0))


def test_invalid_utf8_is_replaced_and_counted(tmp_path: pathlib.Path):
    (tmp_path / "a.txt").write_bytes(b"w0 w1 bad\xff\xfe w3 w4\nw5 w6 w7 w8 w9\n")
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "w0 w1 w2 w3 w4 w5 \\udc80 w7 w8 w9"}\n')
    text = TextFilesSource(paths=(str(tmp_path / "a.txt"),), **SPANS).build()
    assert list(text.read_shard(0)) == [{"x": "w0 w1 bad\ufffd\ufffd w3 w4", "y": _words(5, 10)}]
    assert text.stats.as_dict() == {"invalid_utf8": 1}
    jsonl = TextFilesSource(paths=(str(tmp_path / "b.jsonl"),), format="jsonl", **SPANS).build()
    assert list(jsonl.read_shard(0)) == [{"x": _words(0, 5), "y": "w5 \ufffd w7 w8 w9"}]
    assert jsonl.stats.as_dict() == {"invalid_utf8": 1}


def test_corrupt_gzip_ends_the_shard_and_is_counted(tmp_path: pathlib.Path):
    payload = gzip.compress("".join(_words(i, i + 10) + "\n" for i in range(0, 20000, 10)).encode())
    (tmp_path / "a.txt.gz").write_bytes(payload[: len(payload) // 2])
    source = TextFilesSource(paths=(str(tmp_path / "a.txt.gz"),), **SPANS).build()
    pairs = list(source.read_shard(0))
    assert pairs and pairs[0] == {"x": _words(0, 5), "y": _words(5, 10)}
    assert source.stats.as_dict()["corrupt_gzip"] == 1


def test_ten_megabyte_single_line_file_is_truncated(tmp_path: pathlib.Path):
    with open(tmp_path / "big.txt", "w") as f:
        for block in range(100):
            f.write(" ".join(f"w{block:04d}{i:04d}" for i in range(10_000)) + " ")  # no newline at all
    assert (tmp_path / "big.txt").stat().st_size == 10_000_000
    source = TextFilesSource(paths=(str(tmp_path / "big.txt"),), max_document_chars=200_000, **SPANS).build()
    pairs = list(source.read_shard(0))
    assert source.stats.as_dict() == {"too_long_document_truncated": 1}
    assert len(pairs) == 200_000 // 10 // 10  # 10-char words, 10 words a pair
    assert pairs[-1]["y"].split()[-1] == "w00019999"


def test_reads_are_deterministic_and_resume_at_any_pair(tmp_path: pathlib.Path):
    (tmp_path / "a.txt").write_text(_words(0, 3000))
    config = TextFilesSource(paths=(str(tmp_path / "a.txt"),), min_span_words=3, max_span_words=40, gap_words=1)
    source = config.build()
    full = list(source.read_shard(0))
    assert len(full) > 20 and list(config.build().read_shard(0)) == full
    assert full == list(span_pairs(_words(0, 3000), f"{tmp_path / 'a.txt'}#0", config, DropStats()))
    for k in (0, 1, 7, len(full) - 1, len(full), len(full) + 3):
        assert list(source.read_shard(0, start=k)) == full[k:]
    assert SpanConfig(min_span_words=3, max_span_words=40) != config  # span fields are inherited
