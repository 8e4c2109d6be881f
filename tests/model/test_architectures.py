"""ModelConfig's architecture fields: the default tree is the paper's, and the GPT-2 / Llama /
Qwen2 / BERT variants have the parameters, logical names and equivalences they should.
(Numerical agreement with transformers is in tests/interop/test_hf_weights.py.)"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from cpt_jax.model import embed, init_boxed, init_params
from cpt_jax.model.encoder import Encoder, rotary
from cpt_jax.model.pooling import eos_pool, eos_positions, pool
from cpt_jax.parallel.rules import DEFAULT_RULES, logical_shardings
from tests.helpers import TINY, mesh, random_params, random_side

LLAMA = dataclasses.replace(
    TINY, norm="rmsnorm", position="rope", gated_mlp=True, activation="silu", num_kv_heads=2,
    qkv_bias=False, out_bias=False, mlp_bias=False, rope_theta=500.0,
)
QWEN2 = dataclasses.replace(LLAMA, qkv_bias=True, num_kv_heads=1)
BERT = dataclasses.replace(
    TINY, norm_position="post", embedding_norm=True, final_norm=False, attention="bidirectional", activation="gelu",
)
VARIANTS = {"default": TINY, "llama": LLAMA, "qwen2": QWEN2, "bert": BERT}

# The default (paper) encoder's tree: checkpoints and tests/parallel rely on these names.
DEFAULT_TREE = {
    "token_embedding/embedding": (64, 32),
    "position_embedding": (16, 32),
    **{f"blocks/attention/{n}_kernel": (2, 32, 4, 8) for n in ("query", "key", "value")},
    **{f"blocks/attention/{n}_bias": (2, 4, 8) for n in ("query", "key", "value")},
    "blocks/attention/out_kernel": (2, 4, 8, 32),
    "blocks/attention/out_bias": (2, 32),
    "blocks/mlp/wi/kernel": (2, 32, 64),
    "blocks/mlp/wi/bias": (2, 64),
    "blocks/mlp/wo/kernel": (2, 64, 32),
    "blocks/mlp/wo/bias": (2, 32),
    **{f"blocks/{ln}/{p}": (2, 32) for ln in ("ln_attention", "ln_mlp") for p in ("scale", "bias")},
    "ln_final/scale": (32,),
    "ln_final/bias": (32,),
}


def _tree(cfg) -> dict[str, tuple[int, ...]]:
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
    return {"/".join(k.key for k in p): tuple(x.shape) for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]}


def test_default_tree_is_unchanged():
    assert _tree(TINY) == DEFAULT_TREE


def test_variant_trees():
    llama, qwen2, bert = _tree(LLAMA), _tree(QWEN2), _tree(BERT)
    assert "position_embedding" not in llama  # rotary: no table
    assert llama["blocks/attention/query_kernel"] == (2, 32, 4, 8)
    assert llama["blocks/attention/key_kernel"] == llama["blocks/attention/value_kernel"] == (2, 32, 2, 8)
    assert {"blocks/mlp/wi_gate/kernel", "blocks/mlp/wi/kernel", "blocks/mlp/wo/kernel"} <= llama.keys()
    assert not [k for k in llama if k.endswith("bias")]  # no projection biases, and RMSNorm has none
    assert set(qwen2) - set(llama) == {f"blocks/attention/{n}_bias" for n in ("query", "key", "value")}
    assert qwen2["blocks/attention/key_bias"] == (2, 1, 8)
    assert set(bert) - set(DEFAULT_TREE) == {"ln_embedding/scale", "ln_embedding/bias"}
    assert set(DEFAULT_TREE) - set(bert) == {"ln_final/scale", "ln_final/bias"}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_param_has_logical_names_the_rules_know(name):
    cfg = VARIANTS[name]
    specs = nn.get_partition_spec(jax.eval_shape(lambda: init_boxed(cfg, jax.random.key(0))))
    known = {rule[0] for rule in DEFAULT_RULES}
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
    for (path, spec), shape in zip(jax.tree_util.tree_flatten_with_path(specs)[0], jax.tree.leaves(shapes)):
        assert len(spec) == len(shape.shape) and set(spec) <= known, (jax.tree_util.keystr(path), spec)
    if name == "llama":
        assert tuple(specs["blocks"]["attention"]["key_kernel"]) == ("layers", "embed", "kv_heads", "kv")
        assert tuple(specs["blocks"]["mlp"]["wi_gate"]["kernel"]) == ("layers", "embed", "mlp")


def test_grouped_query_attention_equals_repeated_kv_heads():
    """Query head n reads key/value head n // (num_heads / num_kv_heads), as in HF's repeat_kv."""
    gqa = random_params(LLAMA, seed=1, scale=0.2)
    mha_cfg = dataclasses.replace(LLAMA, num_kv_heads=0)
    mha = jax.tree.map(np.array, gqa)
    group = LLAMA.num_heads // LLAMA.kv_heads
    for name in ("key_kernel", "value_kernel"):
        mha["blocks"]["attention"][name] = np.repeat(gqa["blocks"]["attention"][name], group, axis=2)
    tokens, mask = random_side(np.random.default_rng(0), 4, 10)
    a, b = jax.jit(lambda g, m: (embed(g, LLAMA, tokens, mask), embed(m, mha_cfg, tokens, mask)))(gqa, mha)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_rotary_scores_depend_only_on_relative_position():
    rng = np.random.default_rng(0)
    q = np.tile(rng.standard_normal((1, 1, 2, 8)), (1, 12, 1, 1)).astype(np.float32)  # the same vector everywhere
    k = np.tile(rng.standard_normal((1, 1, 2, 8)), (1, 12, 1, 1)).astype(np.float32)
    scores = np.einsum("bqhd,bkhd->hqk", np.asarray(rotary(q, 100.0)), np.asarray(rotary(k, 100.0)))
    np.testing.assert_allclose(scores[:, 1:, 1:], scores[:, :-1, :-1], atol=1e-5)  # shift both: same score
    assert np.abs(scores[:, 0, 1:] - scores[:, 0, :-1]).max() > 1e-2  # but the offset matters
    np.testing.assert_array_equal(np.asarray(rotary(q, 100.0))[:, 0], q[:, 0])  # position 0 is unrotated


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_scan_loop_and_remat_agree(name):
    cfg = VARIANTS[name]
    scanned = random_params(cfg, seed=2, scale=0.1)
    loop_cfg = dataclasses.replace(cfg, scan_layers=False)
    loop = {k: v for k, v in scanned.items() if k != "blocks"}
    for i in range(cfg.num_layers):
        loop[f"block_{i}"] = jax.tree.map(lambda a, i=i: a[i], scanned["blocks"])
    remat_cfg = dataclasses.replace(cfg, remat="full")
    tokens, mask = random_side(np.random.default_rng(3), 4, 10)

    @jax.jit
    def run(s, l):
        return (
            Encoder(cfg).apply({"params": s}, tokens, mask),
            Encoder(loop_cfg).apply({"params": l}, tokens, mask),
            Encoder(remat_cfg).apply({"params": s}, tokens, mask),
        )

    base, looped, remat = run(scanned, loop)
    np.testing.assert_allclose(looped, base, rtol=0, atol=1e-6)
    np.testing.assert_allclose(remat, base, rtol=0, atol=1e-6)


