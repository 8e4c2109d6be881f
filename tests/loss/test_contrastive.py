"""The symmetric InfoNCE loss: formula, and exactness of the sharded form against float64."""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax.loss import contrastive_loss, sharded_contrastive_loss
from cpt_jax.model import embed, init_boxed
from cpt_jax.model.encoder import Encoder
from cpt_jax.model.pooling import eos_pool, l2_normalize
from cpt_jax.parallel.mesh import BATCH_AXES
from cpt_jax.parallel.rules import DEFAULT_RULES, batch_sharding, logical_shardings
from tests.helpers import (
    TINY,
    exact_float64,
    float64_config,
    host,
    mesh,
    random_batch,
    random_params,
    reference_loss,
    rel_err,
)

LOG_T = np.float32(np.log(1 / 0.07))
TOL = 1e-5
ZERO_GRAD = "['blocks']['attention']['key_bias']"  # softmax is shift-invariant: its exact gradient is 0


def numpy_loss(x, y, log_t):
    """float64: mean over both directions of -log softmax(cos * e^tau) at the diagonal."""
    logits = x.astype(np.float64) @ y.astype(np.float64).T * np.exp(np.float64(log_t))

    def ce(lg):
        m = lg.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(lg - m).sum(axis=1))
        return np.mean(lse - np.diag(lg))

    acc_xy = np.mean(np.argmax(logits, axis=1) == np.arange(len(x)))
    acc_yx = np.mean(np.argmax(logits, axis=0) == np.arange(len(x)))
    return (ce(logits) + ce(logits.T)) / 2, acc_xy, acc_yx


def unit_pairs(seed, n=16, d=6, noise=0.8):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = x + noise * rng.standard_normal((n, d))
    norm = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return norm(x), norm(y)


def test_contrastive_loss_matches_numpy_formula():
    x, y = unit_pairs(0)
    for log_t in (0.0, 1.5, float(LOG_T)):
        loss, metrics = contrastive_loss(jnp.asarray(x), jnp.asarray(y), jnp.float32(log_t))
        want, acc_xy, acc_yx = numpy_loss(x, y, log_t)
        assert 0 < acc_xy < 1 and 0 < acc_yx < 1 and acc_xy != acc_yx  # the metrics can tell the directions apart
        np.testing.assert_allclose(float(loss), want, rtol=2e-6)
        assert float(metrics["accuracy_xy"]) == acc_xy
        assert float(metrics["accuracy_yx"]) == acc_yx


def test_log_temperature_gradient_matches_finite_difference():
    x, y = map(jnp.asarray, unit_pairs(1))
    f = jax.jit(lambda t: contrastive_loss(x, y, t)[0])
    for log_t in (0.5, 2.0, float(LOG_T)):
        grad = float(jax.grad(lambda t: contrastive_loss(x, y, t)[0])(jnp.float32(log_t)))
        h = 1e-2
        fd = (float(f(jnp.float32(log_t + h))) - float(f(jnp.float32(log_t - h)))) / (2 * h)
        # Central difference: O(h^2) truncation + float32 rounding ~ 1e-5 relative.
        assert abs(grad - fd) <= 1e-3 * abs(fd), (log_t, grad, fd)
        assert abs(grad) > 1e-3


@pytest.fixture(scope="module")
def problem():
    return random_params(TINY, seed=0), random_batch(seed=0, batch=16, seq=12)


@pytest.fixture(scope="module")
def reference(problem):
    """float64 loss and gradients on one device (exact attention, plain formula)."""
    params, b = problem
    cfg64 = float64_config(TINY)

    def loss(p, log_t):
        def side(tokens, mask):
            h = Encoder(cfg64).apply({"params": p}, tokens, mask)
            return l2_normalize(eos_pool(h, mask))

        return reference_loss(side(b.x.tokens, b.x.mask), side(b.y.tokens, b.y.mask), log_t)

    with exact_float64():
        p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
        value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(p64, np.float64(LOG_T))
        assert jax.tree.leaves(grads)[0].dtype == np.float64
        return float(value), host(grads)


