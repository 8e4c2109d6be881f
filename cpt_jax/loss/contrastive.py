"""Symmetric InfoNCE over in-batch negatives with a learned temperature (pure functions).

logits[i, j] = cos(x_i, y_j) * exp(log_temperature); the loss is the mean of the
cross-entropies x -> y (rows) and y -> x (columns), labels on the diagonal.

Hard negatives (optional): negatives[i, m] is the m-th hard negative (a y-side text) of pair i,
negatives_valid[i, m] whether it exists. Every valid negative of the whole batch is an extra
column of the x -> y logits, [x @ Y^T | x @ Nflat^T] * exp(tau) with Nflat = the N*n
negatives; invalid ones get -inf. The y -> x direction is unchanged. Without negatives the
code path is exactly the plain one.

False-negative masking (optional, loss/config.LossConfig): with content ids of every text
(cpt_jax.batch.ContentIds), a column whose pair repeats row i's x or y text is masked (-inf) in
both directions, and a hard negative whose text is y_i is masked for row i; with a similarity
margin m, a non-label column whose cosine exceeds row i's positive cosine + m is masked. The
label is never masked, so every row keeps a finite loss. Without masking configured the code
path is exactly the unmasked one.

Matryoshka terms (optional, LossConfig.matryoshka_dims): the loss is the weighted sum of the same
loss over each embedding's first d values, L2-normalised again, computed from the same gathered
embeddings (the full dimension is used as given, so dims (D,) is the plain loss exactly); the
accuracies and masked counts are those of the largest listed dimension, and "loss_dim<d>" each
term's unweighted loss.

`contrastive_loss` is the plain single-array form (the reference);
`sharded_contrastive_loss` is the same quantity under `jax.shard_map`: each data shard
holds N_local rows, all-gathers the other side's N_global embeddings (and all negatives), and
builds only its [N_local, N_global (+ N_global * n)] block of the logits (open_clip's "local
loss" with gathered columns). Memory per device therefore grows as N_local x N_global, never N x N.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from cpt_jax.batch import ContentIds
from cpt_jax.loss.config import LossConfig

Array = jax.Array


class BlockIds(NamedTuple):
    """Content ids (int32 [., 2]) of one row block: row_x, row_y [rows, 2]; col_x, col_y [N, 2];
    negatives [M, 2] of the flattened hard negatives, or None."""

    row_x: Array
    row_y: Array
    col_x: Array
    col_y: Array
    negatives: Array | None


def _cross_entropy_sum(logits: Array, labels: Array) -> Array:
    """Summed cross-entropy. logits: [rows, cols]; labels: [rows] column indices."""
    log_z = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.sum(log_z - picked)


def _correct_sum(logits: Array, labels: Array) -> Array:
    return jnp.sum((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def _same(a: Array, b: Array) -> Array:
    """Whether content ids are equal: a [r, 2], b [c, 2] int32 -> [r, c] bool."""
    return (a[:, None, 0] == b[None, :, 0]) & (a[:, None, 1] == b[None, :, 1])


def _positive(cos: Array, labels: Array) -> Array:
    """Each row's positive cosine: cos [rows, cols], labels [rows] -> [rows, 1]."""
    return jnp.take_along_axis(cos, labels[:, None], axis=-1)


def _masks(
    cos_xy: Array, cos_xn: Array | None, cos_yx: Array, labels: Array, neg_valid: Array | None,
    ids: BlockIds | None, config: LossConfig,
) -> tuple[Array, Array, dict[str, Array]]:
    """The masked logits of one row block and their counts.

    cos_xy, cos_yx: [rows, N]; cos_xn: [rows, M] or None; labels: [rows]; neg_valid: [M] bool;
    ids: the block's content ids (needed with mask_duplicates) -> (mask_xy [rows, N (+ M)] bool,
    mask_yx [rows, N] bool, {"masked_duplicates", "masked_similar"}: int32 counts over both
    directions; a logit both rules mask counts as a duplicate). Invalid negatives (already -inf)
    are never counted.
    """
    off_label = jnp.arange(cos_xy.shape[1])[None, :] != labels[:, None]  # [rows, N]
    no = lambda a: jnp.zeros(a.shape, bool)  # noqa: E731
    dup_in, dup_neg = no(cos_xy), None if cos_xn is None else no(cos_xn)
    if config.mask_duplicates:
        dup_in = (_same(ids.row_x, ids.col_x) | _same(ids.row_y, ids.col_y)) & off_label
        if cos_xn is not None:
            dup_neg = _same(ids.row_y, ids.negatives) & neg_valid[None, :]
    sim_xy, sim_yx, sim_xn = no(cos_xy), no(cos_yx), None if cos_xn is None else no(cos_xn)
    if config.similarity_margin is not None:
        m = config.similarity_margin
        sim_xy = (cos_xy > _positive(cos_xy, labels) + m) & off_label
        sim_yx = (cos_yx > _positive(cos_yx, labels) + m) & off_label
        if cos_xn is not None:
            sim_xn = (cos_xn > _positive(cos_xy, labels) + m) & neg_valid[None, :]
    count = lambda a: jnp.sum(a, dtype=jnp.int32)  # noqa: E731
    counts = {
        "masked_duplicates": 2 * count(dup_in),
        "masked_similar": count(sim_xy & ~dup_in) + count(sim_yx & ~dup_in),
    }
    mask_xy, mask_yx = dup_in | sim_xy, dup_in | sim_yx
    if cos_xn is not None:
        counts["masked_duplicates"] += count(dup_neg)
        counts["masked_similar"] += count(sim_xn & ~dup_neg)
        mask_xy = jnp.concatenate([mask_xy, dup_neg | sim_xn], axis=1)
    return mask_xy, mask_yx, counts


