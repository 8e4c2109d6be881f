"""Train-step throughput and MFU of one model config on whatever devices JAX sees (CPU or GPU).

    python bench/mfu.py --model configs/model/tiny.gin --batch 64 --seq 64
    python bench/mfu.py --model configs/model/s.gin --batch 64 --seq 512 --dtype bfloat16   # bench/gpu.sh

The real train step (cpt_jax/train/step.py: both sides encoded at --seq tokens, sharded loss,
AdamW, donated state) with random init and random tokens, on a data-parallel mesh over all
devices. MFU = model FLOPs (cpt_jax/model/flops.py) per second / the --dtype matmul peak
measured here on one device (an 8192^3 multiply on accelerators, 2048^3 on CPU) times the device
count; with --nominal_tflops also against the vendor's per-device figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import best_seconds, header, random_pairs, synthetic_run  # noqa: E402


def matmul_peak(dtype: str, n: int) -> float:
    """Best FLOP/s of an n x n x n multiply in dtype on the first device."""
    import jax
    import jax.numpy as jnp

    a = jax.device_put(jnp.ones((n, n), dtype), jax.devices()[0])
    mm = jax.jit(lambda u, v: u @ v)
    mm(a, a).block_until_ready()
    return 2 * n**3 / best_seconds(lambda: mm(a, a).block_until_ready(), 10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="configs/model/tiny.gin", help="a configs/model/*.gin file")
    p.add_argument("--batch", type=int, default=64, help="global batch (pairs)")
    p.add_argument("--seq", type=int, default=64, help="x and y length")
    p.add_argument("--dtype", default=None, help="override ModelConfig.dtype")
    p.add_argument("--remat", default=None, help="override ModelConfig.remat")
    p.add_argument("--scan_layers", type=int, default=None, help="override ModelConfig.scan_layers (0 or 1)")
    p.add_argument("--scan_unroll", type=int, default=None, help="override ModelConfig.scan_unroll (blocks per scan iteration)")
    p.add_argument("--chunk", type=int, default=0, help="GradCache chunk (pairs); 0: plain step")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--nominal_tflops", type=float, default=0.0, help="vendor dense peak per device, e.g. 989 (H100 SXM bf16)")
    args = p.parse_args()

    import gin
    import jax

    from cpt_jax.model import ModelConfig
    from cpt_jax.model.flops import train_step_flops
    from cpt_jax.train.optimizer import OptimizerConfig

    # Only ModelConfig is registered: this path needs jax, flax, optax and gin, nothing of the
    # data stack (the GPU image has no TensorFlow or grain).
    gin.external_configurable(ModelConfig, "ModelConfig")
    gin.parse_config_file(args.model)
    model = gin.get_configurable("ModelConfig")()
    overrides = {k: v for k, v in (("dtype", args.dtype), ("remat", args.remat)) if v}
    if args.scan_layers is not None:
        overrides["scan_layers"] = bool(args.scan_layers)
    if args.scan_unroll is not None:
        overrides["scan_unroll"] = args.scan_unroll
    model = dataclasses.replace(model, max_len=max(model.max_len, args.seq), **overrides)
    total = args.warmup + args.steps
    opt = OptimizerConfig(warmup_steps=0, decay="constant")
    run = synthetic_run(model, args.batch, args.seq, args.chunk, opt, total, devices=jax.devices())
    state, step = run.state, run.step
    batch = jax.device_put(random_pairs(model.vocab_size, args.batch, args.seq, args.seq, low=10), run.batch_sharding)

    t = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t
    for _ in range(args.warmup):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - t) / args.steps

    n = jax.device_count()
    on_cpu = jax.devices()[0].platform == "cpu"
    peak = matmul_peak(model.dtype, 2048 if on_cpu else 8192) * (1 if on_cpu else n)  # CPU devices share cores
    flops = train_step_flops(model, args.batch, args.seq, args.seq)
    achieved = flops / step_s
    print(header(f"{args.model} ({model.num_layers} layers, width {model.d_model}), {model.dtype}, remat "
                 f"{model.remat}, {f'scanned layers (unroll {model.scan_unroll})' if model.scan_layers else 'unrolled layers'}, batch {args.batch}, seq {args.seq}+{args.seq}, "
                 f"{'GradCache ' + str(args.chunk) if args.chunk else 'plain step'}, {n} x {jax.devices()[0].device_kind}"))
    print(f"{'step s':>8} {'pairs/s':>9} {'tokens/s':>10} {'model TFLOP/s':>13} {'matmul peak':>11} {'MFU':>6} "
          f"{'nominal MFU':>11} {'compile s':>9} {'loss':>7}")
    nominal = f"{achieved / (args.nominal_tflops * 1e12 * n):11.1%}" if args.nominal_tflops else f"{'-':>11}"
    print(f"{step_s:8.3f} {args.batch / step_s:9.1f} {args.batch * 2 * args.seq / step_s:10.0f} {achieved / 1e12:13.2f} "
          f"{peak / 1e12:11.2f} {achieved / peak:6.1%} {nominal} {compile_s:9.1f} {float(metrics['loss']):7.3f}")


if __name__ == "__main__":
    main()
