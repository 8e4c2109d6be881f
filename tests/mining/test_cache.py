"""The chunk cache (cpt_jax/mining/cache.py): keyed by model, texts and settings; a changed one goes
elsewhere and is reported; a damaged one is an error naming the file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cpt_jax.mining.cache import ChunkCache, changed_fields, embed_chunks
from tests.eval.fakes import HashEncoder

MANIFEST = {"model": {"kind": "fake", "step": 3}, "side": "document", "texts": {"sha256": "ab", "count": 5},
            "chunk_size": 2}


def _with(**changes) -> dict:
    out = json.loads(json.dumps(MANIFEST))
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = out
        for part in path:
            node = node[part]
        node[last] = value
    return out


def test_every_setting_changes_the_key():
    base = ChunkCache("c", "corpus", MANIFEST)
    variants = [_with(model__step=4), _with(side="query"), _with(texts__sha256="cd"), _with(chunk_size=3)]
    keys = {ChunkCache("c", "corpus", m).key for m in variants} | {base.key}
    assert len(keys) == 5 and ChunkCache("c", "corpus", dict(MANIFEST)).key == base.key
    assert ChunkCache("c", "queries", MANIFEST).directory != base.directory


def test_chunks_are_encoded_once_then_read_back(tmp_path):
    encoder = HashEncoder()
    texts = [["a b", "c d"], ["e f", "g h"], ["i"]]
    cache = ChunkCache(str(tmp_path), "corpus", MANIFEST)
    assert cache.open() is None
    first = list(embed_chunks(encoder, texts, cache, "document", 4))
    assert (cache.encoded, cache.reused, len(encoder.calls)) == (3, 0, 3)
    again = ChunkCache(str(tmp_path), "corpus", MANIFEST)
    assert again.open() is None and again.cached_chunks() == 3
    second = list(embed_chunks(encoder, texts, again, "document", 4))
    assert (again.encoded, again.reused, len(encoder.calls)) == (0, 3, 3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not [n for n in os.listdir(cache.directory) if n.startswith(".")]  # no temporary files left


def test_a_changed_setting_gets_its_own_directory_and_is_reported(tmp_path):
    ChunkCache(str(tmp_path), "corpus", MANIFEST).open()
    changed = ChunkCache(str(tmp_path), "corpus", _with(model__step=4, texts__count=6))
    note = changed.open()
    assert note.startswith("corpus embeddings: model.step, texts.count changed since ")
    assert "nothing of the old cache is read" in note
    assert len(os.listdir(tmp_path)) == 2 and changed.cached_chunks() == 0
    assert changed_fields({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "d": 2}) == ["a.b", "c", "d"]


def test_a_damaged_cache_is_an_error_naming_the_file(tmp_path):
    cache = ChunkCache(str(tmp_path), "corpus", MANIFEST)
    cache.open()
    cache.save(0, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"chunk_00000.npy hold float32 \(2, 3\), expected float32 \[5, d\]; delete"):
        cache.load(0, 5)
    with open(cache.chunk_path(1), "wb") as f:
        f.write(b"not numpy")
    with pytest.raises(ValueError, match=r"chunk_00001.npy do not read back .*; delete the file and rerun"):
        cache.load(1, 2)
    manifest = os.path.join(cache.directory, "manifest.json")
    with open(manifest, "w") as f:
        json.dump({"role": "corpus", **_with(chunk_size=9)}, f)
    with pytest.raises(ValueError, match=r"does not describe the embeddings asked for \(differs in chunk_size\)"):
        ChunkCache(str(tmp_path), "corpus", MANIFEST).open()
