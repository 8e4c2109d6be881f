"""False-negative masking in the contrastive loss: a float64 numpy reference (loss, metrics, masked
counts and analytic gradients), the sharded form on 1, 2, 4 and 8 devices, exact counts of a
constructed batch, and masking off = the unmasked formula bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax.batch import ContentIds
from cpt_jax.loss import LossConfig, contrastive_loss, sharded_contrastive_loss
from cpt_jax.parallel.mesh import BATCH_AXES
from cpt_jax.parallel.rules import batch_sharding
from tests.helpers import mesh, rel_err

LOG_T = np.float32(np.log(1 / 0.07))
TOL = 1e-5
N, K, D = 16, 2, 6
DUPLICATES = LossConfig(mask_duplicates=True)
SIMILAR = LossConfig(similarity_margin=0.05)
BOTH = LossConfig(mask_duplicates=True, similarity_margin=0.05)


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def constructed_batch(seed: int = 0, copies: bool = True):
    """Embeddings with copies, their content ids and hard negatives, built so the masks are known:
    x texts of pairs {0, 5, 10} equal, y texts of {1, 7} equal, pair 12 a copy of pair 3 (x and y);
    negative (2, 1) is y_2 itself, (4, 0) is y_9, (6, 1) is y_1 = y_7; (8, 1) has y_8's text but is
    invalid. Duplicates in the batch: 3 * 2 + 2 + 2 = 10 ordered (row, column) pairs, masked in
    both directions (20), plus the 4 valid negatives (2 for rows 1 and 7): 24 masked logits.
    copies=False: no copies (distinct ids); unmasked copies tie with the label, and float32
    breaks such exact ties by rounding, so accuracies are compared only without them."""
    rng = np.random.default_rng(seed)
    x = _unit(rng.standard_normal((N, D)))
    y = _unit(x + 0.8 * rng.standard_normal((N, D)))
    neg = _unit(x[:, None, :] + 0.9 * rng.standard_normal((N, K, D)))
    x_ids = np.stack([np.arange(N), np.full(N, 7)], 1).astype(np.int32)
    y_ids = np.stack([np.arange(N) + 100, np.full(N, -7)], 1).astype(np.int32)
    neg_ids = np.stack([np.arange(N * K).reshape(N, K) + 1000, np.full((N, K), 3)], -1).astype(np.int32)
    valid = rng.random((N, K)) < 0.7
    if not copies:
        return x, y, neg, valid, ContentIds(x_ids, y_ids, neg_ids)
    for j in (5, 10):
        x[j], x_ids[j] = x[0], x_ids[0]
    y[7], y_ids[7] = y[1], y_ids[1]
    x[12], y[12], x_ids[12], y_ids[12] = x[3], y[3], x_ids[3], y_ids[3]
    for (i, m), j in (((2, 1), 2), ((4, 0), 9), ((6, 1), 1), ((8, 1), 8)):
        neg[i, m], neg_ids[i, m] = y[j], y_ids[j]
    valid[2, 1] = valid[4, 0] = valid[6, 1] = True
    valid[8, 1] = False
    return x, y, neg, valid, ContentIds(x_ids, y_ids, neg_ids)


def numpy_masked(x, y, log_t, neg=None, valid=None, ids=None, config=LossConfig()):
    """float64 masked InfoNCE -> (loss, {accuracy_xy, accuracy_yx, masked_duplicates,
    masked_similar}, grads (x, y, negatives or None, log_t)), gradients analytic:
    d loss / d logits = (softmax - one-hot) / 2n, zero at masked logits."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    n, s = len(x), np.exp(np.float64(log_t))
    cos_xy, cos_yx = x @ y.T, y @ x.T
    cols = [cos_xy]
    ok_neg = np.zeros((n, 0), bool)
    if neg is not None:
        flat = neg.reshape(-1, neg.shape[-1]).astype(np.float64)
        cols.append(x @ flat.T)
        ok_neg = np.broadcast_to(valid.reshape(1, -1).astype(bool), (n, flat.shape[0]))
    cos_all = np.concatenate(cols, axis=1)  # [n, n + M]
    same_row = lambda a, b: np.all(a[:, None, :] == b[None, :, :], -1)  # noqa: E731
    eye = np.eye(n, dtype=bool)
    dup_in, dup_neg = np.zeros((n, n), bool), np.zeros_like(ok_neg)
    if config.mask_duplicates:
        dup_in = (same_row(ids.x, ids.x) | same_row(ids.y, ids.y)) & ~eye
        if neg is not None:
            dup_neg = same_row(ids.y, ids.negatives.reshape(-1, 2)) & ok_neg
    sim_xy, sim_yx, sim_neg = np.zeros((n, n), bool), np.zeros((n, n), bool), np.zeros_like(ok_neg)
    if config.similarity_margin is not None:
        m = config.similarity_margin
        pos = np.diag(cos_xy)[:, None]
        sim_xy, sim_yx = (cos_xy > pos + m) & ~eye, (cos_yx > pos + m) & ~eye
        sim_neg = (cos_all[:, n:] > pos + m) & ok_neg
    dead_xy = np.concatenate([dup_in | sim_xy, dup_neg | sim_neg | ~ok_neg], axis=1)
    dead_yx = dup_in | sim_yx
    terms, grads_logits, correct = [], [], []
    for cos, dead in ((cos_all, dead_xy), (cos_yx, dead_yx)):
        logits = np.where(dead, -np.inf, cos * s)
        top = logits.max(axis=1, keepdims=True)
        p = np.exp(logits - top)
        p /= p.sum(axis=1, keepdims=True)
        terms.append(np.sum(-np.log(p[np.arange(n), np.arange(n)])))
        g = p.copy()
        g[np.arange(n), np.arange(n)] -= 1
        grads_logits.append(g / (2 * n))
        correct.append(np.mean(np.argmax(logits, axis=1) == np.arange(n)))
    g_xy, g_yx = grads_logits
    gx = s * (g_xy[:, :n] @ y + g_yx.T @ y)
    gy = s * (g_xy[:, :n].T @ x + g_yx @ x)
    gn = None
    if neg is not None:
        gx = gx + s * g_xy[:, n:] @ flat
        gn = (s * g_xy[:, n:].T @ x).reshape(neg.shape)
    g_t = s * (np.sum(g_xy * np.where(dead_xy, 0, cos_all)) + np.sum(g_yx * np.where(dead_yx, 0, cos_yx)))
    metrics = {
        "accuracy_xy": correct[0], "accuracy_yx": correct[1],
        "masked_duplicates": 2 * dup_in.sum() + dup_neg.sum(),
        "masked_similar": (sim_xy & ~dup_in).sum() + (sim_yx & ~dup_in).sum() + (sim_neg & ~dup_neg).sum(),
    }
    return sum(terms) / (2 * n), metrics, (gx, gy, gn, g_t)


