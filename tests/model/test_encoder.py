"""The encoder's structural properties: causality, padding invariance, scan/remat/bf16 equivalence."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import ad_checkpoint

from cpt_jax.loss import contrastive_loss
from cpt_jax.model import embed, init_params
from cpt_jax.model.encoder import (
    Encoder,
    Mlp,
    attention_mask,
    dot_product_attention,
    gelu_erf,
    packed_attention_mask,
    segment_positions,
    token_matmul,
)
from tests.helpers import TINY, random_params, random_side

J = 4  # the position that gets a different token


@functools.lru_cache(maxsize=None)
def params():
    """TINY parameters (scanned layers) with non-trivial biases and norms."""
    return random_params(TINY)


@functools.lru_cache(maxsize=None)
def probe(attention: str):
    """One compile per attention kind: hidden states of a token pair, and pooled embeddings
    of a batch padded to 8 and to 12 positions, for both poolings."""
    cfg = dataclasses.replace(TINY, attention=attention)
    rng = np.random.default_rng(0)
    pair = np.tile(rng.integers(1, 64, (1, 10)).astype(np.int32), (2, 1))
    pair[1, J] = pair[0, J] % 63 + 1  # a different token at position J only
    tokens, mask = random_side(rng, 4, 8)
    tokens = np.where(mask == 1, tokens, rng.integers(1, 64, tokens.shape)).astype(np.int32)  # junk under pads
    long_tokens = np.concatenate([tokens, rng.integers(1, 64, (4, 4)).astype(np.int32)], axis=1)
    long_mask = np.concatenate([mask, np.zeros((4, 4), np.int32)], axis=1)

    @jax.jit
    def run(p):
        hidden = Encoder(cfg).apply({"params": p}, pair, np.ones_like(pair))
        pooled = {}
        for kind in ("eos", "mean"):
            c = dataclasses.replace(cfg, pooling=kind)
            pooled[kind] = (embed(p, c, tokens, mask), embed(p, c, long_tokens, long_mask))
        return hidden, pooled

    return jax.device_get(run(params()))


def test_causal_attention_only_looks_back():
    hidden, _ = probe("causal")
    np.testing.assert_allclose(hidden[1, :J], hidden[0, :J], rtol=0, atol=1e-6)
    assert np.abs(hidden[1, J:] - hidden[0, J:]).max(axis=-1).min() > 1e-3  # every later position moves


def test_bidirectional_attention_looks_both_ways():
    hidden, _ = probe("bidirectional")
    assert np.abs(hidden[1, :J] - hidden[0, :J]).max(axis=-1).min() > 1e-3  # every earlier position moves


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("kind", ["eos", "mean"])
def test_padding_does_not_change_embeddings(attention, kind):
    short, long = probe(attention)[1][kind]
    np.testing.assert_allclose(np.linalg.norm(short, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(long, short, rtol=0, atol=2e-6)


def test_scan_and_loop_give_identical_outputs():
    scanned = params()
    loop_cfg = dataclasses.replace(TINY, scan_layers=False)
    loop_shapes = jax.eval_shape(lambda: init_params(loop_cfg, jax.random.key(0)))
    assert "blocks" not in loop_shapes and f"block_{TINY.num_layers - 1}" in loop_shapes
    # Unscanned parameters: block_i, each an independent tree; stacking them gives the scanned layout.
    loop = {k: v for k, v in scanned.items() if k != "blocks"}
    for i in range(TINY.num_layers):
        loop[f"block_{i}"] = jax.tree.map(lambda a, i=i: np.array(a[i]), scanned["blocks"])
    assert jax.tree.structure(loop) == jax.tree.structure(loop_shapes)
    assert jax.tree.map(np.shape, loop) == jax.tree.map(lambda s: s.shape, loop_shapes)
    restacked = jax.tree.map(lambda *a: np.stack(a), *[loop[f"block_{i}"] for i in range(TINY.num_layers)])
    jax.tree.map(np.testing.assert_array_equal, restacked, scanned["blocks"])

    rng = np.random.default_rng(1)
    tokens, mask = random_side(rng, 4, 10)
    out = jax.jit(lambda s, l: (embed(s, TINY, tokens, mask), embed(l, loop_cfg, tokens, mask)))(scanned, loop)
    np.testing.assert_allclose(out[1], out[0], rtol=0, atol=1e-6)


def test_unrolled_scan_matches_scan_in_outputs_and_gradients():
    """scan_unroll >= num_layers runs the same stacked parameters as straight-line code."""
    unrolled = dataclasses.replace(TINY, scan_unroll=TINY.num_layers + 1)
    shapes = lambda cfg: jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))  # noqa: E731
    assert jax.tree.map(lambda s: s.shape, shapes(unrolled)) == jax.tree.map(lambda s: s.shape, shapes(TINY))
    tokens, mask = random_side(np.random.default_rng(4), 8, 10)

    def loss(p, cfg):
        e = embed(p, cfg, tokens, mask)
        return contrastive_loss(e[:4], e[4:], jnp.float32(2.0))[0]

    both = jax.device_get(jax.jit(lambda p: [jax.value_and_grad(loss)(p, c) for c in (TINY, unrolled)])(params()))
    (base_loss, base_grads), (loss_u, grads_u) = both
    np.testing.assert_allclose(loss_u, base_loss, rtol=1e-6)
    jax.tree.map(lambda g, b: np.testing.assert_allclose(g, b, rtol=1e-5, atol=1e-7), grads_u, base_grads)


def test_token_matmul_is_the_einsum():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 5, 8))
    kernel = rng.normal(size=(8, 2, 4))
    out = jax.jit(token_matmul)(x.astype(np.float32), kernel.astype(np.float32))
    assert out.shape == (3, 5, 2, 4)
    np.testing.assert_allclose(out, np.einsum("bsd,dhk->bshk", x, kernel), rtol=1e-5, atol=1e-5)


def test_gelu_erf_is_exact_gelu():
    x = np.linspace(-12, 12, 4001)
    # Phi(x) from the float64 erf: the definition, not another float32 implementation.
    reference = x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    np.testing.assert_allclose(gelu_erf(jnp.asarray(x, jnp.float32)), reference, rtol=0, atol=2e-6)
    np.testing.assert_allclose(gelu_erf(jnp.asarray(x, jnp.float32)), nn.gelu(x.astype(np.float32), approximate=False),
                               rtol=0, atol=2e-6)


def _saved_residuals(fn, *args) -> list[str]:
    """The residuals autodiff keeps for the backward pass of fn, one line each."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ad_checkpoint.print_saved_residuals(fn, *args)
    return out.getvalue().splitlines()