def test_grouped_query_params_shard_and_run_on_a_mesh():
    m = mesh(2, 2, 2)
    shardings = logical_shardings(jax.eval_shape(lambda: init_boxed(LLAMA, jax.random.key(0))), m, DEFAULT_RULES)
    assert shardings["blocks"]["attention"]["key_kernel"].spec == P(None, "fsdp", "tensor", None)  # 2 kv heads, tensor=2
    params = random_params(LLAMA, seed=4, scale=0.1)
    placed = jax.device_put(params, shardings)
    tokens, mask = random_side(np.random.default_rng(4), 8, 10)
    with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):  # activation constraints resolve here
        sharded = jax.jit(lambda p: embed(p, LLAMA, tokens, mask))(placed)
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_allclose(sharded, jax.jit(lambda p: embed(p, LLAMA, tokens, mask))(params), rtol=0, atol=1e-6)



@pytest.mark.parametrize(
    "name, attention, layers, scan, remat",
    [
        ("default", "causal", 3, True, "none"),
        ("default", "bidirectional", 1, True, "none"),
        ("llama", "causal", 3, False, "none"),
        ("llama", "bidirectional", 3, True, "full"),
        ("qwen2", "causal", 3, True, "dots"),
        ("qwen2", "bidirectional", 2, False, "none"),
        ("bert", "causal", 1, False, "none"),
        ("bert", "bidirectional", 3, True, "none"),
    ],
)
def test_last_layer_at_eos_positions_equals_the_full_stack(name, attention, layers, scan, remat):
    """Encoder(positions=EOS) - the last layer's queries, MLP and final norm at the EOS token only -
    gives the full stack's hidden state there and the same gradients (float32 rounding apart), for
    every architecture, scanned (1 to 3 layers) and unrolled, with and without remat."""
    tokens, mask = random_side(np.random.default_rng(7), 5, 12)
    weights = np.random.default_rng(0).normal(size=(5, TINY.d_model)).astype(np.float32)
    cfg = dataclasses.replace(VARIANTS[name], attention=attention, num_layers=layers, scan_layers=scan, remat=remat)
    encoder, params = Encoder(cfg), random_params(cfg, scale=0.2)

    def full(p):
        return eos_pool(encoder.apply({"params": p}, tokens, mask), mask)

    def at_eos(p):
        return encoder.apply({"params": p}, tokens, mask, positions=eos_positions(mask))

    (v_full, g_full), (v_eos, g_eos) = (
        jax.jit(jax.value_and_grad(lambda p, f=f: (f(p) * weights).sum()))(params) for f in (full, at_eos)
    )
    np.testing.assert_allclose(v_eos, v_full, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_eos, g_full)
    np.testing.assert_allclose(jax.jit(at_eos)(params), jax.jit(full)(params), rtol=1e-5, atol=1e-5)
    # Any position, not only the last real one (where a causal row sees every real key anyway).
    middle = eos_positions(mask) // 2
    hidden = encoder.apply({"params": params}, tokens, mask)
    np.testing.assert_allclose(
        encoder.apply({"params": params}, tokens, mask, positions=middle),
        np.take_along_axis(np.asarray(hidden), np.asarray(middle)[:, None, None], axis=1)[:, 0],
        rtol=1e-5, atol=1e-5,
    )


