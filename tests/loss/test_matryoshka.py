"""Matryoshka terms of the contrastive loss: the weighted sum over normalised prefixes against a
float64 reference written from the definition (loss, per-dimension losses and gradients), the
sharded form on 1, 2 and 8 devices, the full dimension alone = the plain loss bit for bit, and the
config's checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax.loss import LossConfig, contrastive_loss, sharded_contrastive_loss
from cpt_jax.parallel.mesh import BATCH_AXES
from cpt_jax.parallel.rules import batch_sharding
from tests.helpers import mesh, rel_err

N, K, D = 16, 2, 24
LOG_T = np.float32(np.log(1 / 0.07))
NESTED = LossConfig(matryoshka_dims=(24, 12, 6, 3), matryoshka_weights=(1.0, 0.5, 2.0, 0.25))
TOL = 2e-5


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def embeddings(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = _unit(rng.standard_normal((N, D)))
    y = _unit(x + 0.7 * rng.standard_normal((N, D)))
    neg = _unit(x[:, None, :] + 0.9 * rng.standard_normal((N, K, D)))
    valid = rng.random((N, K)) < 0.7
    return x, y, neg, valid


def _single64(x, y, log_t, neg, valid):
    """Symmetric InfoNCE with optional hard-negative columns, float64, from the definition."""
    s = jnp.exp(log_t)
    logits_xy = x @ y.T * s
    if neg is not None:
        flat = neg.reshape(-1, neg.shape[-1])
        logits_xy = jnp.concatenate([logits_xy, jnp.where(valid.reshape(1, -1), x @ flat.T * s, -jnp.inf)], axis=1)
    logits_yx = y @ x.T * s
    n = x.shape[0]
    ce = lambda lg: jnp.sum(jax.nn.logsumexp(lg, axis=1) - lg[jnp.arange(n), jnp.arange(n)])  # noqa: E731
    return (ce(logits_xy) + ce(logits_yx)) / (2 * n)


def reference(x, y, neg, valid, config: LossConfig):
    """float64 (loss, {d: term}, grads of x, y, negatives, log_t): sum_k w_k * loss(prefix_dk),
    each prefix normalised again (the full dimension taken as given, as the embeddings are unit)."""
    def prefix(a, d):
        if a is None or d == a.shape[-1]:
            return a
        return a[..., :d] / jnp.linalg.norm(a[..., :d], axis=-1, keepdims=True)

    def total(x, y, neg, t):
        terms = {d: _single64(prefix(x, d), prefix(y, d), t, prefix(neg, d), valid) for d, _ in config.matryoshka}
        return sum(w * terms[d] for d, w in config.matryoshka), terms

    with jax.enable_x64(True):
        args = [None if a is None else jnp.asarray(a, jnp.float64) for a in (x, y, neg)] + [jnp.float64(LOG_T)]
        argnums = (0, 1, 3) if neg is None else (0, 1, 2, 3)
        (value, terms), grads = jax.value_and_grad(total, argnums=argnums, has_aux=True)(*args)
        grads = list(grads) if neg is not None else [grads[0], grads[1], None, grads[2]]
        return float(value), {d: float(v) for d, v in terms.items()}, [None if g is None else np.asarray(g) for g in grads]


def _check(value, metrics, grads, x, y, neg, valid, config):
    want, terms, want_grads = reference(x, y, neg, valid, config)
    assert rel_err(value, want) < TOL
    for d, term in terms.items():
        assert rel_err(metrics[f"loss_dim{d}"], term) < TOL, d
    for g, ref in zip(grads, want_grads):
        assert (g is None) == (ref is None) and (g is None or rel_err(g, ref) < TOL)


@pytest.mark.parametrize("negatives", [False, True], ids=["in-batch", "negatives"])
def test_nested_loss_and_gradients_match_float64(negatives):
    x, y, neg, valid = embeddings()
    neg, valid = (neg, valid) if negatives else (None, None)
    f = lambda x, y, n, t: contrastive_loss(x, y, t, n, valid, config=NESTED)  # noqa: E731
    (value, metrics), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True))(x, y, neg, LOG_T)
    _check(value, metrics, grads, x, y, neg, valid, NESTED)
    # The small prefixes are harder: their terms are larger, so each one is really in the sum.
    assert metrics["loss_dim3"] > metrics["loss_dim24"]


@pytest.mark.parametrize("devices", [1, 2, 8])
@pytest.mark.parametrize("negatives", [False, True], ids=["in-batch", "negatives"])
def test_sharded_nested_loss_matches_float64(devices, negatives):
    x, y, neg, valid = embeddings(1)
    neg, valid = (neg, valid) if negatives else (None, None)
    m = mesh(data=devices)
    put = lambda a: None if a is None else jax.device_put(a, batch_sharding(m, BATCH_AXES))  # noqa: E731

    def f(x, y, n, t, v):
        return sharded_contrastive_loss(x, y, t, m, BATCH_AXES, n, v, config=NESTED)

    with jax.set_mesh(m):
        (value, metrics), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True))(
            put(x), put(y), put(neg), LOG_T, put(valid)
        )
    _check(value, metrics, grads, x, y, neg, valid, NESTED)


def test_the_full_dimension_alone_is_the_plain_loss_bit_for_bit():
    x, y, neg, valid = embeddings(2)
    f = lambda c: jax.jit(jax.value_and_grad(  # noqa: E731
        lambda x, y, t: contrastive_loss(x, y, t, neg, valid, config=c), argnums=(0, 1, 2), has_aux=True))(x, y, LOG_T)
    (plain, plain_metrics), plain_grads = f(LossConfig())
    (full, metrics), grads = f(LossConfig(matryoshka_dims=(D,)))
    assert float(plain) == float(full) == float(metrics[f"loss_dim{D}"])
    for g, ref in zip(grads, plain_grads):
        np.testing.assert_array_equal(g, ref)
    assert metrics["accuracy_xy"] == plain_metrics["accuracy_xy"]


def test_accuracies_are_those_of_the_largest_dimension():
    x, y, _, _ = embeddings(3)
    _, nested = contrastive_loss(x, y, LOG_T, config=LossConfig(matryoshka_dims=(12, 3)))
    _, first = contrastive_loss(_unit(x[:, :12]), _unit(y[:, :12]), LOG_T)
    assert nested["accuracy_xy"] == first["accuracy_xy"] and nested["accuracy_yx"] == first["accuracy_yx"]


def test_masking_composes_with_the_nested_terms():
    """Duplicate masking applies to every term (the ids do not depend on the dimension)."""
    from cpt_jax.batch import ContentIds

    x, y, _, _ = embeddings(4)
    x[5], y[5] = x[0], y[0]
    ids = ContentIds(np.stack([np.arange(N), np.zeros(N)], 1).astype(np.int32),
                     np.stack([np.arange(N) + 50, np.zeros(N)], 1).astype(np.int32))
    ids.x[5], ids.y[5] = ids.x[0], ids.y[0]
    config = LossConfig(mask_duplicates=True, matryoshka_dims=(24, 6))
    _, metrics = contrastive_loss(x, y, LOG_T, ids=ids, config=config)
    for d in (24, 6):
        masked_alone = contrastive_loss(_unit(x[:, :d]), _unit(y[:, :d]), LOG_T, ids=ids,
                                        config=LossConfig(mask_duplicates=True))[0]
        assert rel_err(metrics[f"loss_dim{d}"], masked_alone) < TOL, d
    assert int(metrics["masked_duplicates"]) == 4  # pair 5 is pair 0: (0, 5) and (5, 0), both directions


@pytest.mark.parametrize("kwargs, match", [
    ({"matryoshka_dims": (64, 128)}, r"distinct and decreasing .* write \(128, 64\)"),
    ({"matryoshka_dims": (64, 64)}, r"distinct and decreasing"),
    ({"matryoshka_dims": (64, 0)}, r"tuple of positive ints"),
    ({"matryoshka_dims": [64, 32]}, r"tuple of positive ints"),
    ({"matryoshka_dims": (64, 32), "matryoshka_weights": (1.0,)}, r"1 entries for 2 matryoshka_dims"),
    ({"matryoshka_dims": (64,), "matryoshka_weights": (0.0,)}, r"positive finite"),
    ({"matryoshka_dims": (64,), "matryoshka_weights": (float("nan"),)}, r"positive finite"),
])
def test_bad_matryoshka_settings_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossConfig(**kwargs)


def test_default_weights_are_one():
    assert LossConfig(matryoshka_dims=(8, 4)).matryoshka == ((8, 1.0), (4, 1.0))
    assert LossConfig().matryoshka == ()