def _attention_inputs(heads: int, kv_heads: int, causal: bool):
    rng = np.random.default_rng(heads + kv_heads)
    q = rng.normal(size=(3, 6, heads, 8)).astype(np.float32)
    k, v = (rng.normal(size=(3, 6, kv_heads, 8)).astype(np.float32) for _ in range(2))
    mask = np.asarray(attention_mask(random_side(rng, 3, 6)[1], causal))
    return q, k, v, mask


@pytest.mark.parametrize("heads, kv_heads, causal", [(4, 4, False), (4, 4, True), (4, 2, True), (4, 1, False)])
def test_dot_product_attention_is_masked_softmax_attention(heads, kv_heads, causal):
    q, k, v, mask = _attention_inputs(heads, kv_heads, causal)
    # The direct formula in float64, keys/values repeated per query group.
    rep = lambda a: np.repeat(a.astype(np.float64), heads // kv_heads, axis=2)  # noqa: E731
    logits = np.einsum("btnh,bsnh->bnts", q.astype(np.float64), rep(k)) / math.sqrt(8)
    logits = np.where(mask, logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    want = np.einsum("bnts,bsnh->btnh", probs, rep(v))
    got = jax.jit(dot_product_attention)(q, k, v, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Gradients: the same as jax.nn.dot_product_attention's.
    loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))  # noqa: E731
    ours = jax.grad(loss(lambda q, k, v: dot_product_attention(q, k, v, mask)), argnums=(0, 1, 2))(q, k, v)
    theirs = jax.grad(loss(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask)), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_attention_keeps_only_its_probabilities_for_the_backward_pass():
    """Besides q, k, v: one float32 [batch, heads, q_len, k_len] tensor. Autodiff of
    jax.nn.dot_product_attention kept three such tensors and a boolean one."""
    q, k, v, mask = _attention_inputs(4, 2, True)
    lines = _saved_residuals(lambda q, k, v: dot_product_attention(q, k, v, mask).sum(), q, k, v)
    square = [line for line in lines if "6,6]" in line and "from a constant" not in line]  # the mask is one
    assert len(square) == 1 and square[0].startswith("f32[3,4,6,6] named 'attention_probs'"), lines
    reference = _saved_residuals(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask).sum(), q, k, v)
    assert sum("6,6]" in line for line in reference) > 1  # the form it replaced kept more


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "silu"])
def test_mlp_keeps_only_the_activation_input_and_output(activation):
    """The activation is recomputed from its input in the backward pass: two [tokens, d_mlp]
    residuals (wi's output and wo's input), not the activation's internal factors."""
    cfg = dataclasses.replace(TINY, activation=activation)
    x = np.random.default_rng(0).normal(size=(2, 5, cfg.d_model)).astype(np.float32)
    mlp = Mlp(cfg)
    p = mlp.init(jax.random.key(0), x, True)
    lines = _saved_residuals(lambda p, x: mlp.apply(p, x, True).sum(), p, x)
    wide = [line for line in lines if f"[2,5,{cfg.d_mlp}]" in line or f"[10,{cfg.d_mlp}]" in line]
    assert len(wide) == 2, lines