def test_embed_pools_eos_through_the_last_layer_at_eos():
    tokens, mask = random_side(np.random.default_rng(8), 4, 10)
    params = random_params(TINY)
    hidden = Encoder(TINY).apply({"params": params}, tokens, mask)
    np.testing.assert_allclose(embed(params, TINY, tokens, mask), pool(hidden, mask, "eos"), rtol=1e-5, atol=1e-6)
    jaxpr = str(jax.make_jaxpr(lambda p: embed(p, TINY, tokens, mask))(params))
    assert "f32[4,1,4,8]" in jaxpr  # the last layer's queries: one position per row, 4 heads of 8
    full = dataclasses.replace(TINY, eos_last_layer=False)  # the whole last layer, then the EOS row
    np.testing.assert_allclose(embed(params, full, tokens, mask), pool(hidden, mask, "eos"), rtol=1e-5, atol=1e-6)
    assert "f32[4,1,4,8]" not in str(jax.make_jaxpr(lambda p: embed(p, full, tokens, mask))(params))


def test_init_with_positions_gives_the_same_parameters_and_output_shape():
    tokens, mask = random_side(np.random.default_rng(9), 3, 8)
    positions = eos_positions(mask)
    plain = Encoder(TINY).init(jax.random.key(0), tokens, mask)
    out, with_positions = Encoder(TINY).init_with_output(jax.random.key(0), tokens, mask, positions=positions)
    jax.tree.map(np.testing.assert_array_equal, nn.meta.unbox(with_positions), nn.meta.unbox(plain))
    assert out.shape == (3, TINY.d_model)
