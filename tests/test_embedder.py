"""Embedder.encode: bucketing and batching change nothing; sides differ; output contract."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from pydoc_data.topics import topics

from cpt_jax import checkpoint
from cpt_jax.data.tokenizer import RUN_DIR_NAME, Tokenizer
from cpt_jax.data.tokenizer_files import TokenizerIntegrityError, TokenizerMismatchError
from cpt_jax.embedder import CPU_BATCH_TOKENS, Embedder, batch_rows, bucket_lengths, padded_batches
from cpt_jax.model import ModelConfig, embed
from tests.helpers import write_run_dir

TEXTS = [
    "def add(a, b):\n    return a + b",
    "Return the sum of two numbers.",
    "x",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n" * 3,
    "Open a file and read all of its lines into a list of strings.",
] * 3


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok") / "tok")
    corpus = list(topics.values())
    tokenizer = Tokenizer.train(corpus, 500, path)
    model = ModelConfig(vocab_size=500, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=64)
    return Embedder.random_init(model, tokenizer, {"x": 32, "y": 64}, seed=1)


def test_bucket_lengths():
    assert bucket_lengths(64) == [16, 32, 48, 64]
    assert bucket_lengths(128) == [16, 32, 48, 64, 80, 112, 128]
    assert bucket_lengths(100) == [16, 32, 48, 64, 80, 100]
    assert bucket_lengths(8) == [8]
    lengths = bucket_lengths(2048)
    assert len(lengths) < 25 and all(b > a for a, b in zip(lengths, lengths[1:]))
    assert all(b <= max(1.25 * a + 16, a + 16) for a, b in zip(lengths, lengths[1:]))


def test_batch_rows_bound_the_tokens_and_keep_a_multiple_of_the_devices():
    assert batch_rows(16, 128, None) == 128
    assert batch_rows(16, 128, 2048) == 128  # 2048 tokens: the row bound decides
    assert batch_rows(256, 128, 2048) == 8
    assert batch_rows(176, 128, 2048) == 11
    assert batch_rows(176, 128, 2048, multiple=8) == 8
    assert batch_rows(512, 128, 2048, multiple=8) == 8  # never below one row per device
    assert batch_rows(100, 60, None, multiple=8) == 56


def test_padded_batches_give_each_bucket_its_own_row_count_and_cover_every_text():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 129, size=300)
    mask = (np.arange(128)[None, :] < lengths[:, None]).astype(np.int32)
    tokens = mask * rng.integers(5, 100, size=mask.shape)
    seen, rows_of_width = [], {}
    for idx, t, m in padded_batches(tokens, mask, 128, rows=64, max_tokens=1024, multiple=2):
        rows, width = t.shape
        assert rows == batch_rows(width, 64, 1024, 2) and rows * width <= max(1024, 2 * width)
        assert rows_of_width.setdefault(width, rows) == rows  # one shape per bucket
        assert lengths[idx].max() <= width and len(idx) <= rows
        np.testing.assert_array_equal(t[: len(idx)], tokens[idx, :width])
        assert m[len(idx) :, 0].all() and m[len(idx) :, 1:].sum() == 0  # filler rows: one token
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(300))
    assert rows_of_width[16] == 64 and rows_of_width[128] == 8


def test_a_token_bound_changes_no_embedding(embedder, monkeypatch):
    assert embedder.batch_tokens == (CPU_BATCH_TOKENS if jax.default_backend() == "cpu" else None)
    texts = TEXTS + [" ".join(TEXTS)]
    tokens, mask = embedder.tokenizer.encode(texts, "y", 64)
    full = np.asarray(embed(embedder.params, embedder.model, tokens, mask))  # one batch, no buckets
    small = embedder.with_batch_tokens(64)
    assert small.params is embedder.params and small.batch_tokens == 64
    shapes = []
    monkeypatch.setattr(small, "_embed", lambda p, t, m: shapes.append(t.shape) or embedder._embed(p, t, m))
    small._recent.clear()  # shared by copies: encode for real
    np.testing.assert_allclose(small.encode(texts, "document", batch_size=16), full, atol=1e-5)
    n = len(jax.local_devices())  # at least one row per device
    assert all(r % n == 0 and r * w <= max(64, n * w) for r, w in shapes) and (n, 64) in shapes
    with pytest.raises(ValueError, match="positive number of tokens"):
        embedder.with_batch_tokens(0)


def test_with_max_len_reads_longer_texts_and_keeps_short_ones(embedder):
    long_text = " ".join(TEXTS * 4)
    longer = embedder.with_max_len(64)
    assert longer.max_len == {"x": 64, "y": 64} and embedder.max_len == {"x": 32, "y": 64}  # a copy
    assert longer.params is embedder.params
    short = [t for t in TEXTS if len(embedder.tokenizer.encode([t], "x", 64)[1][0].nonzero()[0]) < 32]
    np.testing.assert_array_equal(longer.encode(short, "x"), embedder.encode(short, "x"))  # nothing was cut
    assert not np.allclose(longer.encode([long_text], "x"), embedder.encode([long_text], "x"), atol=1e-4)
    for bad in (2, 65):
        with pytest.raises(ValueError, match="reads 3 to 64 tokens"):
            embedder.with_max_len(bad)


def test_encode_shape_dtype_and_unit_norm(embedder):
    out = embedder.encode(TEXTS, side="document", batch_size=4)
    assert out.shape == (len(TEXTS), 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_batching_and_bucketing_do_not_change_embeddings(embedder):
    together = embedder.encode(TEXTS, side="query", batch_size=8)
    one_by_one = np.concatenate([embedder.encode([t], side="query", batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    # The same model at the full training width (no bucketing) gives the same vectors.
    tokens, mask = embedder.tokenizer.encode(TEXTS, "x", 32)
    full = np.asarray(embed(embedder.params, embedder.model, tokens, mask))
    np.testing.assert_allclose(together, full, atol=1e-5)


def test_sides_use_their_own_delimiters(embedder):
    q = embedder.encode(TEXTS[:3], side="query")
    d = embedder.encode(TEXTS[:3], side="document")
    assert not np.allclose(q, d)
    np.testing.assert_array_equal(embedder.encode(TEXTS[:3], side="x"), q)


def test_unknown_side_is_rejected(embedder):
    with pytest.raises(ValueError, match="query"):
        embedder.encode(["a"], side="passage")


def test_mteb_style_prompt_type_selects_the_side(embedder):
    class PromptType:  # stands in for mteb's enum: members with a .value
        def __init__(self, value):
            self.value = value

    q = embedder.encode(TEXTS[:3], side="query")
    d = embedder.encode(TEXTS[:3], side="document")
    np.testing.assert_array_equal(embedder.encode(TEXTS[:3], task_name="t", prompt_type=PromptType("query")), q)
    np.testing.assert_array_equal(embedder.encode(TEXTS[:3], prompt_type=PromptType("document")), d)
    np.testing.assert_array_equal(embedder.encode(TEXTS[:3], prompt_type="query"), q)
    np.testing.assert_array_equal(embedder.encode(TEXTS[:3]), d)


def _write_run(run_dir: str, embedder: Embedder, monkeypatch, tokenizer_sha256: str | None) -> str:
    """tests.helpers.write_run_dir, with "tokenizer_sha256" added to the checkpoint's meta as train() records it."""
    if tokenizer_sha256 is not None:
        save = checkpoint.Checkpointer.save
        monkeypatch.setattr(
            checkpoint.Checkpointer, "save",
            lambda self, step, p, o, meta, **kw: save(self, step, p, o, {**meta, "tokenizer_sha256": tokenizer_sha256}, **kw),
        )
    write_run_dir(run_dir, embedder.model, jax.device_get(embedder.params), embedder.tokenizer)
    monkeypatch.undo()
    return run_dir


