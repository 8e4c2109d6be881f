"""PairedJsonlSource: fields, negatives, drop rules, gzip, resume."""

from __future__ import annotations

import gzip
import json
import pathlib

import pytest

from cpt_jax.data.sources import PairedJsonlSource


def _write_jsonl(path: pathlib.Path, rows: list) -> None:
    text = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


def test_pairs_with_negatives_and_drop_rules(tmp_path: pathlib.Path):
    _write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"q": "query one", "d": "doc one", "neg": ["wrong a", "  ", "doc one ", "wrong b"]},
            {"q": "query two", "d": "doc two", "neg": "single wrong"},
            {"q": "query three", "d": "doc three", "neg": None},
            {"q": "query four", "d": "doc four"},
            {"q": "query five", "d": " "},
            {"q": "query six", "d": ["not", "a", "string"]},
            {"q": "query seven", "d": "doc seven", "neg": [1]},
            {"q": "query eight"},
            "oops",
        ],
    )
    config = PairedJsonlSource(paths=(str(tmp_path / "*.jsonl"),), x_field="q", y_field="d", negatives_field="neg")
    source = config.build()
    assert list(source.read_shard(0)) == [
        {"x": "query one", "y": "doc one", "negatives": ["wrong a", "wrong b"]},
        {"x": "query two", "y": "doc two", "negatives": ["single wrong"]},
        {"x": "query three", "y": "doc three", "negatives": []},
        {"x": "query four", "y": "doc four", "negatives": []},
    ]
    assert source.stats.as_dict() == {
        "empty": 1,
        "empty_negative": 1,
        "malformed_json": 1,
        "malformed_record": 2,
        "missing_field": 1,
        "negative_equals_positive": 1,
    }
    assert source.stats.kept == 4


def test_without_negatives_field_records_are_plain_pairs(tmp_path: pathlib.Path):
    _write_jsonl(tmp_path / "a.jsonl.gz", [{"x": "a", "y": "b", "negatives": ["c"]}])
    source = PairedJsonlSource(paths=(str(tmp_path / "a.jsonl.gz"),)).build()
    assert list(source.read_shard(0)) == [{"x": "a", "y": "b"}]


def test_lone_surrogate_escapes_are_repaired(tmp_path: pathlib.Path):
    (tmp_path / "a.jsonl").write_text('{"x": "bad \\udc80 text", "y": "fine"}\n')
    source = PairedJsonlSource(paths=(str(tmp_path / "a.jsonl"),)).build()
    assert list(source.read_shard(0)) == [{"x": "bad \ufffd text", "y": "fine"}]
    assert source.stats.as_dict() == {"invalid_utf8": 1}


def test_wrong_field_names_fail_clearly(tmp_path: pathlib.Path):
    _write_jsonl(tmp_path / "a.jsonl", [{"query": "a", "positive": "b"}] * 3)
    source = PairedJsonlSource(paths=(str(tmp_path / "a.jsonl"),)).build()
    with pytest.raises(ValueError, match=r"none of the first 3 JSON objects has the field\(s\) \['x', 'y'\]"):
        list(source.read_shard(0))


def test_shards_determinism_and_resume(tmp_path: pathlib.Path):
    for name in ("b", "a"):
        _write_jsonl(tmp_path / f"{name}.jsonl", [{"x": f"{name}{i}", "y": f"y{i}"} for i in range(50)])
    source = PairedJsonlSource(paths=(str(tmp_path / "*.jsonl"),)).build()
    assert source.shards() == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    full = list(source.read_shard(1))
    assert [r["x"] for r in full] == [f"b{i}" for i in range(50)]
    assert list(source.read_shard(1)) == full
    assert list(source.read_shard(1, start=17)) == full[17:]