def _margin_is_clear(x, y, neg, margin, gap=1e-4):
    """No cosine lies within `gap` of a row's positive + margin (float32 and float64 then agree)."""
    pos = np.sum(x.astype(np.float64) * y, axis=1)[:, None]
    cos = [x @ y.T, y @ x.T, x @ neg.reshape(-1, D).T]
    return all(np.min(np.abs(c - pos - margin)) > gap for c in cos)


def test_the_constructed_batch_has_exact_counts():
    x, y, neg, valid, ids = constructed_batch()
    _, metrics = contrastive_loss(x, y, LOG_T, neg, valid, ids, DUPLICATES)
    assert int(metrics["masked_duplicates"]) == 24 and int(metrics["masked_similar"]) == 0
    _, metrics = contrastive_loss(x, y, LOG_T, ids=ids, config=DUPLICATES)
    assert int(metrics["masked_duplicates"]) == 20  # without the negatives: the in-batch copies alone
    assert numpy_masked(x, y, LOG_T, neg, valid, ids, DUPLICATES)[1]["masked_duplicates"] == 24


def _assert_matches_float64(value, metrics, grads, x, y, negs, ids, config):
    """Loss, gradients, accuracies and masked counts equal the float64 reference; its metrics."""
    want, want_metrics, want_grads = numpy_masked(x, y, LOG_T, *negs, ids, config)
    assert rel_err(value, want) < TOL
    for g, ref in zip(grads, want_grads):
        assert (g is None) == (ref is None) and (g is None or rel_err(g, ref) < TOL)
    for key in ("accuracy_xy", "accuracy_yx", "masked_duplicates", "masked_similar"):
        assert float(metrics[key]) == want_metrics[key], key
    return want_metrics


