"""Tests for cpt_jax.data.builders (uses the session-prepared data_dir)."""

from __future__ import annotations

import pathlib

import pytest
import tensorflow_datasets as tfds

from cpt_jax.data import builders, stdlib_corpus


@pytest.mark.parametrize("name", builders.DATASETS)
def test_prepared_array_record_splits_read_back(data_dir: str, name: str):
    builder = builders.prepare(name, data_dir)
    assert builder.info.file_format.value == "array_record"
    assert str(builder.version) == "1.0.0"
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
    info_file = pathlib.Path(data_dir, "stdlib_text", "1.0.0", "dataset_info.json")
    before = info_file.stat().st_mtime_ns
    builders.prepare("stdlib_text", data_dir)
    assert info_file.stat().st_mtime_ns == before


def test_prepare_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset"):
        builders.prepare("stdlib_nope", "/nonexistent")
