"""The encoder's CPU kernels: the 2-D token matmul and the erf GELU against the forms they replaced.

    python bench/kernels.py

Times, on whatever device JAX sees, the forward + backward of a MiniLM-sized MLP
(x [batch*seq, 384] -> 1536 -> 384, exact GELU) written three ways: the 3-D einsum
(`bsd,df->bsf`, what nn.Dense and the attention einsums did), the 2-D product that
cpt_jax.model.encoder.token_matmul computes, and the 2-D product with gelu_erf instead of
jax.nn.gelu's erfc form; then the GELU alone, forward and gradient. Each row is the best of
--repeats calls of one compiled function, in this process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402


def best_ms(fn: Callable, args: tuple, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--d_model", type=int, default=384)
    p.add_argument("--d_mlp", type=int, default=1536)
    p.add_argument("--repeats", type=int, default=8)
    args = p.parse_args()

    import jax
    import jax.numpy as jnp

    from cpt_jax.model.encoder import gelu_erf, token_matmul

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, args.seq, args.d_model)), jnp.float32)
    wi = jnp.asarray(rng.normal(scale=0.05, size=(args.d_model, args.d_mlp)), jnp.float32)
    wo = jnp.asarray(rng.normal(scale=0.05, size=(args.d_mlp, args.d_model)), jnp.float32)
    erfc_gelu = lambda h: jax.nn.gelu(h, approximate=False)  # noqa: E731

    def mlp_einsum(wi, wo, x):
        h = erfc_gelu(jnp.einsum("bsd,df->bsf", x, wi))
        return jnp.sum(jnp.einsum("bsf,fd->bsd", h, wo) ** 2)

    def mlp_token(act):
        return lambda wi, wo, x: jnp.sum(token_matmul(act(token_matmul(x, wi)), wo) ** 2)

    tokens = args.batch * args.seq
    flops = 3 * 2 * 2 * tokens * args.d_model * args.d_mlp  # two products, forward + backward
    print(header(f"MLP {args.d_model} -> {args.d_mlp} -> {args.d_model} over {args.batch} x {args.seq} tokens, float32, "
                 f"{jax.device_count()} x {jax.devices()[0].device_kind}"))
    print(f"{'what':<58} {'ms':>8} {'GFLOP/s':>8}")
    rows = [
        ("MLP fwd+bwd, 3-D einsum, jax.nn.gelu (before)", mlp_einsum),
        ("MLP fwd+bwd, token_matmul, jax.nn.gelu", mlp_token(erfc_gelu)),
        ("MLP fwd+bwd, token_matmul, gelu_erf (now)", mlp_token(gelu_erf)),
    ]
    for name, fn in rows:
        ms = best_ms(jax.jit(jax.grad(fn, argnums=(0, 1, 2))), (wi, wo, x), args.repeats)
        print(f"{name:<58} {ms:8.1f} {flops / ms / 1e6:8.1f}", flush=True)
    h = jnp.asarray(rng.normal(size=(tokens, args.d_mlp)), jnp.float32)
    for name, act in (("jax.nn.gelu (erfc)", erfc_gelu), ("gelu_erf", gelu_erf)):
        fwd = best_ms(jax.jit(act), (h,), args.repeats)
        grad = best_ms(jax.jit(jax.grad(lambda a, act=act: jnp.sum(act(a)))), (h,), args.repeats)
        print(f"{'GELU over ' + str(h.shape) + ', ' + name + ': forward':<58} {fwd:8.1f} {'-':>8}")
        print(f"{'GELU over ' + str(h.shape) + ', ' + name + ': gradient':<58} {grad:8.1f} {'-':>8}", flush=True)


if __name__ == "__main__":
    main()