@pytest.mark.parametrize("config", [DUPLICATES, SIMILAR, BOTH], ids=["duplicates", "similar", "both"])
@pytest.mark.parametrize("negatives", [False, True], ids=["in-batch", "negatives"])
def test_masked_loss_metrics_and_gradients_match_float64(config, negatives):
    x, y, neg, valid, ids = constructed_batch(copies=config.mask_duplicates)
    assert _margin_is_clear(x, y, neg, 0.05)
    negs = (neg, valid) if negatives else (None, None)
    ids = ids if negatives else ContentIds(ids.x, ids.y)
    f = lambda x, y, n, t: contrastive_loss(x, y, t, n, negs[1], ids, config)  # noqa: E731
    (value, metrics), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True))(x, y, negs[0], LOG_T)
    want_metrics = _assert_matches_float64(value, metrics, grads, x, y, negs, ids, config)
    assert want_metrics["masked_duplicates" if config.mask_duplicates else "masked_similar"] > 0
    unmasked, _, _ = numpy_masked(x, y, LOG_T, *negs)
    assert numpy_masked(x, y, LOG_T, *negs, ids, config)[0] < unmasked  # the masks matter


@pytest.mark.parametrize("devices", [1, 2, 4, 8])
@pytest.mark.parametrize("config", [DUPLICATES, SIMILAR, BOTH], ids=["duplicates", "similar", "both"])
@pytest.mark.parametrize("negatives", [False, True], ids=["in-batch", "negatives"])
def test_sharded_masked_loss_matches_float64(devices, config, negatives):
    x, y, neg, valid, ids = constructed_batch(copies=config.mask_duplicates)
    negs = (neg, valid) if negatives else (None, None)
    ids = ids if negatives else ContentIds(ids.x, ids.y)
    m = mesh(data=devices)
    rows = batch_sharding(m, BATCH_AXES)
    put = lambda a: None if a is None else jax.device_put(a, rows)  # noqa: E731
    sharded_ids = jax.tree.map(put, ids)

    def f(x, y, n, t, valid):
        return sharded_contrastive_loss(x, y, t, m, BATCH_AXES, n, valid, sharded_ids, config)

    with jax.set_mesh(m):
        (value, metrics), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True))(
            put(x), put(y), put(negs[0]), LOG_T, put(None if negs[1] is None else negs[1].astype(np.int32))
        )
    _assert_matches_float64(value, metrics, grads, x, y, negs, ids, config)
    assert metrics["masked_duplicates"].dtype == jnp.int32


def _unmasked_formula(x, y, log_t, neg=None, valid=None):
    """The loss as it was before masking existed (its ops, in its order): the bit-for-bit reference
    of masking off."""
    scale = jnp.exp(log_t.astype(jnp.float32))
    logits_xy = x @ y.T * scale
    if neg is not None:
        flat, keep = neg.reshape(-1, neg.shape[-1]), valid.reshape(-1).astype(bool)
        logits_xy = jnp.concatenate([logits_xy, jnp.where(keep[None, :], x @ flat.T * scale, -jnp.inf)], axis=1)
    logits_yx = y @ x.T * scale
    labels = jnp.arange(x.shape[0])

    def ce(lg):
        return jnp.sum(jax.nn.logsumexp(lg, axis=-1) - jnp.take_along_axis(lg, labels[:, None], axis=-1)[:, 0])

    return (ce(logits_xy) + ce(logits_yx)) / (2 * x.shape[0])


