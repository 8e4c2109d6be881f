"""Matrix products in a narrow compute dtype (bfloat16, float16), accumulated in float32.

`matmul(a, b)` is jnp.matmul for float32 and float64 inputs. For narrow inputs it fixes what the
plain form costs (bench/README.md, "bfloat16 on the CPU"):

- Forward, on XLA:CPU: a bfloat16 x bfloat16 -> bfloat16 product runs at about float32 speed,
  while bfloat16 x bfloat16 -> float32 runs on the CPU's bfloat16 dot instructions (YNNPACK,
  AVX512_BF16) at about twice that. So on the CPU the product is accumulated and returned in
  float32, then rounded. GPU and TPU kernels already accumulate a narrow-output product in
  float32, and keep that form.
- Backward: autodiff of a product with a float32 result (the attention logits, or the CPU form
  above) transposes it against a float32 cotangent, and JAX lowers float32 x bfloat16 by
  upcasting both operands, so on GPU and TPU the backward products would run in float32. Here
  the cotangent is rounded to the inputs' dtype first, as mixed-precision training does (PyTorch
  autocast, flash attention). XLA:CPU runs narrow products fast only in the untransposed form
  [m, k] @ [k, n], which the backward's products are not; it would upcast them one by one, more
  slowly than float32 products of upcast operands, so on the CPU those run in float32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp

Array = jax.Array


# The platform whose form of the product is traced: None follows jax.default_backend(). The planner
# (cpt_jax/plan) compiles the step an accelerator would run on this machine's CPU, so it traces
# that accelerator's form (target_backend), not the CPU's.
_target_platform: str | None = None


def _on_cpu() -> bool:
    return (_target_platform or jax.default_backend()) == "cpu"


@contextlib.contextmanager
def target_backend(platform: str | None) -> Iterator[None]:
    """Within it, products are traced in the form for `platform` ("cpu", "gpu", "tpu"; None: the
    default backend), whatever backend compiles them. JAX caches traces by function and shapes,
    not by this choice, so its caches are cleared whenever the form changes (on entry and exit)."""
    global _target_platform
    previous = _target_platform
    changes = (platform or jax.default_backend()) != (previous or jax.default_backend())
    if changes:
        jax.clear_caches()
    _target_platform = platform
    try:
        yield
    finally:
        _target_platform = previous
        if changes:
            jax.clear_caches()


def _swap(x: Array) -> Array:
    return jnp.swapaxes(x, -1, -2)


def _product(a: Array, b: Array, out_dtype: jnp.dtype) -> Array:
    """a [..., m, k] @ b [..., k, n] accumulated in float32 -> out_dtype."""
    if _on_cpu():
        return jnp.matmul(a, b, preferred_element_type=jnp.float32).astype(out_dtype)
    return jnp.matmul(a, b, preferred_element_type=out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _narrow_matmul(a: Array, b: Array, out_dtype: jnp.dtype) -> Array:
    return _product(a, b, out_dtype)


def _narrow_matmul_fwd(a: Array, b: Array, out_dtype: jnp.dtype) -> tuple[Array, tuple[Array, Array]]:
    return _product(a, b, out_dtype), (a, b)


def _narrow_matmul_bwd(out_dtype: jnp.dtype, residuals: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    a, b = residuals
    work = jnp.float32 if _on_cpu() else a.dtype
    g, a_w, b_w = (x.astype(work) for x in (g, a, b))
    return _product(g, _swap(b_w), a.dtype), _product(_swap(a_w), g, b.dtype)


_narrow_matmul.defvjp(_narrow_matmul_fwd, _narrow_matmul_bwd)


def matmul(a: Array, b: Array, out_dtype: jnp.dtype | None = None) -> Array:
    """a [..., m, k] @ b [..., k, n] -> [..., m, n] in out_dtype (default a.dtype).

    a and b share a floating dtype and their batch dimensions (no broadcasting). Narrow inputs
    accumulate in float32 (module docstring); float32 and float64 inputs give exactly jnp.matmul.
    """
    if a.dtype != b.dtype or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"matmul needs one dtype and equal batch dimensions; got {a.dtype}{a.shape} @ {b.dtype}{b.shape}")
    out_dtype = jnp.dtype(out_dtype or a.dtype)
    if jnp.finfo(a.dtype).bits >= 32:
        return jnp.matmul(a, b, preferred_element_type=out_dtype)
    return _narrow_matmul(a, b, out_dtype)


def token_matmul(x: Array, kernel: Array) -> Array:
    """x: [batch, seq, d_in] @ kernel [d_in, *out] -> [batch, seq, *out], as one 2-D product.

    Same result as einsum("bsd,d...->bs...", x, kernel), but from the flat [batch * seq, d_in]
    form autodiff writes the weight gradient as one x^T @ grad over the tokens. From the 3-D form XLA:CPU first copies the
    gradient transposed and then runs a slower kernel (bench/kernels.py compares the two forms).
    The sharded batch axis stays the major one. Narrow
    (bfloat16) products accumulate in float32 (matmul.py).
    """
    batch, seq, d_in = x.shape
    out = kernel.shape[1:]
    flat = matmul(x.reshape(batch * seq, d_in), kernel.reshape(d_in, -1))
    return flat.reshape(batch, seq, *out)
