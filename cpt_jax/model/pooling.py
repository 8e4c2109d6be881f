"""Pooling hidden states into one embedding per sequence (pure functions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def eos_positions(mask: Array) -> Array:
    """Position of the last real token, which the tokenizer guarantees is the side's EOS.

    mask: [batch, seq] (1 = real token, right-padded) -> int32 [batch].
    """
    return jnp.sum(mask.astype(jnp.int32), axis=-1) - 1


def eos_pool(hidden: Array, mask: Array) -> Array:
    """Hidden state at the EOS token. hidden: [batch, seq, d]; mask: [batch, seq] -> [batch, d]."""
    return jnp.take_along_axis(hidden, eos_positions(mask)[:, None, None], axis=1)[:, 0]


def mean_pool(hidden: Array, mask: Array) -> Array:
    """Mean of the hidden states over real tokens. hidden: [batch, seq, d] -> [batch, d]."""
    m = mask.astype(hidden.dtype)[..., None]
    return jnp.sum(hidden * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)


def take_tokens(x: Array, index: Array) -> Array:
    """Tokens of groups of rows: x [batch, seq, ...], index [groups, n] int -> [groups * n, 1, ...].

    Each group is batch // groups consecutive rows; index holds group-local flat token indices
    row * seq + column. Grouping the rows keeps the gather on each device's own rows when the
    groups are split over devices. index [batch, 1] is one column per row.
    """
    groups, n = index.shape
    flat = x.reshape(groups, -1, *x.shape[2:])
    out = jnp.take_along_axis(flat, index.reshape(groups, n, *(1,) * (x.ndim - 2)), axis=1)
    return out.reshape(groups * n, 1, *x.shape[2:])


def segment_mean_pool(hidden: Array, segments: Array, n: int) -> Array:
    """Mean of each packed sequence's hidden states.

    hidden: [groups, tokens, d]; segments: [groups, tokens] int (the sequence 0..n-1 of each
    token within its group, -1: padding) -> [groups * n, d].
    """
    member = (segments[:, None, :] == jnp.arange(n)[None, :, None]).astype(hidden.dtype)  # [groups, n, tokens]
    sums = jnp.einsum("gnt,gtd->gnd", member, hidden)
    counts = jnp.maximum(jnp.sum(member, axis=-1, keepdims=True), 1)
    return (sums / counts).reshape(-1, hidden.shape[-1])


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
    """Rows scaled to unit L2 norm. x: [batch, d] -> [batch, d]."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def pool(hidden: Array, mask: Array, kind: str) -> Array:
    """Pooled, L2-normalised float32 embedding [batch, d] by ModelConfig.pooling."""
    pooled = eos_pool(hidden, mask) if kind == "eos" else mean_pool(hidden, mask)
    return l2_normalize(pooled.astype(jnp.float32))


def nested_prefix(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """Host-side Matryoshka cut: [n, D] unit rows -> their first dim values, L2-normalised again
    (float32 [n, dim]); the embedding a run trained with LossConfig.matryoshka_dims has at dim."""
    cut = np.asarray(embeddings[:, :dim], np.float32)
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