def test_a_checkpoint_of_another_tokenizer_is_refused(embedder, tmp_path, monkeypatch):
    run = _write_run(str(tmp_path / "run"), embedder, monkeypatch, embedder.tokenizer.fingerprint())
    assert checkpoint.read_meta(run)[1]["tokenizer_sha256"] == Tokenizer.load(os.path.join(run, RUN_DIR_NAME)).fingerprint()
    np.testing.assert_array_equal(Embedder.load(run).encode(TEXTS[:3]), embedder.encode(TEXTS[:3]))
    # The same vocabulary with other delimiters, saved properly (so its checksums agree): the
    # checkpoint's fingerprint still tells it from the one it was trained with.
    other = Tokenizer.load(os.path.join(run, RUN_DIR_NAME))
    other.shared_delimiters = True
    other.save(os.path.join(run, RUN_DIR_NAME))
    with pytest.raises(TokenizerMismatchError) as info:
        Embedder.load(run)
    message = str(info.value)
    assert "tokenizer changed since the checkpoint was written" in message
    assert os.path.join(run, RUN_DIR_NAME) in message and embedder.tokenizer.fingerprint() in message
    assert "allow_tokenizer_change=True" in message
    changed = Embedder.load(run, allow_tokenizer_change=True)  # on purpose: encodes with the current files
    assert changed.tokenizer.shared_delimiters and not np.allclose(changed.encode(TEXTS[:3]), embedder.encode(TEXTS[:3]))