def _block_terms(
    x_rows: Array,
    y_rows: Array,
    x_cols: Array,
    y_cols: Array,
    labels: Array,
    log_temperature: Array,
    neg_cols: Array | None = None,
    neg_valid: Array | None = None,
    ids: BlockIds | None = None,
    config: LossConfig = LossConfig(),
) -> dict[str, Array]:
    """Summed loss and correct counts of one row block against all columns.

    x_rows, y_rows: [rows, d]; x_cols, y_cols: [N, d]; labels: [rows]; neg_cols: [M, d] extra
    x -> y columns, neg_valid: [M] bool; ids: content ids of the rows and columns (with
    config.mask_duplicates) -> {"loss", "correct_xy", "correct_yx"} scalars, and with masking
    configured the block's "masked_duplicates" and "masked_similar" counts. The logits are
    float32 whatever the embedding dtype.
    """
    scale = jnp.exp(log_temperature.astype(jnp.float32))
    f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
    cos_xy = f32(x_rows) @ f32(y_cols).T  # [rows, N]: x_i against every y
    logits_xy = cos_xy * scale
    cos_xn = None
    if neg_cols is not None:
        cos_xn = f32(x_rows) @ f32(neg_cols).T  # [rows, M]: x_i against every negative
        logits_xy = jnp.concatenate([logits_xy, jnp.where(neg_valid[None, :], cos_xn * scale, -jnp.inf)], axis=1)
    cos_yx = f32(y_rows) @ f32(x_cols).T  # [rows, N]: y_i against every x
    logits_yx = cos_yx * scale
    counts = {}
    if config.masks:
        # After the scale: -inf * scale would give the temperature a NaN gradient.
        mask_xy, mask_yx, counts = _masks(cos_xy, cos_xn, cos_yx, labels, neg_valid, ids, config)
        logits_xy = jnp.where(mask_xy, -jnp.inf, logits_xy)
        logits_yx = jnp.where(mask_yx, -jnp.inf, logits_yx)
    loss_sum = _cross_entropy_sum(logits_xy, labels) + _cross_entropy_sum(logits_yx, labels)
    return {
        "loss": loss_sum,
        "correct_xy": _correct_sum(logits_xy, labels),
        "correct_yx": _correct_sum(logits_yx, labels),
        **counts,
    }


def _unit_prefix(a: Array | None, d: int) -> Array | None:
    """The first d values of each row of a [..., D], L2-normalised again; a itself when d == D (it
    is normalised already). None stays None."""
    if a is None or d == a.shape[-1]:
        return a
    p = a[..., :d].astype(jnp.float32)
    return p * jax.lax.rsqrt(jnp.maximum(jnp.sum(p * p, axis=-1, keepdims=True), 1e-24))


def _terms(
    x_rows: Array, y_rows: Array, x_cols: Array, y_cols: Array, labels: Array, log_temperature: Array,
    neg_cols: Array | None, neg_valid: Array | None, ids: BlockIds | None, config: LossConfig,
) -> dict[str, Array]:
    """_block_terms, or with Matryoshka dims the weighted sum of its loss over each prefix (the
    other sums from the largest dim; "loss_dim<d>": each term's unweighted summed loss)."""
    args = (labels, log_temperature)
    if not config.matryoshka:
        return _block_terms(x_rows, y_rows, x_cols, y_cols, *args, neg_cols, neg_valid, ids, config)
    total: dict[str, Array] = {}
    for d, weight in config.matryoshka:
        cut = [_unit_prefix(a, d) for a in (x_rows, y_rows, x_cols, y_cols, neg_cols)]
        sums = _block_terms(*cut[:4], *args, cut[4], neg_valid, ids, config)
        if not total:
            total = {**sums, "loss": weight * sums["loss"]}
        else:
            total["loss"] = total["loss"] + weight * sums["loss"]
        total[f"loss_dim{d}"] = sums["loss"]
    return total


