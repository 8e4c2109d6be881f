"""matmul: float32 accumulation for narrow dtypes, exact jnp.matmul for wide ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax.model.matmul import matmul


def _operands(dtype: jnp.dtype, seed: int = 0) -> tuple[jax.Array, jax.Array, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.normal(size=(3, 40, 24)), dtype)
    b = jnp.asarray(rng.normal(size=(3, 24, 16)), dtype)
    w = rng.normal(size=(3, 40, 16))  # weights of the scalar loss sum(w * a @ b)
    return a, b, w


def _float64_reference(a: jax.Array, b: jax.Array, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The product and the gradients of sum(w * a @ b), in float64 from the inputs' exact values."""
    a64, b64 = (np.asarray(x, np.float64) for x in (a, b))
    return a64 @ b64, w @ b64.swapaxes(-1, -2), a64.swapaxes(-1, -2) @ w


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_wide_dtypes_are_exactly_jnp_matmul(dtype):
    with jax.enable_x64(dtype == jnp.float64):
        a, b, _ = _operands(dtype)
        np.testing.assert_array_equal(matmul(a, b), jnp.matmul(a, b))
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda a: matmul(a, b).sum()))(a))
        assert "custom_vjp" not in jaxpr  # plain autodiff, so remat policies see the dot_general


@pytest.mark.parametrize("out_dtype", [None, jnp.float32])
def test_bfloat16_product_and_gradients_match_the_float64_reference(out_dtype):
    a, b, w = _operands(jnp.bfloat16)
    out, grads = jax.value_and_grad(
        lambda a, b: jnp.sum(jnp.asarray(w, jnp.float32) * matmul(a, b, out_dtype).astype(jnp.float32)), argnums=(0, 1)
    )(a, b)
    ref, ref_da, ref_db = _float64_reference(a, b, w)
    product = matmul(a, b, out_dtype)
    assert product.dtype == (out_dtype or jnp.bfloat16)
    # float32 accumulation: a float32 result is exact to float32 rounding, a bfloat16 one to one bfloat16 rounding.
    rtol = 1e-5 if out_dtype == jnp.float32 else 2**-8
    np.testing.assert_allclose(np.asarray(product, np.float64), ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    np.testing.assert_allclose(float(out), float(np.sum(w * np.asarray(product, np.float64))), rtol=1e-4)
    for grad, expected, operand in zip(grads, (ref_da, ref_db), (a, b)):
        assert grad.dtype == operand.dtype
        # The cotangent w is rounded to bfloat16 once, the gradient once more.
        np.testing.assert_allclose(np.asarray(grad, np.float64), expected, rtol=2**-6, atol=2**-6 * np.abs(expected).max())


def test_bfloat16_forward_is_the_float32_accumulating_product_on_cpu():
    """On the CPU the forward dot is bfloat16 x bfloat16 -> float32, the form XLA:CPU runs on its bfloat16 kernels."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU form")
    a, b, _ = _operands(jnp.bfloat16)
    hlo = jax.jit(matmul).lower(a, b).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert len(dots) == 1 and "bf16>, tensor<3x24x16xbf16>) -> tensor<3x40x16xf32>" in dots[0], dots


def test_mismatched_operands_raise():
    a, b, _ = _operands(jnp.bfloat16)
    with pytest.raises(ValueError, match="one dtype"):
        matmul(a, b.astype(jnp.float32))
    with pytest.raises(ValueError, match="equal batch dimensions"):
        matmul(a, b[0])
