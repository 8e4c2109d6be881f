"""LoRA on the encoder: the adapted encoder at init is the base exactly, merged = unmerged, the
low-rank term against a float64 reference, targets by pattern, and the base never differentiated."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax.model import Adapted, LoraConfig, ModelConfig, embed, embed_packed, init_boxed
from cpt_jax.model import lora as L

BERT = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=16,
                   norm_position="post", attention="bidirectional", embedding_norm=True, final_norm=False)
LLAMA = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, d_mlp=48, max_len=16,
                    norm="rmsnorm", position="rope", gated_mlp=True, activation="silu", qkv_bias=False,
                    out_bias=False, mlp_bias=False)
GPT = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, d_mlp=64, max_len=16)


def _tokens(seed=0, batch=4, seq=10):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 64, (batch, seq)).astype(np.int32)
    mask = (np.arange(seq)[None] < rng.integers(3, seq + 1, batch)[:, None]).astype(np.int32)
    return tokens * mask, mask


def _pieces(cfg: ModelConfig, lora: LoraConfig, perturb: float = 0.0):
    boxed = init_boxed(cfg, jax.random.key(0))
    base = nn.meta.unbox(boxed)
    adapters = nn.meta.unbox(L.init_adapters(boxed, lora, jax.random.key(1)))
    if perturb:  # B = 0 at init: give B values so the adapters change something
        leaves, tree = jax.tree.flatten(adapters)
        keys = jax.random.split(jax.random.key(2), len(leaves))
        adapters = jax.tree.unflatten(tree, [x + perturb * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return base, adapters


@pytest.mark.parametrize("cfg", [LLAMA, GPT, dataclasses.replace(GPT, scan_layers=False),
                                 dataclasses.replace(LLAMA, eos_last_layer=False), BERT],
                         ids=["llama", "gpt", "gpt-unscanned", "llama-full-last-layer", "bert"])
def test_at_init_the_adapted_encoder_is_the_base_exactly(cfg):
    """B = 0: the merged weights are the base's bit for bit, and so are the adapted encoder's
    embeddings, except that in a post-norm (BERT) stack XLA may fuse the base product, its bias
    and the residual into one sum in another order than with the (zero) low-rank term beside them:
    there they agree to float32 rounding."""
    lora = LoraConfig(rank=4)
    base, adapters = _pieces(cfg, lora)
    for a, b in zip(jax.tree.leaves(L.merge(base, adapters, lora)), jax.tree.leaves(base)):
        np.testing.assert_array_equal(a, b)
    tokens, mask = _tokens()
    adapted, plain = embed(Adapted(base, adapters, lora), cfg, tokens, mask), embed(base, cfg, tokens, mask)
    if cfg.norm_position == "pre":
        np.testing.assert_array_equal(adapted, plain)
    else:
        np.testing.assert_allclose(adapted, plain, rtol=0, atol=2e-7)


@pytest.mark.parametrize("cfg", [BERT, LLAMA, dataclasses.replace(GPT, scan_layers=False)],
                         ids=["bert", "llama", "gpt-unscanned"])
def test_merged_equals_unmerged_within_float32_rounding(cfg):
    lora = LoraConfig(rank=4, alpha=8.0)
    base, adapters = _pieces(cfg, lora, perturb=0.2)
    tokens, mask = _tokens(1)
    adapted = embed(Adapted(base, adapters, lora), cfg, tokens, mask)
    merged = embed(L.merge(base, adapters, lora), cfg, tokens, mask)
    assert float(jnp.max(jnp.abs(adapted - embed(base, cfg, tokens, mask)))) > 0.05  # the adapters matter
    np.testing.assert_allclose(adapted, merged, atol=2e-6)
    # NumPy in, NumPy out (the Embedder merges on the host): the same tree.
    host = L.merge(jax.tree.map(np.asarray, base), jax.tree.map(np.asarray, adapters), lora)
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(host))
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(merged := L.merge(base, adapters, lora))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    del merged


def test_packed_rows_see_the_adapters_too():
    cfg, lora = GPT, LoraConfig(rank=2)
    base, adapters = _pieces(cfg, lora, perturb=0.3)
    tokens, mask = _tokens(2, batch=2, seq=8)
    lengths = mask.sum(1)
    packed = np.zeros((1, 1, 16), np.int32)
    segments = -np.ones((1, 1, 16), np.int32)
    packed[0, 0, : lengths[0]], segments[0, 0, : lengths[0]] = tokens[0, : lengths[0]], 0
    packed[0, 0, lengths[0] : lengths.sum()], segments[0, 0, lengths[0] : lengths.sum()] = tokens[1, : lengths[1]], 1
    ends = np.array([[lengths[0] - 1, lengths.sum() - 1]], np.int32)
    want = embed(Adapted(base, adapters, lora), cfg, tokens, mask)
    got = embed_packed(Adapted(base, adapters, lora), cfg, packed, segments, ends)
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_merge_against_a_float64_reference():
    """W + (alpha / r) A B, with A [*lead, *in, r] and B [*lead, r, *out], for a kernel with two input
    dims (the attention output, [layers, heads, head_dim, d]) and one with two output dims (query)."""
    lora = LoraConfig(rank=3, alpha=6.0)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 4, 8, 3))
    b = rng.normal(size=(2, 3, 32))
    want = np.stack([a[i].reshape(32, 3) @ b[i] * 2.0 for i in range(2)]).reshape(2, 4, 8, 32)
    np.testing.assert_allclose(L.delta(a, b, lora.scale, 1), want, rtol=1e-12)
    a, b = rng.normal(size=(32, 3)), rng.normal(size=(3, 4, 8))
    np.testing.assert_allclose(L.delta(a, b, lora.scale, 0), (a @ b.reshape(3, 32) * 2.0).reshape(32, 4, 8), rtol=1e-12)


def test_targets_pick_projections_by_path_and_name_the_choices():
    boxed = init_boxed(LLAMA, jax.random.key(0))
    every = ["/".join(p) for p in L.target_paths(boxed, LoraConfig(rank=2))]
    assert every == ["blocks/attention/key_kernel", "blocks/attention/out_kernel", "blocks/attention/query_kernel",
                     "blocks/attention/value_kernel", "blocks/mlp/wi/kernel", "blocks/mlp/wi_gate/kernel",
                     "blocks/mlp/wo/kernel"]
    qv = L.init_adapters(boxed, LoraConfig(rank=2, targets=r"attention/(query|value)_kernel$"), jax.random.key(0))
    assert sorted(qv["blocks"]["attention"]) == ["query_kernel", "value_kernel"] and "mlp" not in qv["blocks"]
    # The adapters carry the kernel's logical names, the rank replicated.
    pair = qv["blocks"]["attention"]["query_kernel"]
    assert pair["lora_a"].names == ("layers", "embed", "lora_rank")
    assert pair["lora_b"].names == ("layers", "lora_rank", "heads", "kv")
    # Embeddings and norms are never targets, whatever the pattern says.
    with pytest.raises(ValueError, match=r"matches none of this encoder's projections.*blocks/attention/key_kernel"):
        L.target_paths(boxed, LoraConfig(rank=2, targets="token_embedding|ln_"))
    with pytest.raises(ValueError, match="is not a regular expression"):
        LoraConfig(rank=2, targets="(query")


def test_gradients_reach_the_adapters_and_skip_the_base_weight_products():
    """Differentiating the adapters alone: A gets no gradient while B = 0, B does; and the
    compiled gradient does fewer FLOPs than the full one (no x^T dy for the frozen kernels)."""
    cfg, lora = dataclasses.replace(GPT, d_model=64, d_mlp=256), LoraConfig(rank=2)
    base, adapters = _pieces(cfg, lora)
    tokens, mask = _tokens(3, batch=8, seq=16)

    def loss_adapted(ad):
        return jnp.sum(embed(Adapted(base, ad, lora), cfg, tokens, mask)[:, :8])

    def loss_full(p):
        return jnp.sum(embed(p, cfg, tokens, mask)[:, :8])

    grads = jax.grad(loss_adapted)(adapters)
    for path in L.adapter_paths(grads):
        pair = L._get(grads, path)
        assert not np.any(pair["lora_a"]), path  # B = 0: no signal reaches A yet
        assert np.any(pair["lora_b"]), path
    flops = {
        name: jax.jit(jax.grad(f)).lower(x).compile().cost_analysis()["flops"]
        for name, f, x in (("lora", loss_adapted, adapters), ("full", loss_full, base))
    }
    assert flops["lora"] < 0.9 * flops["full"], flops
