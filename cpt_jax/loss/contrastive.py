"""Symmetric InfoNCE over in-batch negatives with a learned temperature (pure functions).

logits[i, j] = cos(x_i, y_j) * exp(log_temperature); the loss is the mean of the
cross-entropies x -> y (rows) and y -> x (columns), labels on the diagonal.

`contrastive_loss` is the plain single-array form (the reference);
`sharded_contrastive_loss` is the same quantity under `jax.shard_map`: each data shard
holds N_local rows, all-gathers the other side's N_global embeddings, and builds only its
[N_local, N_global] block of the logits (open_clip's "local loss" with gathered columns).
Memory per device therefore grows as N_local x N_global, never N x N.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

Array = jax.Array


def _cross_entropy_sum(logits: Array, labels: Array) -> Array:
    """Summed cross-entropy. logits: [rows, cols]; labels: [rows] column indices."""
    log_z = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.sum(log_z - picked)


def _correct_sum(logits: Array, labels: Array) -> Array:
    return jnp.sum((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def _block_terms(
    x_rows: Array, y_rows: Array, x_cols: Array, y_cols: Array, labels: Array, log_temperature: Array
) -> tuple[Array, Array, Array]:
    """Summed loss and correct counts of one row block against all columns.

    x_rows, y_rows: [rows, d]; x_cols, y_cols: [N, d]; labels: [rows] -> three scalars.
    The logits are float32 whatever the embedding dtype.
    """
    scale = jnp.exp(log_temperature.astype(jnp.float32))
    f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
    logits_xy = f32(x_rows) @ f32(y_cols).T * scale  # [rows, N]: x_i against every y
    logits_yx = f32(y_rows) @ f32(x_cols).T * scale  # [rows, N]: y_i against every x
    loss_sum = _cross_entropy_sum(logits_xy, labels) + _cross_entropy_sum(logits_yx, labels)
    return loss_sum, _correct_sum(logits_xy, labels), _correct_sum(logits_yx, labels)


def contrastive_loss(x: Array, y: Array, log_temperature: Array) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE on one array.

    x, y: [N, d] L2-normalised embeddings (pair i is (x_i, y_i)); log_temperature: [] -> loss [],
    metrics {"accuracy_xy", "accuracy_yx"} (in-batch top-1 retrieval accuracy each way).
    """
    n = x.shape[0]
    labels = jnp.arange(n)
    loss_sum, correct_xy, correct_yx = _block_terms(x, y, x, y, labels, log_temperature)
    return loss_sum / (2 * n), {"accuracy_xy": correct_xy / n, "accuracy_yx": correct_yx / n}


def sharded_contrastive_loss(
    x: Array,
    y: Array,
    log_temperature: Array,
    mesh: Mesh,
    batch_axes: Sequence[str],
) -> tuple[Array, dict[str, Array]]:
    """`contrastive_loss` with the batch sharded over `batch_axes` of `mesh`.

    x, y: [N, d] global arrays whose rows are split over batch_axes; log_temperature: [].
    Each shard computes its N_local rows against the all-gathered columns; the sums are
    psum'd, so loss and gradients equal the single-array form.
    """
    axes = tuple(batch_axes)
    n_global = x.shape[0]

    def local(x_loc: Array, y_loc: Array, log_t: Array) -> tuple[Array, Array, Array]:
        n_local = x_loc.shape[0]
        x_all = jax.lax.all_gather(x_loc, axes, tiled=True)  # [N, d]
        y_all = jax.lax.all_gather(y_loc, axes, tiled=True)
        labels = jax.lax.axis_index(axes) * n_local + jnp.arange(n_local)
        sums = _block_terms(x_loc, y_loc, x_all, y_all, labels, log_t)
        return tuple(jax.lax.psum(s, axes) for s in sums)

    loss_sum, correct_xy, correct_yx = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(axes), P(axes), P()),
        out_specs=(P(), P(), P()),
    )(x, y, log_temperature)
    metrics = {"accuracy_xy": correct_xy / n_global, "accuracy_yx": correct_yx / n_global}
    return loss_sum / (2 * n_global), metrics