def test_a_checkpoint_recording_another_fingerprint_is_refused(embedder, tmp_path, monkeypatch):
    run = _write_run(str(tmp_path / "run"), embedder, monkeypatch, "0" * 64)
    with pytest.raises(TokenizerMismatchError, match="0{64}"):
        Embedder.load(run)


def test_a_run_from_before_fingerprints_loads_and_an_edited_tokenizer_file_is_refused(embedder, tmp_path, monkeypatch):
    run = _write_run(str(tmp_path / "run"), embedder, monkeypatch, None)
    assert "tokenizer_sha256" not in checkpoint.read_meta(run)[1]
    np.testing.assert_array_equal(Embedder.load(run).encode(TEXTS[:3]), embedder.encode(TEXTS[:3]))
    path = os.path.join(run, RUN_DIR_NAME, "tokenizer.json")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-100])
    with pytest.raises(TokenizerIntegrityError, match="tokenizer.json"):
        Embedder.load(run)


INSTRUCTED = {  # a run's DataConfig as its checkpoints store it: instructions follow the sources
    "sources": [{"name": "code", "dataset": "site_code"}, {"name": "prose", "dataset": "site_text"}],
    "instructions": [["Find the function: ", "Function: "], ["", "passage: "]],
}


def test_instructions_are_read_from_the_run_and_applied_per_source(embedder, tmp_path):
    run = write_run_dir(str(tmp_path / "run"), embedder.model, jax.device_get(embedder.params), embedder.tokenizer,
                        data_config=INSTRUCTED)
    loaded = Embedder.load(run)
    assert loaded.instructions == {"code": ("Find the function: ", "Function: "), "prose": ("", "passage: ")}
    assert loaded.prefix == {"x": "", "y": ""}  # the sources differ: no default
    np.testing.assert_array_equal(loaded.encode(TEXTS[:3], "x"), embedder.encode(TEXTS[:3], "x"))
    code = loaded.with_instruction("code")
    assert code.params is loaded.params and loaded.prefix == {"x": "", "y": ""}  # a copy
    np.testing.assert_array_equal(code.encode(TEXTS[:3], "x"), embedder.encode(["Find the function: " + t for t in TEXTS[:3]], "x"))
    np.testing.assert_array_equal(code.encode(TEXTS[:3], "y"), embedder.encode(["Function: " + t for t in TEXTS[:3]], "y"))
    assert loaded.for_task("prose").prefix == {"x": "", "y": "passage: "}
    assert loaded.for_task("stdlib_code") is loaded  # no source of that name
    with pytest.raises(ValueError, match="no instruction for source 'cod'.*did you mean 'code'"):
        loaded.with_instruction("cod")


def test_one_instruction_shared_by_every_source_is_the_default(embedder, tmp_path):
    shared = {**INSTRUCTED, "instructions": [["q: ", "d: "], ["q: ", "d: "]]}
    run = write_run_dir(str(tmp_path / "run"), embedder.model, jax.device_get(embedder.params), embedder.tokenizer,
                        data_config=shared)
    loaded = Embedder.load(run)
    assert loaded.prefix == {"x": "q: ", "y": "d: "}
    np.testing.assert_array_equal(loaded.encode(TEXTS[:2], "query"), embedder.encode(["q: " + t for t in TEXTS[:2]], "query"))
    # A run from before instructions existed has none.
    old = write_run_dir(str(tmp_path / "old"), embedder.model, jax.device_get(embedder.params), embedder.tokenizer)
    assert Embedder.load(old).instructions == {} and Embedder.load(old).prefix == {"x": "", "y": ""}


def test_with_dim_cuts_and_renormalises_and_encodes_once(embedder, monkeypatch):
    full = embedder.encode(TEXTS, "x")
    calls = []
    real = Embedder._encode_batches
    monkeypatch.setattr(Embedder, "_encode_batches", lambda self, *a: calls.append(a[1]) or real(self, *a))
    cut = embedder.with_dim(8)
    assert cut.dim == 8 and embedder.dim == 32 and cut.params is embedder.params
    got = cut.encode(TEXTS, "x")
    assert got.shape == (len(TEXTS), 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True), atol=1e-6)
    assert calls == []  # the full-width result of the same texts was reused
    got[:] = 0  # what encode returns is the caller's: the kept result is untouched
    np.testing.assert_array_equal(embedder.encode(TEXTS, "x"), full)
    assert embedder.with_dim(32).encode(TEXTS[:3], "y").shape == (3, 32) and calls == ["y"]
    for bad in (0, 33):
        with pytest.raises(ValueError, match=r"embeddings have 32 values .* from 1 to 32"):
            embedder.with_dim(bad)
