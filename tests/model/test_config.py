"""ModelConfig validation: every bad value is a ValueError that says what to choose."""

from __future__ import annotations

import pytest

from cpt_jax.model import ModelConfig


def test_defaults_and_head_dim():
    cfg = ModelConfig(d_model=96, num_heads=6)
    assert cfg.head_dim == 16
    assert str(cfg.compute_dtype) == "float32"
    assert str(ModelConfig(dtype="bfloat16").compute_dtype) == "bfloat16"


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match=r"num_heads=5 must divide d_model=32.*num_heads=4"):
        ModelConfig(d_model=32, num_heads=5)
    with pytest.raises(ValueError, match=r"num_heads=7 must divide d_model=96.*num_heads=6"):
        ModelConfig(d_model=96, num_heads=7)


@pytest.mark.parametrize(
    "field, value, choices",
    [
        ("attention", "sideways", "('causal', 'bidirectional')"),
        ("pooling", "max", "('eos', 'mean')"),
        ("remat", "some", "('none', 'full', 'dots')"),
        ("dtype", "float16", "('float32', 'bfloat16')"),
    ],
)
def test_enum_fields(field, value, choices):
    with pytest.raises(ValueError) as err:
        ModelConfig(**{field: value})
    assert f"ModelConfig.{field}={value!r}" in str(err.value)
    assert choices in str(err.value)


@pytest.mark.parametrize("field", ["vocab_size", "d_model", "num_layers", "num_heads", "d_mlp", "max_len"])
def test_sizes_must_be_positive(field):
    with pytest.raises(ValueError, match=rf"ModelConfig.{field} must be positive, got 0"):
        ModelConfig(**{field: 0})


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_dropout_range(rate):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        ModelConfig(dropout=rate)
