"""python -m cpt_jax.embed (cpt_jax/cli/embed.py): file in, float32 .npy out, row i = Embedder.encode of line i."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from pydoc_data.topics import topics

from cpt_jax.cli import embed
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.embedder import Embedder
from cpt_jax.model import ModelConfig, init_params
from tests.helpers import write_run_dir

TEXTS = ["def add(a, b):\n    return a + b", "Return the sum.", "", "ünïcode ✓"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("embed")
    tokenizer = Tokenizer.train(list(topics.values()), 400, str(root / "tok"))
    model = ModelConfig(vocab_size=400, d_model=16, num_layers=1, num_heads=2, d_mlp=32, max_len=32)
    return write_run_dir(str(root / "run"), model, init_params(model, jax.random.key(0)), tokenizer, 16, 32)


@pytest.mark.parametrize("side", ["query", "document"])
def test_jsonl_to_npy_matches_the_embedder(run_dir, tmp_path, side):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    assert embed.main(["--checkpoint", run_dir, "--input", str(src), "--output", str(tmp_path / "e.npy"), "--side", side]) is None
    got = np.load(tmp_path / "e.npy", allow_pickle=False)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(got, Embedder.load(run_dir).encode(TEXTS, side=side), atol=1e-6)


def test_dtype_flag_encodes_in_bfloat16(run_dir, tmp_path):
    texts = ["Return the sum.", "ünïcode ✓", "def add(a, b): return a + b"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    embed.main(["--checkpoint", run_dir, "--input", str(src), "--output", str(tmp_path / "e.npy"), "--dtype", "bfloat16"])
    got = np.load(tmp_path / "e.npy", allow_pickle=False)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, Embedder.load(run_dir, dtype="bfloat16").encode(texts, batch_size=128))
    full = Embedder.load(run_dir).encode(texts)
    assert 0 < np.abs(got - full).max() < 5e-2 and (got * full).sum(axis=1).min() > 0.995


def test_plain_text_lines_and_custom_field(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo words\n\n")
    assert embed.read_texts(str(tmp_path / "a.txt"), "text") == ["one", "two words", ""]
    (tmp_path / "b.jsonl").write_text('{"body": "x"}\n\n{"body": "y"}\n')
    assert embed.read_texts(str(tmp_path / "b.jsonl"), "body") == ["x", "y"]


@pytest.mark.parametrize(
    "content,message",
    [('{"text": "a"}\nnot json\n', r"in.jsonl:2: not valid JSON"), ('{"body": "a"}\n', r"in.jsonl:1: .*'text'.*--field")],
)
def test_bad_jsonl_names_the_line(tmp_path, content, message):
    (tmp_path / "in.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        embed.read_texts(str(tmp_path / "in.jsonl"), "text")
