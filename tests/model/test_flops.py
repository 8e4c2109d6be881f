"""The FLOPs formulas against the matmuls JAX actually traces (dot_general counted in the jaxpr)."""

from __future__ import annotations

import math

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax.loss import contrastive_loss
from cpt_jax.model import ModelConfig, embed, init_params
from cpt_jax.model.flops import encoder_forward_flops, logits_forward_flops, train_step_flops


def _dot_flops(jaxpr: jex.core.Jaxpr) -> int:
    """2 x (output elements) x (contracted size) summed over every dot_general, sub-jaxprs
    included; a scan body counts once per iteration."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract_lhs, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract_lhs)
        times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for sub in jex.core.jaxprs_in_params(eqn.params):
            total += times * _dot_flops(sub)
    return total


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(vocab_size=300, d_model=64, num_layers=3, num_heads=4, d_mlp=96, max_len=32),
        ModelConfig(vocab_size=300, d_model=64, num_layers=2, num_heads=4, d_mlp=96, max_len=32, scan_layers=False,
                    attention="bidirectional", pooling="mean"),
        ModelConfig(vocab_size=300, d_model=64, num_layers=2, num_heads=8, num_kv_heads=2, d_mlp=80, max_len=32,
                    norm="rmsnorm", position="rope", activation="silu", gated_mlp=True, qkv_bias=False,
                    out_bias=False, mlp_bias=False),
        ModelConfig(vocab_size=300, d_model=64, num_layers=3, num_heads=4, d_mlp=96, max_len=32, eos_last_layer=False),
    ],
    ids=["gpt_scan", "bert_unrolled", "llama_gqa", "gpt_full_last_layer"],
)
def test_encoder_forward_flops_match_traced_matmuls(cfg: ModelConfig) -> None:
    params = init_params(cfg, jax.random.key(0))
    batch, seq = 3, 20
    tokens = jnp.ones((batch, seq), jnp.int32)
    jaxpr = jax.make_jaxpr(lambda p: embed(p, cfg, tokens, tokens))(params).jaxpr
    assert _dot_flops(jaxpr) == batch * encoder_forward_flops(cfg, seq)


@pytest.mark.parametrize("negatives", [0, 2])
def test_logits_forward_flops_match_traced_matmuls(negatives: int) -> None:
    n, d = 6, 16
    x = y = jnp.ones((n, d))
    args = (x, y, jnp.zeros(()))
    if negatives:
        args += (jnp.ones((n, negatives, d)), np.ones((n, negatives), bool))
    jaxpr = jax.make_jaxpr(contrastive_loss)(*args).jaxpr
    assert _dot_flops(jaxpr) == logits_forward_flops(n, d, negatives)


def test_train_step_is_three_forwards_of_both_sides_and_logits() -> None:
    cfg = ModelConfig()
    got = train_step_flops(cfg, batch=8, seq_x=16, seq_y=32, negatives_per_pair=1)
    forward = 8 * (encoder_forward_flops(cfg, 16) + 2 * encoder_forward_flops(cfg, 32)) + logits_forward_flops(8, cfg.d_model, 1)
    assert got == 3 * forward
    # GPT-2-small-like sanity check of the per-token count: 2 x (12 d^2) per layer plus attention.
    assert encoder_forward_flops(cfg, 1) == cfg.num_layers * (2 * 12 * cfg.d_model**2 + 4 * cfg.d_model)
