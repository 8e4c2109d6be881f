"""python -m cpt_jax.model.describe (cpt_jax/cli/describe.py): the paper's model sizes from configs/model/*.gin."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from cpt_jax.model import ModelConfig, init_params
from cpt_jax.cli.describe import describe, main

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "model")


def formula(vocab: int, d: int, layers: int, mlp: int, max_len: int) -> int:
    """Parameters of the pre-norm encoder, counted by hand."""
    attention = 4 * (d * d + d)  # query, key, value, out: kernel + bias
    block = attention + (d * mlp + mlp) + (mlp * d + d) + 2 * 2 * d  # MLP in/out, two LayerNorms
    return vocab * d + max_len * d + layers * block + 2 * d  # + final LayerNorm


@pytest.mark.parametrize(
    "name, target, width",
    [("s", 300e6, 1024), ("m", 1.2e9, 2048), ("l", 6e9, 4096), ("xl", 175e9, 12288)],
)
def test_paper_sizes(name, target, width):
    got_name, count, got_width, layers = describe(os.path.join(CONFIGS, f"{name}.gin"))
    assert got_name == name
    assert got_width == width
    assert abs(count - target) / target < 0.10, f"{name}: {count:,} parameters, want {target:,.0f} +- 10%"
    assert count == formula(50304, width, layers, 4 * width, 2048)


def test_tiny_count_equals_initialised_leaves():
    name, count, width, layers = describe(os.path.join(CONFIGS, "tiny.gin"))
    assert (name, width, layers) == ("tiny", 128, 2)
    cfg = ModelConfig(vocab_size=8000, d_model=128, num_layers=2, num_heads=4, d_mlp=512, max_len=128)
    params = jax.jit(init_params, static_argnums=0)(cfg, jax.random.key(0))
    leaves = jax.tree.leaves(params)
    assert all(np.asarray(x).dtype == np.float32 for x in leaves)
    assert count == sum(int(np.size(x)) for x in leaves) == formula(8000, 128, 2, 512, 128)


def test_main_prints_a_row_per_file_and_usage_without_any(capsys):
    assert main([os.path.join(CONFIGS, "tiny.gin")]) is None
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["config", "parameters", "embedding", "width", "layers"]
    assert row.split() == ["tiny", "1,437,184", "128", "2"]
    assert main([]) == 2 and "usage: python -m cpt_jax.model.describe" in capsys.readouterr().err
