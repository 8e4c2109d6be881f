"""Pooling against direct numpy formulas."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax.model.pooling import eos_pool, l2_normalize, mean_pool, pool

LENGTHS = np.array([6, 3, 1, 4])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((4, 6, 5)).astype(np.float32)
    mask = (np.arange(6)[None] < LENGTHS[:, None]).astype(np.int32)
    return hidden, mask


def test_eos_pool_picks_last_real_token(data):
    hidden, mask = data
    expected = np.stack([hidden[i, LENGTHS[i] - 1] for i in range(4)])
    np.testing.assert_array_equal(np.asarray(eos_pool(jnp.asarray(hidden), jnp.asarray(mask))), expected)


def test_mean_pool_is_masked_mean(data):
    hidden, mask = data
    expected = np.stack([hidden[i, : LENGTHS[i]].mean(axis=0) for i in range(4)])
    np.testing.assert_allclose(np.asarray(mean_pool(jnp.asarray(hidden), jnp.asarray(mask))), expected, rtol=1e-6)
    # An all-padding row pools to zeros, not NaN.
    empty = mean_pool(jnp.asarray(hidden[:1]), jnp.zeros((1, 6), jnp.int32))
    np.testing.assert_array_equal(np.asarray(empty), np.zeros((1, 5)))


def test_l2_normalize(data):
    x = data[0][:, 0]
    out = np.asarray(l2_normalize(jnp.asarray(x)))
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out, x / np.linalg.norm(x, axis=-1, keepdims=True), rtol=1e-6)
    zeros = np.asarray(l2_normalize(jnp.zeros((2, 5))))
    assert np.all(np.isfinite(zeros)) and not zeros.any()


@pytest.mark.parametrize("kind", ["eos", "mean"])
def test_pool_normalises_to_float32(data, kind):
    hidden, mask = data
    out = pool(jnp.asarray(hidden, jnp.bfloat16), jnp.asarray(mask), kind)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, rtol=1e-5)
    h = hidden.astype(np.float64)
    raw = np.stack([h[i, LENGTHS[i] - 1] if kind == "eos" else h[i, : LENGTHS[i]].mean(0) for i in range(4)])
    expected = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(out), expected, atol=2e-2)  # bfloat16 input
