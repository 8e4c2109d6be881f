"""The transformer encoder E of cpt-text / cpt-code, in Flax linen.

A pre-norm GPT-style stack (causal self-attention by default, as in the paper) with a
bidirectional option for the BERT family. The module maps token ids to the last layer's
hidden states; pooling lives in pooling.py so the encoder stays a plain function of
(params, tokens, mask).

Every parameter carries logical axis names ("vocab", "embed", "heads", "kv", "mlp",
"layers", "pos"); activations are constrained with "act_*" names. parallel/rules.py maps
both onto mesh axes, so sharding is a config table, not code.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cpt_jax.model.config import ModelConfig

Array = jax.Array

_dense_init = nn.initializers.normal(stddev=0.02)


def _param_init(names: tuple[str | None, ...], init: Any = _dense_init) -> Any:
    return nn.with_logical_partitioning(init, names)


def _constrain(x: Array, names: tuple[str | None, ...]) -> Array:
    # No-op unless the caller traces under a mesh and nn.logical_axis_rules.
    return nn.with_logical_constraint(x, names)


def attention_mask(mask: Array, causal: bool) -> Array:
    """Boolean attention mask [batch, 1, q_len, k_len] from a padding mask [batch, seq].

    Queries may attend to real keys only (and, if causal, to keys at or before themselves).
    """
    keys = mask.astype(bool)[:, None, None, :]
    if not causal:
        return keys
    seq = mask.shape[-1]
    return keys & jnp.tril(jnp.ones((seq, seq), bool))[None, None]


class SelfAttention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, attn_mask: Array, deterministic: bool) -> Array:
        """x: [batch, seq, d_model] -> [batch, seq, d_model]."""
        cfg = self.config
        dt = cfg.compute_dtype
        shape = (cfg.d_model, cfg.num_heads, cfg.head_dim)
        qkv = []
        for name in ("query", "key", "value"):
            # Explicit params + einsum (not DenseGeneral): its flat-then-reshape init clashes
            # with 3-d logical constraints when a mesh is active.
            kernel = self.param(f"{name}_kernel", _param_init(("embed", "heads", "kv")), shape)
            bias = self.param(f"{name}_bias", _param_init(("heads", "kv"), nn.initializers.zeros), shape[1:])
            t = jnp.einsum("bsd,dhk->bshk", x.astype(dt), kernel.astype(dt)) + bias.astype(dt)
            qkv.append(_constrain(t, ("act_batch", "act_length", "act_heads", "act_kv")))
        out = jax.nn.dot_product_attention(*qkv, mask=attn_mask)
        kernel = self.param("out_kernel", _param_init(("heads", "kv", "embed")), (cfg.num_heads, cfg.head_dim, cfg.d_model))
        bias = self.param("out_bias", _param_init(("embed",), nn.initializers.zeros), (cfg.d_model,))
        out = jnp.einsum("bshk,hkd->bsd", out, kernel.astype(dt)) + bias.astype(dt)
        return nn.Dropout(cfg.dropout)(out, deterministic=deterministic)


class Mlp(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        """x: [batch, seq, d_model] -> [batch, seq, d_model]."""
        cfg = self.config
        h = nn.Dense(
            cfg.d_mlp,
            dtype=cfg.compute_dtype,
            kernel_init=_param_init(("embed", "mlp")),
            bias_init=_param_init(("mlp",), nn.initializers.zeros),
            name="wi",
        )(x)
        h = _constrain(nn.gelu(h), ("act_batch", "act_length", "act_mlp"))
        out = nn.Dense(
            cfg.d_model,
            dtype=cfg.compute_dtype,
            kernel_init=_param_init(("mlp", "embed")),
            bias_init=_param_init(("embed",), nn.initializers.zeros),
            name="wo",
        )(h)
        return nn.Dropout(cfg.dropout)(out, deterministic=deterministic)


def _layer_norm(cfg: ModelConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps,
        dtype=cfg.compute_dtype,
        scale_init=_param_init(("embed",), nn.initializers.ones),
        bias_init=_param_init(("embed",), nn.initializers.zeros),
        name=name,
    )


class Block(nn.Module):
    """Pre-norm residual block: x + Attn(LN(x)); x + MLP(LN(x))."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array, attn_mask: Array, deterministic: bool) -> tuple[Array, None]:
        cfg = self.config
        x = x + SelfAttention(cfg, name="attention")(_layer_norm(cfg, "ln_attention")(x), attn_mask, deterministic)
        x = x + Mlp(cfg, name="mlp")(_layer_norm(cfg, "ln_mlp")(x), deterministic)
        # The (carry, output) pair lets the same module run under nn.scan.
        return _constrain(x, ("act_batch", "act_length", "act_embed")), None


def _block_stack(cfg: ModelConfig) -> Any:
    block = Block
    if cfg.remat != "none":
        policy = jax.checkpoint_policies.checkpoint_dots if cfg.remat == "dots" else None
        block = nn.remat(Block, policy=policy, static_argnums=(3,))
    if not cfg.scan_layers:
        return block
    return nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast),
        length=cfg.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )


class Encoder(nn.Module):
    """Token ids -> last-layer hidden states.

    __call__(tokens [batch, seq] int32, mask [batch, seq] int) -> [batch, seq, d_model].
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens: Array, mask: Array, deterministic: bool = True) -> Array:
        cfg = self.config
        seq = tokens.shape[-1]
        if seq > cfg.max_len:
            raise ValueError(
                f"Sequence length {seq} exceeds ModelConfig.max_len={cfg.max_len}; "
                "lower the data max_len or raise ModelConfig.max_len."
            )
        tok_emb = nn.Embed(
            cfg.vocab_size, cfg.d_model, embedding_init=_param_init(("vocab", "embed")), name="token_embedding"
        )
        pos_emb = self.param("position_embedding", _param_init(("pos", "embed")), (cfg.max_len, cfg.d_model))
        x = tok_emb(tokens) + pos_emb[None, :seq]
        x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic).astype(cfg.compute_dtype)
        x = _constrain(x, ("act_batch", "act_length", "act_embed"))
        attn_mask = attention_mask(mask, causal=cfg.attention == "causal")
        stack = _block_stack(cfg)
        if cfg.scan_layers:
            x, _ = stack(cfg, name="blocks")(x, attn_mask, deterministic)
        else:
            for i in range(cfg.num_layers):
                x, _ = stack(cfg, name=f"block_{i}")(x, attn_mask, deterministic)
        return _layer_norm(cfg, "ln_final")(x)