@pytest.mark.parametrize("data, fsdp", [(1, 1), (2, 1), (1, 4), (2, 4)])
def test_sharded_loss_and_gradients_match_float64(problem, reference, data, fsdp):
    params, b = problem
    m = mesh(data=data, fsdp=fsdp)
    boxed = jax.eval_shape(lambda: init_boxed(TINY, jax.random.key(0)))
    params = jax.device_put(params, logical_shardings(boxed, m, DEFAULT_RULES))
    b = jax.device_put(b, batch_sharding(m, BATCH_AXES))

    def loss(p, log_t, b):
        x = embed(p, TINY, b.x.tokens, b.x.mask)
        y = embed(p, TINY, b.y.tokens, b.y.mask)
        return sharded_contrastive_loss(x, y, log_t, m, BATCH_AXES)

    with jax.set_mesh(m), nn.logical_axis_rules(list(DEFAULT_RULES)):
        (value, metrics), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, LOG_T, b)
    assert params["blocks"]["mlp"]["wi"]["kernel"].addressable_shards[0].data.shape == (2, 32 // fsdp, 64)
    ref_value, (ref_enc, ref_log_t) = reference
    assert rel_err(value, ref_value) < TOL
    assert rel_err(grads[1], ref_log_t) < TOL
    assert 0 <= float(metrics["accuracy_xy"]) <= 1

    ref_norm = np.sqrt(sum(np.sum(g**2) for g in jax.tree.leaves(ref_enc)))
    errors, zero = {}, {}
    for (path, g), ref in zip(jax.tree_util.tree_flatten_with_path(host(grads[0]))[0], jax.tree.leaves(ref_enc)):
        name = jax.tree_util.keystr(path)
        assert g.shape == ref.shape and g.dtype == np.float32
        if np.linalg.norm(ref) < 1e-12 * ref_norm:
            zero[name] = np.linalg.norm(g) / ref_norm
        else:
            errors[name] = rel_err(g, ref)
    assert set(zero) == {ZERO_GRAD}, zero
    assert zero[ZERO_GRAD] < 1e-7, zero  # float32 noise around an exact zero
    assert len(errors) == len(jax.tree.leaves(ref_enc)) - 1
    worst = max(errors, key=errors.get)
    print(
        f"mesh data={data} fsdp={fsdp}: loss {rel_err(value, ref_value):.1e}, log_t grad "
        f"{rel_err(grads[1], ref_log_t):.1e}, worst leaf {worst} {errors[worst]:.1e}, zero-grad leaf {zero[ZERO_GRAD]:.1e}"
    )
    assert errors[worst] < TOL, errors


# ---------------------------------------------------------------- hard negatives


def _with_negatives(seed, n=16, k=3, d=6):
    """Unit x, y [n, d], hard negatives [n, k, d] near each x, and a validity mask [n, k] with
    some rows fully masked."""
    x, y = unit_pairs(seed, n, d)
    rng = np.random.default_rng(seed + 100)
    neg = x[:, None, :] + 0.9 * rng.standard_normal((n, k, d))
    neg = (neg / np.linalg.norm(neg, axis=-1, keepdims=True)).astype(np.float32)
    valid = rng.random((n, k)) < 0.6
    valid[0], valid[1] = True, False
    return x, y, neg, valid


def reference_loss_with_negatives(x, y, neg, valid, log_t):
    """float64 (under x64): rows x -> [Y | all negatives], invalid negatives excluded; columns y -> x."""
    scale = jnp.exp(log_t)
    flat, keep = neg.reshape(-1, neg.shape[-1]), valid.reshape(-1)
    # The mask after the scale: -inf * scale would give the temperature a NaN gradient.
    logits_xy = jnp.concatenate([x @ y.T * scale, jnp.where(keep[None, :], x @ flat.T * scale, -jnp.inf)], axis=1)
    logits_yx = y @ x.T * scale
    diag = jnp.diagonal(logits_yx)
    xy = jnp.mean(jax.nn.logsumexp(logits_xy, axis=1) - diag)
    yx = jnp.mean(jax.nn.logsumexp(logits_yx, axis=1) - diag)
    return (xy + yx) / 2


@pytest.fixture(scope="module")
def negatives_reference():
    x, y, neg, valid = _with_negatives(3)
    with jax.enable_x64(True):
        args = [np.asarray(a, np.float64) for a in (x, y, neg)]
        value, grads = jax.value_and_grad(
            lambda x, y, n, t: reference_loss_with_negatives(x, y, n, valid, t), argnums=(0, 1, 2, 3)
        )(*args, np.float64(LOG_T))
        return (x, y, neg, valid), float(value), host(grads)


def test_negatives_loss_and_gradients_match_float64(negatives_reference):
    (x, y, neg, valid), ref_value, ref_grads = negatives_reference
    f = jax.jit(lambda x, y, n, t: contrastive_loss(x, y, t, n, jnp.asarray(valid)))
    (value, metrics), grads = jax.value_and_grad(lambda *a: f(*a), argnums=(0, 1, 2, 3), has_aux=True)(x, y, neg, LOG_T)
    assert rel_err(value, ref_value) < TOL
    for g, ref in zip(grads, ref_grads):
        assert rel_err(g, ref) < TOL
    assert np.all(np.asarray(grads[2])[~valid] == 0)  # masked negatives get no gradient
    # The negatives make the loss harder and compete in the x -> y accuracy only.
    plain, plain_metrics = contrastive_loss(x, y, LOG_T)
    assert float(value) > float(plain)
    assert float(metrics["accuracy_yx"]) == float(plain_metrics["accuracy_yx"])
    logits = np.concatenate([x @ y.T, np.where(valid.reshape(1, -1), x @ neg.reshape(-1, 6).T, -np.inf)], axis=1)
    assert float(metrics["accuracy_xy"]) == np.mean(np.argmax(logits, axis=1) == np.arange(16))


def test_all_negatives_masked_is_the_plain_loss():
    x, y, neg, _ = _with_negatives(4)
    masked, _ = contrastive_loss(x, y, LOG_T, neg, np.zeros(neg.shape[:2], bool))
    np.testing.assert_allclose(float(masked), float(contrastive_loss(x, y, LOG_T)[0]), rtol=1e-7)
    with pytest.raises(ValueError, match="negatives_valid of shape"):
        contrastive_loss(x, y, LOG_T, neg, None)


@pytest.mark.parametrize("data, fsdp", [(1, 1), (2, 1), (4, 1), (8, 1), (2, 4)])
def test_sharded_negatives_loss_and_gradients_match_float64(negatives_reference, data, fsdp):
    (x, y, neg, valid), ref_value, ref_grads = negatives_reference
    m = mesh(data=data, fsdp=fsdp)
    rows = batch_sharding(m, BATCH_AXES)
    args = [jax.device_put(a, rows) for a in (x, y, neg, valid.astype(np.int32))]

    def loss(x, y, n, t, valid):
        return sharded_contrastive_loss(x, y, t, m, BATCH_AXES, n, valid)

    with jax.set_mesh(m):
        (value, _), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(
            *args[:3], LOG_T, args[3]
        )
    assert rel_err(value, ref_value) < TOL
    for g, ref in zip(grads, ref_grads):
        assert rel_err(g, ref) < TOL
