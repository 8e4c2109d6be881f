"""Symmetric InfoNCE over in-batch negatives with a learned temperature (pure functions).

logits[i, j] = cos(x_i, y_j) * exp(log_temperature); the loss is the mean of the
cross-entropies x -> y (rows) and y -> x (columns), labels on the diagonal.

Hard negatives (optional): negatives[i, m] is the m-th hard negative (a y-side text) of pair i,
negatives_valid[i, m] whether it exists. Every valid negative of the whole batch is an extra
column of the x -> y logits, [x @ Y^T | x @ Nflat^T] * exp(tau) with Nflat = the N*n
negatives; invalid ones get -inf. The y -> x direction is unchanged. Without negatives the
code path is exactly the plain one.

`contrastive_loss` is the plain single-array form (the reference);
`sharded_contrastive_loss` is the same quantity under `jax.shard_map`: each data shard
holds N_local rows, all-gathers the other side's N_global embeddings (and all negatives), and
builds only its [N_local, N_global (+ N_global * n)] block of the logits (open_clip's "local
loss" with gathered columns). Memory per device therefore grows as N_local x N_global, never N x N.
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
    x_rows: Array,
    y_rows: Array,
    x_cols: Array,
    y_cols: Array,
    labels: Array,
    log_temperature: Array,
    neg_cols: Array | None = None,
    neg_valid: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Summed loss and correct counts of one row block against all columns.

    x_rows, y_rows: [rows, d]; x_cols, y_cols: [N, d]; labels: [rows]; neg_cols: [M, d] extra
    x -> y columns, neg_valid: [M] bool -> three scalars. The logits are float32 whatever the
    embedding dtype.
    """
    scale = jnp.exp(log_temperature.astype(jnp.float32))
    f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
    logits_xy = f32(x_rows) @ f32(y_cols).T * scale  # [rows, N]: x_i against every y
    if neg_cols is not None:
        logits_xn = f32(x_rows) @ f32(neg_cols).T * scale  # [rows, M]: x_i against every negative
        logits_xy = jnp.concatenate([logits_xy, jnp.where(neg_valid[None, :], logits_xn, -jnp.inf)], axis=1)
    logits_yx = f32(y_rows) @ f32(x_cols).T * scale  # [rows, N]: y_i against every x
    loss_sum = _cross_entropy_sum(logits_xy, labels) + _cross_entropy_sum(logits_yx, labels)
    return loss_sum, _correct_sum(logits_xy, labels), _correct_sum(logits_yx, labels)


def contrastive_loss(
    x: Array,
    y: Array,
    log_temperature: Array,
    negatives: Array | None = None,
    negatives_valid: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE on one array.

    x, y: [N, d] L2-normalised embeddings (pair i is (x_i, y_i)); log_temperature: [];
    negatives: [N, n, d] hard negatives with negatives_valid: [N, n] (bool or 0/1), or None
    -> loss [], metrics {"accuracy_xy", "accuracy_yx"} (in-batch top-1 retrieval accuracy each
    way; x -> y competes with the negatives too).
    """
    n = x.shape[0]
    labels = jnp.arange(n)
    neg_cols, neg_valid = _flatten_negatives(negatives, negatives_valid)
    loss_sum, correct_xy, correct_yx = _block_terms(x, y, x, y, labels, log_temperature, neg_cols, neg_valid)
    return loss_sum / (2 * n), {"accuracy_xy": correct_xy / n, "accuracy_yx": correct_yx / n}


def _flatten_negatives(negatives: Array | None, valid: Array | None) -> tuple[Array | None, Array | None]:
    """[N, n, d], [N, n] -> [N * n, d], [N * n] bool (None stays None)."""
    if negatives is None:
        return None, None
    if valid is None or valid.shape != negatives.shape[:2]:
        raise ValueError(
            f"negatives {negatives.shape} need negatives_valid of shape {negatives.shape[:2]}, got "
            f"{None if valid is None else valid.shape}."
        )
    return negatives.reshape(-1, negatives.shape[-1]), valid.reshape(-1).astype(bool)


def sharded_contrastive_loss(
    x: Array,
    y: Array,
    log_temperature: Array,
    mesh: Mesh,
    batch_axes: Sequence[str],
    negatives: Array | None = None,
    negatives_valid: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """`contrastive_loss` with the batch sharded over `batch_axes` of `mesh`.

    x, y: [N, d] global arrays whose rows are split over batch_axes; log_temperature: [];
    negatives: [N, n, d] and negatives_valid: [N, n], rows split the same way, or None.
    Each shard computes its N_local rows against the all-gathered columns; the sums are
    psum'd, so loss and gradients equal the single-array form.
    """
    axes = tuple(batch_axes)
    n_global = x.shape[0]

    def local(x_loc: Array, y_loc: Array, log_t: Array, *negs: Array) -> tuple[Array, Array, Array]:
        n_local = x_loc.shape[0]
        x_all = jax.lax.all_gather(x_loc, axes, tiled=True)  # [N, d]
        y_all = jax.lax.all_gather(y_loc, axes, tiled=True)
        labels = jax.lax.axis_index(axes) * n_local + jnp.arange(n_local)
        # Hard negatives: every shard's, as columns [N * n, d] of every row.
        gathered = [jax.lax.all_gather(a, axes, tiled=True) for a in negs]
        neg_cols, neg_valid = _flatten_negatives(*gathered) if negs else (None, None)
        sums = _block_terms(x_loc, y_loc, x_all, y_all, labels, log_t, neg_cols, neg_valid)
        return tuple(jax.lax.psum(s, axes) for s in sums)

    args, specs = (x, y, log_temperature), (P(axes), P(axes), P())
    if negatives is not None:
        _flatten_negatives(negatives, negatives_valid)  # shape check outside the shard_map
        args, specs = args + (negatives, negatives_valid), specs + (P(axes), P(axes))
    loss_sum, correct_xy, correct_yx = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=specs,
        out_specs=(P(), P(), P()),
    )(*args)
    metrics = {"accuracy_xy": correct_xy / n_global, "accuracy_yx": correct_yx / n_global}
    return loss_sum / (2 * n_global), metrics
