"""DropStats, the shared shard reader (resume and counting) and the source registry."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from cpt_jax.data import sources
from cpt_jax.data.sources.base import DropStats, RuleCounter, ShardedSource, as_str_tuple


def test_drop_stats_counts_keeps_and_merges():
    a, b = DropStats(), DropStats()
    a.count("empty")
    a.count("too_short", 3)
    a.keep(2)
    b.count("empty", 2)
    b.keep()
    a.merge(b)
    assert a.as_dict() == {"empty": 3, "too_short": 3}
    assert a.kept == 3
    assert b.as_dict() == {"empty": 2}
    with pytest.raises(ValueError, match="non-negative"):
        a.count("empty", -1)
    with pytest.raises(ValueError, match="'emtpy' is not in DROP_RULES"):
        a.count("emtpy")  # one vocabulary: a misspelt rule is an error, not a new counter


def test_drop_stats_is_thread_safe():
    stats = DropStats()

    def work():
        for _ in range(2000):
            stats.count("empty")
            stats.keep()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.as_dict() == {"empty": 8000} and stats.kept == 8000


def _reader(shard: str, stats: RuleCounter) -> Iterator[dict]:
    """Shard "n": pairs 0..n-1, with one "odd" drop before every odd pair."""
    for i in range(int(shard)):
        if i % 2:
            stats.count("malformed_record")
        yield {"x": f"{shard}:{i}", "y": str(i)}


def test_start_skips_pairs_and_their_drops():
    source = ShardedSource("toy", ["3", "6"], _reader)
    full = list(source.read_shard(1))
    assert [r["x"] for r in full] == [f"6:{i}" for i in range(6)]
    assert source.stats.as_dict() == {"malformed_record": 3} and source.stats.kept == 6

    resumed = ShardedSource("toy", ["3", "6"], _reader)
    assert list(resumed.read_shard(1, start=2)) == full[2:]
    # Pairs 0, 1 and the drop before pair 1 belong to the earlier read; 3 and 5 are counted.
    assert resumed.stats.as_dict() == {"malformed_record": 2} and resumed.stats.kept == 4
    assert list(resumed.read_shard(0, start=10)) == []


def test_read_shard_checks_arguments_eagerly():
    source = ShardedSource("toy", ["1"], _reader)
    with pytest.raises(IndexError, match=r"shard index 1 is outside \[0, 1\)"):
        source.read_shard(1)
    with pytest.raises(ValueError, match="start=-1"):
        source.read_shard(0, start=-1)
    with pytest.raises(ValueError, match="no shards"):
        ShardedSource("empty", [], _reader)


def test_as_str_tuple():
    assert as_str_tuple(None, "paths", "a/*.txt") == ("a/*.txt",)
    assert as_str_tuple(None, "paths", ["a", "b"]) == ("a", "b")
    with pytest.raises(TypeError, match=r"NoneType.paths=\[1\] must be a string or a tuple of strings"):
        as_str_tuple(None, "paths", [1])


def test_registry_builds_each_kind_and_names_unknown_kinds(tmp_path):
    (tmp_path / "a.txt").write_text("one two three")
    (tmp_path / "p.jsonl").write_text('{"x": "q", "y": "d"}\n')
    (tmp_path / "m.py").write_text("def f():\n    'Doc of f here.'\n    return 1\n")
    assert sources.make_source("text_files", paths=str(tmp_path / "*.txt")).shards() == [str(tmp_path / "a.txt")]
    assert sources.make_source("paired_jsonl", paths=(str(tmp_path / "*.jsonl"),)).name == "paired_jsonl"
    assert len(sources.make_source("code_files", paths=(str(tmp_path / "*"),)).shards()) == 1
    assert set(sources.SOURCE_KINDS) == {"text_files", "tfds_text", "code_files", "paired_jsonl", "prepared_pairs"}
    with pytest.raises(ValueError, match="Unknown source kind 'text'"):
        sources.make_source("text", paths=("x",))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: sources.TextFilesSource(paths=("a",), min_span_words="3"), "min_span_words='3' has type str"),
        (lambda: sources.TextFilesSource(paths=("a",), format="html"), "format='html'"),
        (lambda: sources.TextFilesSource(paths=("a",), min_span_words=9, max_span_words=8), "min_span_words <= max"),
        (lambda: sources.CodeFilesSource(paths=("a",), languages=("cobol",)), "unknown \\['cobol'\\]"),
        (lambda: sources.PairedJsonlSource(paths=("a",), x_field="t", y_field="t"), "both 't'"),
        (lambda: sources.TfdsTextSource(dataset="c4/en:3.0.1", version="3.0.1"), "already names a version"),
        (lambda: sources.TfdsTextSource(dataset="c4/en", split="train[:10]"), "plain split name"),
    ],
)
def test_configs_reject_bad_fields(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_importing_sources_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, cpt_jax.data.sources; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "False\n"