@pytest.mark.parametrize("negatives", [False, True], ids=["in-batch", "negatives"])
def test_masking_off_is_the_unmasked_loss_bit_for_bit(negatives):
    x, y, neg, valid, ids = constructed_batch(1)
    negs = (neg, valid) if negatives else (None, None)
    grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1, 3)))  # noqa: E731
    off = grad(lambda x, y, n, t: contrastive_loss(x, y, t, n, negs[1], ids, LossConfig())[0])(x, y, negs[0], LOG_T)
    ref = grad(lambda x, y, n, t: _unmasked_formula(x, y, t, n, negs[1]))(x, y, negs[0], LOG_T)
    for got, want in zip(jax.tree.leaves(off), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    _, metrics = contrastive_loss(x, y, LOG_T, *negs, ids, LossConfig())
    assert set(metrics) == {"accuracy_xy", "accuracy_yx"}


def test_sharded_masking_off_traces_the_same_computation_with_or_without_ids():
    x, y, _, _, ids = constructed_batch()
    m = mesh(data=2)
    ids = ContentIds(ids.x, ids.y)
    with jax.set_mesh(m):
        plain = jax.make_jaxpr(lambda x, y: sharded_contrastive_loss(x, y, LOG_T, m, BATCH_AXES))(x, y)
        off = jax.make_jaxpr(lambda x, y, i: sharded_contrastive_loss(x, y, LOG_T, m, BATCH_AXES, ids=i))(x, y, ids)
        on = jax.make_jaxpr(
            lambda x, y, i: sharded_contrastive_loss(x, y, LOG_T, m, BATCH_AXES, ids=i, config=DUPLICATES)
        )(x, y, ids)
    assert str(off.eqns) == str(plain.eqns)  # the ids are inputs of the jaxpr, used by nothing
    assert str(on.eqns) != str(plain.eqns)


def test_duplicate_masking_without_ids_names_the_fix():
    x, y, neg, valid, ids = constructed_batch()
    with pytest.raises(ValueError, match=r"PairBatch\.ids.*tokenize_pairs.*mask_duplicates=False"):
        contrastive_loss(x, y, LOG_T, config=DUPLICATES)
    with pytest.raises(ValueError, match=r"ids\.negatives"):
        contrastive_loss(x, y, LOG_T, neg, valid, ContentIds(ids.x, ids.y), DUPLICATES)
    with pytest.raises(ValueError, match=r"PairBatch\.ids"):
        sharded_contrastive_loss(x, y, LOG_T, mesh(), BATCH_AXES, config=DUPLICATES)
    contrastive_loss(x, y, LOG_T, config=SIMILAR)  # the similarity mask needs no ids


def test_copies_stop_bounding_the_loss_away_from_zero():
    """Every pair 4 times in one batch: unmasked, the copies tie with the label and the loss stays
    >= log 4 at any temperature; masked, it falls towards zero as the scale grows."""
    rng = np.random.default_rng(5)
    x = _unit(np.tile(rng.standard_normal((4, D)), (4, 1)))
    ids = ContentIds(np.tile(np.arange(8, dtype=np.int32).reshape(4, 2), (4, 1)),
                     np.tile(np.arange(8, 16, dtype=np.int32).reshape(4, 2), (4, 1)))
    big = np.float32(np.log(100.0))
    unmasked, metrics = contrastive_loss(x, x, big)
    assert float(unmasked) >= np.log(4) - 1e-5
    masked, metrics = contrastive_loss(x, x, big, ids=ids, config=DUPLICATES)
    assert float(masked) < 0.05 and float(metrics["accuracy_xy"]) == 1.0
    assert int(metrics["masked_duplicates"]) == 2 * 16 * 3
