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
    with pytest.raises(ValueError, match=rf"ModelConfig.{field}=0 is out of range: must be >= 1"):
        ModelConfig(**{field: 0})


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_dropout_range(rate):
    with pytest.raises(ValueError, match=rf"ModelConfig.dropout={rate} is out of range: must be in \[0.0, 1.0\)"):
        ModelConfig(dropout=rate)


@pytest.mark.parametrize(
    "field, value, choices",
    [
        ("norm", "batchnorm", "('layernorm', 'rmsnorm')"),
        ("norm_position", "sandwich", "('pre', 'post')"),
        ("position", "alibi", "('learned', 'rope')"),
        ("activation", "relu", "('gelu_tanh', 'gelu', 'silu')"),
    ],
)
def test_architecture_enum_fields(field, value, choices):
    with pytest.raises(ValueError) as err:
        ModelConfig(**{field: value})
    assert f"ModelConfig.{field}={value!r}" in str(err.value)
    assert choices in str(err.value)


def test_kv_heads():
    assert ModelConfig(num_heads=4).kv_heads == 4  # 0: one key/value head per query head
    assert ModelConfig(num_heads=4, num_kv_heads=2).kv_heads == 2
    assert ModelConfig(num_heads=4, num_kv_heads=1).kv_heads == 1
    for bad, hint in ((3, 2), (8, 4)):
        with pytest.raises(ValueError, match=rf"num_kv_heads={bad} must divide num_heads=4.*num_kv_heads={hint}"):
            ModelConfig(num_heads=4, num_kv_heads=bad)
    with pytest.raises(ValueError, match=r"ModelConfig.num_kv_heads=-1 is out of range: must be >= 0 \(.*0 means num_heads"):
        ModelConfig(num_heads=4, num_kv_heads=-1)


def test_rope_needs_an_even_head_dim_and_a_positive_theta():
    assert ModelConfig(d_model=32, num_heads=4, position="rope").head_dim == 8
    with pytest.raises(ValueError, match=r"head_dim = d_model / num_heads = 9 is odd"):
        ModelConfig(d_model=36, num_heads=4, position="rope")
    with pytest.raises(ValueError, match=r"ModelConfig.rope_theta=0.0 is out of range: must be > 0.0"):
        ModelConfig(position="rope", rope_theta=0.0)


def test_post_norm_excludes_a_final_norm():
    assert not ModelConfig(norm_position="post", final_norm=False).final_norm
    with pytest.raises(ValueError, match=r"norm_position='post'.*set final_norm=False"):
        ModelConfig(norm_position="post")


def test_norm_epsilon_must_be_positive():
    with pytest.raises(ValueError, match=r"ModelConfig.layer_norm_eps=0.0 is out of range: must be > 0.0"):
        ModelConfig(layer_norm_eps=0.0)


def test_new_fields_are_type_checked():
    with pytest.raises(TypeError, match=r"ModelConfig.gated_mlp='yes' has type str; expected bool"):
        ModelConfig(gated_mlp="yes")
    with pytest.raises(TypeError, match=r"ModelConfig.num_kv_heads=2.0 has type float; expected int"):
        ModelConfig(num_kv_heads=2.0)


@pytest.mark.parametrize("unroll", [0, -1])
def test_scan_unroll_must_be_positive(unroll):
    with pytest.raises(ValueError, match=rf"ModelConfig.scan_unroll={unroll} is out of range: must be >= 1 \(blocks per scan iteration"):
        ModelConfig(num_layers=2, scan_unroll=unroll)
    assert ModelConfig(num_layers=2, scan_unroll=6).scan_unroll == 6  # more than num_layers: all unrolled
