"""The encoder as a function: (params, tokens, mask) -> normalised embeddings."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cpt_jax.model.config import ModelConfig
from cpt_jax.model.encoder import Encoder
from cpt_jax.model.pooling import eos_positions, l2_normalize, pool

Array = jax.Array
Params = Any


def init_boxed(cfg: ModelConfig, rng: Array) -> Params:
    """Encoder parameters still wrapped in nn.Partitioned (logical axis names attached)."""
    tokens = jnp.ones((1, min(cfg.max_len, 8)), jnp.int32)
    return Encoder(cfg).init({"params": rng}, tokens, tokens)["params"]


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
    """tokens, mask: [batch, seq] -> L2-normalised float32 embeddings [batch, d_model].

    Dropout is active iff a dropout_rng is given. With EOS pooling (and ModelConfig.eos_last_layer)
    the encoder's last layer runs at the EOS positions alone (Encoder's `positions`): the same
    embeddings, fewer FLOPs.
    """
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    apply = functools.partial(Encoder(cfg).apply, {"params": params}, tokens, mask, dropout_rng is None, rngs=rngs)
    if cfg.pooling == "eos" and cfg.eos_last_layer:
        return l2_normalize(apply(positions=eos_positions(mask)).astype(jnp.float32))
    return pool(apply(), mask, cfg.pooling)


def param_count(cfg: ModelConfig) -> int:
    """Exact number of encoder parameters, from the abstract (never allocated) init."""
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
    return sum(int(x.size) for x in jax.tree.leaves(shapes))
