"""Peak memory of one training step against the global batch, plain vs GradCache.

For each (batch, mode) a fresh process compiles the real train step (tiny config or --model, x/y
lengths 64/128, one CPU device) and reports XLA's compiled memory (arguments + outputs +
temporaries) and, when --run_up_to allows, runs one step and reports the peak resident
set size of the process. The largest batch that fits a memory budget is found by bisection
on the compiled estimate (compile only; nothing is executed).

  python bench/memory.py [--batches 256,1024,4096,16384] [--chunk 256] [--run_up_to 4096] [--budget_gb 24]
  python bench/memory.py --model configs/model/s.gin --batches 8 --chunk 4 --run_up_to 0 --budget_gb 0
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import random_pairs, synthetic_run  # noqa: E402

GiB = 2**30


def measure(batch: int, chunk: int, run: bool, model_gin: str) -> dict:
    """Runs in a child process: compile (and optionally run) one step."""
    import gin
    import jax

    from cpt_jax.cli.flags import CONFIGURABLES

    if model_gin:
        gin.parse_config_file(model_gin)
    model = CONFIGURABLES["ModelConfig"]()  # without a gin file: the defaults, the tiny shape
    run = synthetic_run(model, batch, 128, chunk, devices=jax.devices()[:1])
    state, step = run.state, run.step
    batch_arrays = random_pairs(model.vocab_size, batch, 64, 128)
    compiled = step.lower(state, batch_arrays).compile()
    mem = compiled.memory_analysis()
    out = {
        "compiled_bytes": int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes),
        "temp_bytes": int(mem.temp_size_in_bytes),
    }
    if run:
        t = time.perf_counter()
        state, metrics = compiled(state, batch_arrays)
        jax.block_until_ready(metrics)
        out["step_seconds"] = time.perf_counter() - t
        out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def child(batch: int, chunk: int, run: bool, model_gin: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", f"{batch},{chunk},{int(run)}", "--model", model_gin],
        capture_output=True, text=True,
    )
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["killed"])[-1][:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def largest_fitting(chunk: int, budget: float, model_gin: str, hi: int = 1 << 22) -> int:
    """Largest batch (a multiple of the chunk, or of 64) whose compiled memory fits the budget."""
    unit = chunk or 64
    lo, hi = 1, hi // unit  # in units
    while lo < hi:
        mid = (lo + hi + 1) // 2
        r = child(mid * unit, chunk, False, model_gin)
        if "error" not in r and r["compiled_bytes"] <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo * unit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batches", default="256,1024,4096,16384")
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--run_up_to", type=int, default=4096, help="execute steps only up to this batch")
    p.add_argument("--budget_gb", type=float, default=24.0, help="0: skip the bisection")
    p.add_argument("--model", default="", help="a model gin file (default: the tiny config)")
    p.add_argument("--child")
    args = p.parse_args()
    if args.child:
        b, c, r = map(int, args.child.split(","))
        print(json.dumps(measure(b, c, bool(r), args.model)))
        return
    import jax

    print(f"# {datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()} "
          f"python {platform.python_version()} jax {jax.__version__}; {args.model or 'tiny config'}, seq x/y 64/128, "
          "1 CPU device")
    print(f"{'batch':>7} {'mode':<16} {'compiled GiB':>13} {'temp GiB':>9} {'peak RSS GiB':>13} {'step s':>8}")
    for batch in map(int, args.batches.split(",")):
        for chunk, name in ((0, "plain"), (args.chunk, f"gradcache/{args.chunk}")):
            r = child(batch, chunk, batch <= args.run_up_to, args.model)
            if "error" in r:
                print(f"{batch:>7} {name:<16} {'error: ' + r['error']}")
                continue
            rss = f"{r['peak_rss_bytes'] / GiB:13.2f}" if "peak_rss_bytes" in r else f"{'-':>13}"
            secs = f"{r['step_seconds']:8.1f}" if "step_seconds" in r else f"{'-':>8}"
            print(f"{batch:>7} {name:<16} {r['compiled_bytes'] / GiB:13.2f} {r['temp_bytes'] / GiB:9.2f} {rss} {secs}",
                  flush=True)
    budget = args.budget_gb * GiB
    for chunk, name in ((0, "plain"), (args.chunk, f"gradcache/{args.chunk}")) if budget else ():
        print(f"largest batch within {args.budget_gb:g} GiB (compiled estimate), {name}: "
              f"{largest_fitting(chunk, budget, args.model)}", flush=True)


if __name__ == "__main__":
    main()
