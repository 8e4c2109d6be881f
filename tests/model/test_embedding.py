"""embed_packed: sequences packed several to a row give the embeddings and gradients of embed()."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from cpt_jax.batch import PackedSide, PaddedSide
from cpt_jax.data.packing import pack, rows_needed
from cpt_jax.model import embed, embed_packed, embed_side, real_tokens
from tests.helpers import random_params
from tests.model.test_architectures import VARIANTS


def _short_side(seed: int, n: int = 12, seq: int = 16):
    """Sequences of 2..8 tokens in rows of 16, so that two or more share a packed row."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 9, n)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    return rng.integers(1, 64, (n, seq)).astype(np.int32) * mask, mask


@pytest.mark.parametrize(
    "name, attention, pooling, eos_last_layer, scan",
    [
        ("default", "causal", "eos", True, True),
        ("default", "causal", "eos", False, False),
        ("default", "bidirectional", "mean", True, True),
        ("llama", "causal", "eos", True, False),
        ("qwen2", "bidirectional", "eos", True, True),
        ("bert", "bidirectional", "mean", False, True),
        ("bert", "causal", "eos", True, True),
    ],
)
def test_packed_embeddings_and_gradients_equal_unpacked(name, attention, pooling, eos_last_layer, scan):
    """Learned and rotary positions restart in every packed sequence, attention stays inside it,
    and EOS (at the last layer's queries or from the whole stack) and mean pooling read it alone."""
    cfg = dataclasses.replace(
        VARIANTS[name], attention=attention, pooling=pooling, eos_last_layer=eos_last_layer, scan_layers=scan, num_layers=2
    )
    tokens, mask = _short_side(3)
    groups = 3
    packed = pack(tokens, mask, groups, rows_needed(mask, groups))
    assert packed.tokens.shape[1] < 4  # packing happened: fewer rows than sequences per group
    params = random_params(cfg, scale=0.2)
    weights = np.random.default_rng(0).normal(size=(12, cfg.d_model)).astype(np.float32)

    def unpacked(p):
        return embed(p, cfg, tokens, mask)

    def packed_fn(p):
        return embed_packed(p, cfg, packed.tokens, packed.segments, packed.ends)

    (v_ref, g_ref), (v, g) = (
        jax.jit(jax.value_and_grad(lambda p, f=f: (f(p) * weights).sum()))(params) for f in (unpacked, packed_fn)
    )
    np.testing.assert_allclose(jax.jit(packed_fn)(params), jax.jit(unpacked)(params), rtol=0, atol=1e-6)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g, g_ref)


def test_embed_side_dispatches_and_counts_real_tokens():
    cfg = VARIANTS["default"]
    tokens, mask = _short_side(4)
    packed = pack(tokens, mask, 2, rows_needed(mask, 2))
    params = random_params(cfg)
    unpacked_side = PaddedSide(tokens, mask)
    assert isinstance(packed, PackedSide)
    np.testing.assert_allclose(embed_side(params, cfg, packed), embed_side(params, cfg, unpacked_side), atol=1e-6)
    assert int(real_tokens(packed)) == int(real_tokens(unpacked_side)) == int(mask.sum())
    with pytest.raises(TypeError, match="PaddedSide or PackedSide"):
        embed_side(params, cfg, {"tokens": tokens, "mask": mask})
