"""Gradient caching (GradCache, Gao et al. 2021): the contrastive gradient of a batch too big
to back-propagate at once, exactly.

  1. embed every chunk of the batch without keeping activations (no gradient);
  2. compute the loss over the full, all-gathered batch of embeddings and its gradient with
     respect to the embeddings (and the temperature): cheap, [N, d];
  3. re-embed each chunk under `jax.vjp` and pull its slice of the embedding gradient back to
     the parameters, summing over chunks.
Activation memory is that of one chunk; the result equals the un-chunked gradient. Dropout
sees the same key for a chunk in passes 1 and 3, so the recomputation is faithful.

Chunks are strided over the batch shards: chunk k holds rows [k*c_local, (k+1)*c_local) of
every shard, so each device works on its own rows in every chunk and no rows move.

Hard negatives (PairBatch.negatives: tokens, mask [N, n, seq]) are a third embedded side,
chunked with their pairs; the loss gets their embeddings [N, n, d] (else None).

This is a gradient engine of the train step, not a loss: it knows the batch and the encoder, and
takes the loss of the embeddings as a function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from cpt_jax.batch import PairBatch, PaddedSide, Side

Array = jax.Array
# (params, side, dropout_rng or None) -> embeddings [n, d] (model.embed_side)
EncodeFn = Callable[[Any, Side, Array | None], Array]
# (x_emb [N, d], y_emb [N, d], negatives_emb [N, n, d] or None, params) -> (loss [], metrics)
LossFn = Callable[[Array, Array, Array | None, Any], tuple[Array, dict[str, Array]]]


def to_chunks(x: Array, num_shards: int, num_chunks: int) -> Array:
    """[N, ...] with rows split over num_shards -> [num_chunks, N / num_chunks, ...], strided per shard."""
    n = x.shape[0]
    per_shard = n // num_shards
    c = per_shard // num_chunks
    x = x.reshape(num_shards, num_chunks, c, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1).reshape(num_chunks, num_shards * c, *x.shape[3:])


def from_chunks(x: Array, num_shards: int) -> Array:
    """Inverse of to_chunks: [num_chunks, N / num_chunks, ...] -> [N, ...]."""
    k, rows = x.shape[:2]
    c = rows // num_shards
    x = x.reshape(k, num_shards, c, *x.shape[2:])
    return jnp.swapaxes(x, 0, 1).reshape(k * rows, *x.shape[3:])


def _chunk_keys(rng: Array | None, chunk: Array) -> tuple[Array | None, Array | None]:
    if rng is None:
        return None, None
    key = jax.random.fold_in(rng, chunk)
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


def negatives_key(rng: Array | None) -> Array | None:
    """The dropout key of the negatives side, given the key of a batch or chunk."""
    return None if rng is None else jax.random.fold_in(rng, 2)


def encode_grouped(encode: EncodeFn, params: Any, side: PaddedSide, rng: Array | None) -> Array:
    """encode over groups of unpacked sequences: tokens, mask [rows, n, seq] -> embeddings [rows, n, d]."""
    rows, n = side.tokens.shape[:2]
    flat = PaddedSide(side.tokens.reshape(rows * n, -1), side.mask.reshape(rows * n, -1))
    return encode(params, flat, rng).reshape(rows, n, -1)


def gradcache_value_and_grad(
    encode: EncodeFn,
    loss_of_embeddings: LossFn,
    params: Any,
    batch: PairBatch,
    num_shards: int,
    num_chunks: int,
    dropout_rng: Array | None,
) -> tuple[tuple[Array, dict[str, Array]], Any]:
    """((loss, metrics), grads) of loss_of_embeddings(encode(x), encode(y), encode(n) or None, params), chunked.

    batch: padded sides [N, seq] and optional negatives [N, n, seq], with N divisible by
    num_shards * num_chunks; a PackedSide (tokens, segments [G, rows, seq], ends [G, n]) has
    G = num_shards * num_chunks groups, one per chunk and shard.
    The same quantity as jax.value_and_grad of the un-chunked loss when the encoder is
    deterministic; with dropout, chunk k uses fold_in(dropout_rng, k).
    """
    with_negatives = batch.negatives is not None
    chunks = jax.tree.map(lambda a: to_chunks(a, num_shards, num_chunks), batch.sides())
    ids = jnp.arange(num_chunks)

    def embed_chunk(p: Any, k: Array, c: dict[str, Side]) -> tuple[Array, ...]:
        kx, ky = _chunk_keys(dropout_rng, k)
        out = encode(p, c["x"], kx), encode(p, c["y"], ky)
        if with_negatives:
            kn = negatives_key(None if dropout_rng is None else jax.random.fold_in(dropout_rng, k))
            out += (encode_grouped(encode, p, c["n"], kn),)
        return out

    # Pass 1: embeddings only; lax.map keeps no activations for a backward pass.
    embeddings = jax.lax.map(lambda kc: embed_chunk(params, *kc), (ids, chunks))
    embeddings = tuple(from_chunks(e, num_shards) for e in embeddings)

    # Pass 2: the full-batch loss and its gradient w.r.t. the embeddings and params (temperature).
    def loss(embs: tuple[Array, ...], p: Any) -> tuple[Array, dict[str, Array]]:
        return loss_of_embeddings(embs[0], embs[1], embs[2] if with_negatives else None, p)

    (loss_value, metrics), (g_emb, grads) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(embeddings, params)
    g_emb = tuple(to_chunks(g, num_shards, num_chunks) for g in g_emb)

    # Pass 3: recompute each chunk and pull its embedding gradient back to the parameters.
    def backward(acc: Any, inputs: tuple[Array, dict[str, Side], tuple[Array, ...]]) -> tuple[Any, None]:
        k, c, g_k = inputs
        _, pullback = jax.vjp(lambda p: embed_chunk(p, k, c), params)
        (g,) = pullback(g_k)
        return jax.tree.map(jnp.add, acc, g), None

    grads, _ = jax.lax.scan(backward, grads, (ids, chunks, g_emb))
    return (loss_value, metrics), grads
