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

Hard negatives ("n_tokens", "n_mask" [N, n, seq] in the batch) are a third embedded side,
chunked with their pairs; the loss gets their embeddings [N, n, d] (else None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Batch = dict[str, Array]
# (params, side, dropout_rng or None) -> embeddings [n, d]; side: the arrays of one side of the
# batch without their prefix, {"tokens", "mask"} [n, seq] or packed {"tokens", "segments", "ends"}
# (model.embed_side)
EncodeFn = Callable[[Any, dict[str, Array], Array | None], Array]
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


def batch_side(batch: Batch, side: str) -> dict[str, Array]:
    """The arrays "{side}_*" of a batch (side "x", "y" or "n"), keyed without the prefix; "n_valid"
    belongs to the loss, not the encoder."""
    prefix = side + "_"
    return {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix) and k != "n_valid"}


def encode_grouped(encode: EncodeFn, params: Any, side: dict[str, Array], rng: Array | None) -> Array:
    """encode over groups of unpacked sequences: tokens, mask [rows, n, seq] -> embeddings [rows, n, d]."""
    rows, n = side["tokens"].shape[:2]
    flat = {k: side[k].reshape(rows * n, -1) for k in ("tokens", "mask")}
    return encode(params, flat, rng).reshape(rows, n, -1)


def gradcache_value_and_grad(
    encode: EncodeFn,
    loss_of_embeddings: LossFn,
    params: Any,
    batch: Batch,
    num_shards: int,
    num_chunks: int,
    dropout_rng: Array | None,
) -> tuple[tuple[Array, dict[str, Array]], Any]:
    """((loss, metrics), grads) of loss_of_embeddings(encode(x), encode(y), encode(n) or None, params), chunked.

    batch: {"x_tokens", "x_mask", "y_tokens", "y_mask"}: [N, seq], optionally "n_tokens",
    "n_mask": [N, n, seq] (other keys are ignored), with N divisible by num_shards * num_chunks.
    A packed side ("tokens", "segments" [G, rows, seq], "ends" [G, n]; data/packing.py) has
    G = num_shards * num_chunks groups, one per chunk and shard.
    The same quantity as jax.value_and_grad of the un-chunked loss when the encoder is
    deterministic; with dropout, chunk k uses fold_in(dropout_rng, k).
    """
    with_negatives = "n_tokens" in batch
    sides = ("x", "y", "n") if with_negatives else ("x", "y")
    chunks = {s: jax.tree.map(lambda a: to_chunks(a, num_shards, num_chunks), batch_side(batch, s)) for s in sides}
    ids = jnp.arange(num_chunks)

    def embed_chunk(p: Any, k: Array, c: dict[str, dict[str, Array]]) -> tuple[Array, ...]:
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
    def backward(acc: Any, inputs: tuple[Array, Batch, tuple[Array, ...]]) -> tuple[Any, None]:
        k, c, g_k = inputs
        _, pullback = jax.vjp(lambda p: embed_chunk(p, k, c), params)
        (g,) = pullback(g_k)
        return jax.tree.map(jnp.add, acc, g), None

    grads, _ = jax.lax.scan(backward, grads, (ids, chunks, g_emb))
    return (loss_value, metrics), grads
