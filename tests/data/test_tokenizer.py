"""Tests for cpt_jax.data.tokenizer."""

from __future__ import annotations

import argparse
import io
import pathlib
import textwrap

import numpy as np
import pytest
import sentencepiece as spm

from cpt_jax.data.tokenizer import DELIMITERS, Tokenizer

CODE = "def f(x):\n    return x  # done\n\n\tz = 1234  é 漢\n"


def test_reserved_ids(tokenizer: Tokenizer):
    assert tokenizer.vocab_size == 500
    assert tokenizer.pad_id == 0
    assert (tokenizer.sos_id("x"), tokenizer.eos_id("x")) == (2, 3)
    assert (tokenizer.sos_id("y"), tokenizer.eos_id("y")) == (4, 5)
    with pytest.raises(ValueError, match="side"):
        tokenizer.sos_id("z")


def test_encode_layout_padding_and_mask(tokenizer: Tokenizer):
    tokens, mask = tokenizer.encode(["a b", CODE], "y", 200)
    assert tokens.dtype == mask.dtype == np.int32 and tokens.shape == mask.shape == (2, 200)
    for row in range(2):
        n = int(mask[row].sum())
        assert mask[row, :n].all() and not mask[row, n:].any()
        assert tokens[row, 0] == 4 and tokens[row, n - 1] == 5
        assert (tokens[row, n:] == 0).all()
        assert not np.isin(tokens[row, 1 : n - 1], [0, 1, 2, 3, 4, 5]).any()
    assert tokenizer.decode(tokens[1]) == CODE  # whitespace, bytes and unicode round-trip


def test_truncation_keeps_eos(tokenizer: Tokenizer):
    full, _ = tokenizer.encode([CODE], "x", 200)
    tokens, mask = tokenizer.encode([CODE], "x", 6)
    assert mask.tolist() == [[1] * 6]
    assert tokens[0].tolist() == [2, *full[0, 1:5].tolist(), 3]
    tokens, mask = tokenizer.encode(["", CODE], "x", 2)
    assert tokens.tolist() == [[2, 3], [2, 3]] and mask.all()
    with pytest.raises(ValueError, match="max_len"):
        tokenizer.encode([CODE], "x", 1)


def test_delimiter_text_is_not_a_control_token(tokenizer: Tokenizer):
    text = "see [EOS]_x and [SOS]_y here"
    tokens, mask = tokenizer.encode([text], "x", 64)
    n = int(mask.sum())
    assert not np.isin(tokens[0, 1 : n - 1], [2, 3, 4, 5]).any()
    assert tokenizer.decode(tokens[0]) == text


def test_training_is_deterministic(tmp_path: pathlib.Path):
    texts = [pathlib.Path(m.__file__).read_text() for m in (argparse, textwrap)]
    texts = [line for text in texts for line in text.splitlines() if line.strip()]
    a = Tokenizer.train(texts, 400, str(tmp_path / "a.model"))
    b = Tokenizer.train(texts, 400, str(tmp_path / "b.model"))
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    assert a.encode([texts[0]], "x", 32)[0].tolist() == b.encode([texts[0]], "x", 32)[0].tolist()


def test_load_round_trip_and_errors(tokenizer_path: pathlib.Path, tmp_path: pathlib.Path):
    tokenizer = Tokenizer.load(str(tokenizer_path))
    assert tokenizer.decode(tokenizer.encode([CODE], "y", 128)[0][0]) == CODE
    with pytest.raises(FileNotFoundError, match="Tokenizer.train"):
        Tokenizer.load(str(tmp_path / "missing.model"))
    with pytest.raises(ValueError, match="no room"):
        Tokenizer.train(["abc"], 100, str(tmp_path / "small.model"))
    with pytest.raises(ValueError, match="lower vocab_size"):
        Tokenizer.train(["abc abd"] * 5, 400, str(tmp_path / "tiny.model"))
    foreign = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["hello world"] * 10), model_writer=foreign,
        vocab_size=16, hard_vocab_limit=False, minloglevel=2,
    )
    foreign_path = tmp_path / "foreign.model"
    foreign_path.write_bytes(foreign.getvalue())
    with pytest.raises(ValueError, match=DELIMITERS[0].replace("[", r"\[").replace("]", r"\]")):
        Tokenizer.load(str(foreign_path))
