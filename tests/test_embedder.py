"""Embedder.encode: bucketing and batching change nothing; sides differ; output contract."""

from __future__ import annotations

import numpy as np
import pytest
from pydoc_data.topics import topics

from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.embedder import Embedder, bucket_lengths
from cpt_jax.model import ModelConfig, embed

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