def contrastive_loss(
    x: Array,
    y: Array,
    log_temperature: Array,
    negatives: Array | None = None,
    negatives_valid: Array | None = None,
    ids: ContentIds | None = None,
    config: LossConfig = LossConfig(),
) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE on one array.

    x, y: [N, d] L2-normalised embeddings (pair i is (x_i, y_i)); log_temperature: [];
    negatives: [N, n, d] hard negatives with negatives_valid: [N, n] (bool or 0/1), or None;
    ids: content ids x, y [N, 2] (negatives [N, n, 2]), needed with config.mask_duplicates
    -> loss [], metrics {"accuracy_xy", "accuracy_yx"} (in-batch top-1 retrieval accuracy each
    way; x -> y competes with the negatives too), with masking configured also the int32 counts
    {"masked_duplicates", "masked_similar"} of masked logits over both directions, with
    Matryoshka dims each term's loss "loss_dim<d>".
    """
    n = x.shape[0]
    labels = jnp.arange(n)
    neg_cols, neg_valid = _flatten_negatives(negatives, negatives_valid)
    block_ids = None
    if config.mask_duplicates:
        _check_ids(ids, negatives)
        block_ids = BlockIds(ids.x, ids.y, ids.x, ids.y, _flatten_ids(ids.negatives))
    sums = _terms(x, y, x, y, labels, log_temperature, neg_cols, neg_valid, block_ids, config)
    return _finish(sums, n)


def _finish(sums: dict[str, Array], n: int) -> tuple[Array, dict[str, Array]]:
    """Block sums over all N rows -> (mean loss, metrics)."""
    metrics = {"accuracy_xy": sums["correct_xy"] / n, "accuracy_yx": sums["correct_yx"] / n}
    metrics.update({k: v for k, v in sums.items() if k.startswith("masked_")})
    metrics.update({k: v / (2 * n) for k, v in sums.items() if k.startswith("loss_dim")})
    return sums["loss"] / (2 * n), metrics


def _check_ids(ids: ContentIds | None, negatives: Array | None) -> None:
    """ValueError, naming the fix, unless duplicate masking has the ids it compares."""
    if ids is None:
        raise ValueError(
            "LossConfig.mask_duplicates=True needs the content ids of the batch's texts (PairBatch.ids, "
            "which data/pipeline.tokenize_pairs fills); give batches built another way their ids "
            "(cpt_jax.batch.ContentIds of data.content.content_ids), or set LossConfig.mask_duplicates=False."
        )
    if negatives is not None and ids.negatives is None:
        raise ValueError(
            "LossConfig.mask_duplicates=True with hard negatives needs their content ids too "
            "(PairBatch.ids.negatives, [N, n, 2]); build the batch with data/pipeline.tokenize_pairs, "
            "or set LossConfig.mask_duplicates=False."
        )


def _flatten_ids(ids: Array | None) -> Array | None:
    """[N, n, 2] -> [N * n, 2] (the order of _flatten_negatives); None stays None."""
    return None if ids is None else ids.reshape(-1, 2)


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
    ids: ContentIds | None = None,
    config: LossConfig = LossConfig(),
) -> tuple[Array, dict[str, Array]]:
    """`contrastive_loss` with the batch sharded over `batch_axes` of `mesh`.

    x, y: [N, d] global arrays whose rows are split over batch_axes; log_temperature: [];
    negatives: [N, n, d] and negatives_valid: [N, n], rows split the same way, or None; ids: as
    for contrastive_loss, rows split the same way. Each shard computes its N_local rows against
    the all-gathered columns (and ids); the sums and counts are psum'd, so loss, gradients and
    metrics equal the single-array form.
    """
    axes = tuple(batch_axes)
    n_global = x.shape[0]
    with_negatives, with_ids = negatives is not None, config.mask_duplicates
    gather = lambda a: jax.lax.all_gather(a, axes, tiled=True)  # noqa: E731

    def local(x_loc: Array, y_loc: Array, log_t: Array, *rest: Array) -> dict[str, Array]:
        n_local = x_loc.shape[0]
        labels = jax.lax.axis_index(axes) * n_local + jnp.arange(n_local)
        # Hard negatives: every shard's, as columns [N * n, d] of every row.
        negs, rest = (rest[:2], rest[2:]) if with_negatives else ((), rest)
        neg_cols, neg_valid = _flatten_negatives(*map(gather, negs)) if negs else (None, None)
        block_ids = None
        if with_ids:  # this shard's rows, every shard's columns
            ix, iy, *ineg = rest
            block_ids = BlockIds(ix, iy, gather(ix), gather(iy), _flatten_ids(gather(ineg[0])) if ineg else None)
        sums = _terms(x_loc, y_loc, gather(x_loc), gather(y_loc), labels, log_t, neg_cols, neg_valid,
                      block_ids, config)
        return {k: jax.lax.psum(v, axes) for k, v in sums.items()}

    args, specs = [x, y, log_temperature], [P(axes), P(axes), P()]
    if with_negatives:
        _flatten_negatives(negatives, negatives_valid)  # shape check outside the shard_map
        args, specs = args + [negatives, negatives_valid], specs + [P(axes), P(axes)]
    if with_ids:
        _check_ids(ids, negatives)
        id_arrays = [ids.x, ids.y] + ([ids.negatives] if with_negatives else [])
        args, specs = args + id_arrays, specs + [P(axes)] * len(id_arrays)
    sums = jax.shard_map(local, mesh=mesh, in_specs=tuple(specs), out_specs=P())(*args)
    return _finish(sums, n_global)
