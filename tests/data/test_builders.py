"""Tests for cpt_jax.data.builders (uses the session-prepared data_dir)."""

from __future__ import annotations

import collections
import pathlib

import pytest
import tensorflow_datasets as tfds

from cpt_jax.data import builders, stdlib_corpus, stdlib_text_pairs


@pytest.mark.parametrize("name", builders.DATASETS)
def test_prepared_array_record_splits_read_back(data_dir: str, name: str):
    builder = builders.prepare(name, data_dir)
    assert builder.info.file_format.value == "array_record"
    assert str(builder.version) == "1.1.0"
    assert set(builder.info.splits) == set(stdlib_corpus.SPLITS)
    tops = {}
    for split in stdlib_corpus.SPLITS:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        assert len(source) == builder.info.splits[split].num_examples > 0
        records = [source[i] for i in range(len(source))]
        assert all(set(r) == {"x", "y", "module"} for r in records)
        modules = {r["module"].decode() for r in records}
        assert {stdlib_corpus.module_split(m) for m in modules} == {split}
        tops[split] = {m.split(".")[0] for m in modules}
    assert not tops["train"] & tops["validation"]
    assert not tops["train"] & tops["test"]
    assert not tops["validation"] & tops["test"]


def test_prepared_counts_match_corpus(data_dir: str):
    source = tfds.data_source("stdlib_code", split="test", data_dir=data_dir, download=False)
    expected = {pair["x"] for _, pair in stdlib_corpus.iter_code_pairs("test")}
    assert {source[i]["x"].decode() for i in range(len(source))} == expected


def test_prepare_is_idempotent(data_dir: str):
    info_file = pathlib.Path(data_dir, "stdlib_text", "1.1.0", "dataset_info.json")
    before = info_file.stat().st_mtime_ns
    builders.prepare("stdlib_text", data_dir)
    assert info_file.stat().st_mtime_ns == before


def test_prepare_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset"):
        builders.prepare("stdlib_nope", "/nonexistent")


@pytest.mark.parametrize(
    "name,mine", [("stdlib_code", stdlib_corpus.iter_code_pairs), ("stdlib_text", stdlib_text_pairs.iter_text_pairs)]
)
def test_drop_counts_are_stored_per_split_with_every_rule(data_dir: str, name: str, mine):
    totals = builders.drop_counts(name, data_dir)
    assert list(totals) == list(stdlib_corpus.BUILD_RULES)
    skipped: collections.Counter[str] = collections.Counter()
    collections.deque(mine("test", skipped=skipped), maxlen=0)  # the smallest split, mined again
    assert builders.drop_counts(name, data_dir, "test") == {**dict.fromkeys(stdlib_corpus.BUILD_RULES, 0), **skipped}
    assert totals == {rule: sum(builders.drop_counts(name, data_dir, s)[rule] for s in stdlib_corpus.SPLITS)
                      for rule in totals}


def test_drop_counts_of_an_unprepared_dataset_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"builders.prepare\('stdlib_code'"):
        builders.drop_counts("stdlib_code", str(tmp_path))


def test_a_build_from_bad_sources_completes_and_reports_what_it_left_out(tmp_path, monkeypatch, capsys):
    good = b'def double(x):\n    """Return twice the value of x."""\n    return 2 * x\n'
    bad = [
        ("ten_mb", b"#" * 10_000_000),
        ("bad_utf8", b'def f(x):\n    """Doc with a \xff byte."""\n    return x\n'),
        ("syntax", b"def f(:\n"),
        ("blank", b'def f():\n    """  """\n    return 1\n'),
        ("surrogate", b'def f():\n    """A lone \\ud800 surrogate here."""\n    return 1\n'),
        ("copy", good),  # another module, the same pair
    ]
    sources = {"train": [("good", good), *bad], "validation": [("val", good.replace(b"x", b"y"))],
               "test": [("tst", good.replace(b"x", b"z"))]}
    monkeypatch.setattr(stdlib_corpus, "iter_sources", lambda split, seed=0, skipped=None: iter(sources[split]))
    builders.prepare("stdlib_code", str(tmp_path))
    log = capsys.readouterr().out
    assert "train: kept 1; file_too_large=1, invalid_utf8=1, unparsable_source=1, empty=1, " \
        "unencodable_text=1, duplicate_pair=1" in log
    assert "validation: kept 1; nothing" in log
    train = tfds.data_source("stdlib_code", split="train", data_dir=str(tmp_path), download=False)
    assert [r["module"].decode() for r in train] == ["good"]
    counts = builders.drop_counts("stdlib_code", str(tmp_path), "train")
    assert {rule: n for rule, n in counts.items() if n} == {
        "file_too_large": 1, "invalid_utf8": 1, "unparsable_source": 1, "empty": 1,
        "unencodable_text": 1, "duplicate_pair": 1,
    }
