"""The planner's step-time estimate against the measured step, on this CPU (issue 22).

    python bench/plan_validation.py

For each row: the real run (train/run.build_run via common.synthetic_run: random init, random
tokens) is stepped and timed on one CPU device; the plan compiles the same step from abstract
state (cpt_jax/plan/compile.py, in the CPU's form) and estimates it with this machine as the
accelerator: its measured matmul peak (bench/mfu.matmul_peak, 2048^3 in the config's dtype) and
its measured memory bandwidth (y = x + 1 over 256 MiB, numpy, preallocated). ratio = measured / estimated.

Memory: the plan's compiled peak (XLA:CPU memory analysis of the abstract step) beside the same
analysis of the real run's compiled step (the same program: they must agree) and the growth of
the peak RSS of the child process that builds and steps the run (one per row; the allocator, the
runtime and the initialisation add to it). What cannot be
checked here: how TPU and GPU compilers' memory analyses differ from XLA:CPU's (their schedulers,
rematerialisation and fusion differ); only with a lent device (bench/gpu.sh). What can: the
part of a plan's memory that comes from the traced form of the products (XLA:CPU's float32-output
form vs the accelerators' bfloat16 one), both compiled here (the second table).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import best_seconds, header, peak_rss_bytes, random_pairs, run_child, synthetic_run  # noqa: E402
from mfu import matmul_peak  # noqa: E402

ROWS = (  # (name, model source, batch, seq, GradCache chunk, remat)
    ("tiny", "configs/model/tiny.gin", 64, 64, 0, None),
    ("tiny GradCache 16", "configs/model/tiny.gin", 64, 64, 16, None),
    ("tiny remat full", "configs/model/tiny.gin", 64, 64, 0, "full"),
    ("MiniLM (all-MiniLM-L6-v2 shape)", "configs/experiments/minilm_code.gin", 32, 64, 0, None),
    ("MiniLM GradCache 8", "configs/experiments/minilm_code.gin", 32, 64, 8, None),
)


def memory_bandwidth() -> float:
    """Bytes/s of y = x + 1 over 256 MiB of float32 into a preallocated y (read once, written once):
    DRAM's streaming rate. (A jitted add over fresh 256 MiB outputs runs about 8x slower here, at
    the rate the kernel can fault in new pages.)"""
    import numpy as np

    x = np.ones(64 * 2**20, np.float32)
    y = np.empty_like(x)
    return 2 * x.nbytes / best_seconds(lambda: np.add(x, 1, out=y), 10)


def model_of(source: str):
    from cpt_jax.cli import flags
    from cpt_jax.train.run import with_pretrained_shape

    import gin

    gin.clear_config()
    flags.parse_flags([f"--gin_file={source}"])
    if "experiments" in source:
        return with_pretrained_shape(flags.build("TrainConfig")).model
    return flags.build("ModelConfig")


def measure(row: int, steps: int = 5) -> dict:
    """In this (child) process: ROWS[row]'s real step timed, its peak RSS growth from before the run
    was built (a fresh process per row, so each row's is its own) and the real step's compiled peak."""
    import jax

    from cpt_jax.train.optimizer import OptimizerConfig

    _, source, batch, seq, chunk, remat = ROWS[row]
    model = model_of(source)
    model = dataclasses.replace(model, remat=remat or model.remat, max_len=max(model.max_len, seq))
    rss = peak_rss_bytes()
    run = synthetic_run(model, batch, seq, chunk, OptimizerConfig(warmup_steps=0, decay="constant"), 100,
                        devices=jax.devices()[:1])
    data = jax.device_put(random_pairs(model.vocab_size, batch, seq, seq, low=10), run.batch_sharding)
    compiled = run.step.lower(run.state, data).compile()
    state, metrics = compiled(run.state, data)
    state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    real = compiled.memory_analysis()
    peak = real.argument_size_in_bytes + real.output_size_in_bytes - real.alias_size_in_bytes + real.temp_size_in_bytes
    return {"seconds": (time.perf_counter() - start) / steps, "rss": peak_rss_bytes() - rss, "real_peak": peak}


def main() -> None:
    import jax

    from cpt_jax.plan.compile import compile_step
    from cpt_jax.plan.estimate import estimate, model_step_flops
    from cpt_jax.plan.hardware import cpu
    from cpt_jax.plan.spec import Layout, PlanSpec, train_config

    bandwidth = memory_bandwidth()
    peaks = {}
    print(header(f"plan estimate vs measured step, 1 x {jax.devices()[0].device_kind}; memory bandwidth "
                 f"{bandwidth / 1e9:.1f} GB/s (y = x + 1 over 256 MiB)"))
    print("| config | batch x seq | matmul peak GFLOP/s | estimated s (compute / memory floor) | measured s | "
          "ratio measured/estimated | plan peak MiB | real step's analysis MiB | peak RSS growth MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, source, batch, seq, chunk, remat in ROWS:
        model = model_of(source)
        model = dataclasses.replace(model, remat=remat or model.remat, max_len=max(model.max_len, seq))
        if model.dtype not in peaks:
            peaks[model.dtype] = matmul_peak(model.dtype, 2048)
        spec = PlanSpec(model=model, global_batch=batch, len_x=seq, len_y=seq, devices=1, accelerator="v5p")
        config = train_config(spec, Layout(1, 1, 1, chunk, model.remat))
        plan = compile_step(config, 1, "cpu")
        device = cpu(peaks[model.dtype], bandwidth, 0.0)
        est = estimate(plan.program, device, 1, model_step_flops(model, batch, seq, seq), batch)
        child = run_child(__file__, ["--child", str(ROWS.index((name, source, batch, seq, chunk, remat)))])
        if "error" in child:
            print(f"| {name} | measurement failed: {child['error']} |")
            continue
        seconds, rss, real_peak = child["seconds"], child["rss"], child["real_peak"]
        print(f"| {name} | {batch} x {seq}+{seq} | {peaks[model.dtype] / 1e9:.0f} | {est.step_s:.3f} "
              f"({est.flops_s:.3f} / {est.hbm_s:.3f}) | {seconds:.3f} | {seconds / est.step_s:.2f} | "
              f"{plan.peak_bytes / 2**20:.0f} | {real_peak / 2**20:.0f} | {rss / 2**20:.0f} |")


def form_table() -> None:
    """The same bfloat16 step (the paper's S at batch 64, 128+128 tokens, one device, remat full)
    compiled by XLA:CPU in the CPU's form of the products and in the accelerators' form: how much
    of a plan's memory is the traced form rather than the compiler."""
    from cpt_jax.plan.compile import compile_step
    from cpt_jax.plan.spec import Layout, PlanSpec, train_config

    model = model_of("configs/model/s.gin")
    spec = PlanSpec(model=model, global_batch=64, len_x=128, len_y=128, devices=1, accelerator="v5p")
    config = train_config(spec, Layout(1, 1, 1, 0, "full"))
    print("\n| S, batch 64, 128+128, remat full, 1 device | peak MiB | temporaries MiB | traffic GiB |")
    print("| --- | ---: | ---: | ---: |")
    for form in ("cpu", "tpu"):
        plan = compile_step(config, 1, form)
        print(f"| products in the {form.upper()} form | {plan.peak_bytes / 2**20:.0f} | {plan.temp_bytes / 2**20:.0f} | "
              f"{plan.program.traffic / 2**30:.1f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        main()
        form_table()