def test_remat_matches_no_remat():
    tokens, mask = random_side(np.random.default_rng(2), 8, 10)

    def loss(p, cfg):
        e = embed(p, cfg, tokens, mask)  # rows 0-3 are x, rows 4-7 their y (one encoder pass)
        return contrastive_loss(e[:4], e[4:], jnp.float32(2.0))[0]

    @jax.jit
    def all_policies(p):
        return {r: jax.value_and_grad(loss)(p, dataclasses.replace(TINY, remat=r)) for r in ("none", "full", "dots")}

    out = jax.device_get(all_policies(params()))
    base_loss, base_grads = out["none"]
    assert np.isfinite(base_loss) and base_loss > 0
    for policy in ("full", "dots"):
        np.testing.assert_allclose(out[policy][0], base_loss, rtol=1e-6)
        jax.tree.map(lambda g, b: np.testing.assert_allclose(g, b, rtol=1e-5, atol=1e-7), out[policy][1], base_grads)


def test_bfloat16_compute_is_close_to_float32():
    rng = np.random.default_rng(3)
    tokens, mask = random_side(rng, 8, 12)
    bf16 = dataclasses.replace(TINY, dtype="bfloat16")
    hidden_dtype = jax.eval_shape(lambda p: Encoder(bf16).apply({"params": p}, tokens, mask), params()).dtype
    assert hidden_dtype == jnp.bfloat16
    f32, low = jax.jit(lambda p: (embed(p, TINY, tokens, mask), embed(p, bf16, tokens, mask)))(params())
    assert low.dtype == jnp.float32  # pooled embeddings are float32 whatever the compute dtype
    diff = np.abs(np.asarray(low) - np.asarray(f32)).max()
    assert 0 < diff < 5e-2, diff
    cos = np.sum(np.asarray(low) * np.asarray(f32), axis=-1)
    assert cos.min() > 0.995, cos


def test_bfloat16_gradients_follow_float32_under_every_remat_policy():
    """bfloat16 compute (matmul.py's float32-accumulating products with narrow cotangents) gives
    the float32 loss and gradient directions, with and without remat; float32 parameter gradients."""
    tokens, mask = random_side(np.random.default_rng(4), 8, 10)

    def loss(p, cfg):
        e = embed(p, cfg, tokens, mask)
        return contrastive_loss(e[:4], e[4:], jnp.float32(2.0))[0]

    @jax.jit
    def run(p):
        ref = jax.value_and_grad(loss)(p, TINY)
        return ref, {r: jax.value_and_grad(loss)(p, dataclasses.replace(TINY, dtype="bfloat16", remat=r)) for r in ("none", "full", "dots")}

    (ref_loss, ref_grads), low = jax.device_get(run(params()))
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
    for policy, (value, grads) in low.items():
        assert all(g.dtype == np.float32 for g in jax.tree.leaves(grads)), policy
        np.testing.assert_allclose(value, ref_loss, rtol=2e-3, err_msg=policy)
        g, r = flat(grads), flat(ref_grads)
        assert g @ r / np.linalg.norm(g) / np.linalg.norm(r) > 0.999, policy


def test_sequence_longer_than_max_len_raises():
    tokens = jnp.ones((2, TINY.max_len + 1), jnp.int32)
    with pytest.raises(ValueError, match=r"Sequence length 17 exceeds ModelConfig.max_len=16"):
        jax.eval_shape(lambda p: embed(p, TINY, tokens, tokens), params())
    # max_len itself is fine.
    ok = jax.eval_shape(lambda p: embed(p, TINY, tokens[:, :-1], tokens[:, :-1]), params())
    assert ok.shape == (2, TINY.d_model)


def test_params_carry_logical_axis_names():
    from cpt_jax.model import init_boxed

    boxed = jax.eval_shape(lambda: init_boxed(TINY, jax.random.key(0)))
    names = nn.get_partition_spec(boxed)
    assert tuple(names["blocks"]["mlp"]["wi"]["kernel"]) == ("layers", "embed", "mlp")
    assert tuple(names["token_embedding"]["embedding"]) == ("vocab", "embed")


def test_segment_positions_restart_in_every_sequence():
    segments = np.array([[0, 0, 0, 1, 1, 2, -1, -1], [3, 3, 3, 3, 3, 3, 3, 3]])
    np.testing.assert_array_equal(segment_positions(segments), [[0, 1, 2, 0, 1, 0, 0, 1], list(range(8))])


@pytest.mark.parametrize("causal", [True, False])
def test_packed_attention_mask_keeps_each_sequence_to_itself(causal):
    segments = np.array([[0, 0, 1, 1, 1, -1]])
    got = np.asarray(packed_attention_mask(segments, causal))[0, 0]
    q, k = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    want = (segments[0][q] == segments[0][k]) & (segments[0][k] >= 0) & ((k <= q) if causal else True)
    np.testing.assert_array_equal(got, want)
    assert not got[5].any()  # padding attends to nothing
