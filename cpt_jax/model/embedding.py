"""The encoder as a function: (params, tokens, mask) -> normalised embeddings."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cpt_jax.batch import PackedSide, PaddedSide, Side
from cpt_jax.model.config import ModelConfig
from cpt_jax.model.encoder import Encoder
from cpt_jax.model.lora import Adapted, LoraConfig, init_adapters
from cpt_jax.model.pooling import eos_positions, l2_normalize, pool, segment_mean_pool, take_tokens

Array = jax.Array
Params = Any


def _bound(params: Params, cfg: ModelConfig) -> tuple[Encoder, dict[str, Params]]:
    """The module and its variables for a plain parameter tree or an Adapted one (LoRA)."""
    if isinstance(params, Adapted):
        return Encoder(cfg, params.config), {"params": params.base, "lora": params.adapters}
    return Encoder(cfg), {"params": params}


def init_boxed(cfg: ModelConfig, rng: Array) -> Params:
    """Encoder parameters still wrapped in nn.Partitioned (logical axis names attached)."""
    tokens = jnp.ones((1, min(cfg.max_len, 8)), jnp.int32)
    return Encoder(cfg).init({"params": rng}, tokens, tokens)["params"]


def init_boxed_adapters(cfg: ModelConfig, lora: LoraConfig, rng: Array) -> Params:
    """LoRA adapters (nn.Partitioned leaves) for the encoder of `cfg`, drawn from fold_in(rng, 1): the
    adapters a run of seed s starts with, for rng = key(s), whatever its base."""
    return init_adapters(jax.eval_shape(lambda: init_boxed(cfg, rng)), lora, jax.random.fold_in(rng, 1))


def init_params(cfg: ModelConfig, rng: Array) -> Params:
    """Plain encoder parameter tree (float32)."""
    return nn.meta.unbox(init_boxed(cfg, rng))


def embed(
    params: Params,
    cfg: ModelConfig,
    tokens: Array,
    mask: Array,
    dropout_rng: Array | None = None,
) -> Array:
    """tokens, mask: [batch, seq] -> L2-normalised float32 embeddings [batch, d_model]; params: the
    encoder tree, or model.lora.Adapted (a frozen base with LoRA adapters).

    Dropout is active iff a dropout_rng is given. With EOS pooling (and ModelConfig.eos_last_layer)
    the encoder's last layer runs at the EOS positions alone (Encoder's `positions`): the same
    embeddings, fewer FLOPs.
    """
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    encoder, variables = _bound(params, cfg)
    apply = functools.partial(encoder.apply, variables, tokens, mask, dropout_rng is None, rngs=rngs)
    if cfg.pooling == "eos" and cfg.eos_last_layer:
        return l2_normalize(apply(positions=eos_positions(mask)).astype(jnp.float32))
    return pool(apply(), mask, cfg.pooling)


def embed_packed(
    params: Params,
    cfg: ModelConfig,
    tokens: Array,
    segments: Array,
    ends: Array,
    dropout_rng: Array | None = None,
) -> Array:
    """Embeddings of sequences packed several to a row (data/packing.py).

    tokens, segments: [groups, rows, seq] int32 (segments: the sequence 0..n-1 of each token
    within its group, -1: padding); ends: [groups, n] int32, each sequence's last (EOS) token as
    the group-local flat index row * seq + column -> L2-normalised float32 [groups * n, d_model],
    sequence j of group g at row g * n + j. The same embeddings as embed() of the sequences one
    to a row: a sequence attends only to itself and its positions restart at 0.
    """
    groups, rows, seq = tokens.shape
    flat_segments = segments.reshape(groups * rows, seq)
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    encoder, variables = _bound(params, cfg)
    apply = functools.partial(
        encoder.apply, variables, tokens.reshape(groups * rows, seq), flat_segments >= 0,
        dropout_rng is None, rngs=rngs, segments=flat_segments,
    )
    if cfg.pooling == "eos" and cfg.eos_last_layer:
        pooled = apply(positions=ends)
    elif cfg.pooling == "eos":
        pooled = take_tokens(apply(), ends)[:, 0]
    else:
        hidden = apply()
        pooled = segment_mean_pool(hidden.reshape(groups, rows * seq, -1), segments.reshape(groups, -1), ends.shape[1])
    return l2_normalize(pooled.astype(jnp.float32))


def embed_side(params: Params, cfg: ModelConfig, side: Side, dropout_rng: Array | None = None) -> Array:
    """embed() of a PaddedSide [n, seq], or embed_packed() of a PackedSide -> [sequences, d_model]."""
    if isinstance(side, PackedSide):
        return embed_packed(params, cfg, side.tokens, side.segments, side.ends, dropout_rng)
    if isinstance(side, PaddedSide):
        return embed(params, cfg, side.tokens, side.mask, dropout_rng)
    raise TypeError(f"embed_side takes a PaddedSide or PackedSide (cpt_jax.batch), not {type(side).__name__}.")


def real_tokens(side: Side) -> Array:
    """How many real (not padding) tokens a side holds, packed or not."""
    return jnp.sum(side.segments >= 0) if isinstance(side, PackedSide) else jnp.sum(side.mask)


def param_count(cfg: ModelConfig) -> int:
    """Exact number of encoder parameters, from the abstract (never allocated) init."""
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
    return sum(int(x.size) for x in jax.tree.leaves(shapes))
