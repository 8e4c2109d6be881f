"""Input-pipeline throughput (tokenised pairs/s) next to what the train step consumes.

    python bench/pipeline.py --gin_file configs/experiments/tiny_code.gin
    python bench/pipeline.py --gin_file configs/experiments/tiny_mixture.gin

Builds the experiment's run from its gin file with train.run.build_run, the same assembly train()
uses (its data: data/pipeline.Batches over the configured sources, with their thread prefetch), and its
tokenizer (--tokenizer: an existing one, e.g. outputs/tiny_code/tokenizer; else one is trained
into a temp dir as the run would), then
  1. pulls --batches global batches and times them: pairs/s, and pairs per CPU-second of this
     process (all threads), which is what the pipeline costs when it shares cores with training;
  2. with TrainConfig.pack_sequences, packs them as train() does (the run's layout, in the loop's
     own thread; a first pass brings the rows to their high-water mark) and times that;
  3. compiles the experiment's real train step and times --steps steps on those batches.
"headroom" is pipeline pairs/s / step pairs/s: above 1 the step never waits for data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import experiment, header  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gin_file", default="configs/experiments/tiny_code.gin")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()

    import jax

    from cpt_jax.train.run import build_run

    cfg, tokenizer, tmp = experiment(args.gin_file, args.tokenizer)  # tmp: the run dir, alive until main() returns
    run = build_run(cfg)
    data = run.open_data(tokenizer)
    print(header(f"{args.gin_file}: global batch {cfg.global_batch_size}, x/y lengths "
                 f"{cfg.data.max_len_x}/{cfg.data.max_len_y}, {len(cfg.data.sources)} source(s), "
                 f"{jax.device_count()} devices"))

    produced = data.produce(0)
    batches = [next(produced).batch]  # the first batch includes opening files and starting threads
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.batches):
        batches.append(next(produced).batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    produced.close()
    pipeline_rate = args.batches * cfg.global_batch_size / wall

    pack_rate = None
    if cfg.pack_sequences:
        for b in batches:  # the packed rows reach their high-water mark
            run.layout(b)
        t = time.perf_counter()
        for b in batches:
            run.layout(b)
        pack_rate = len(batches) * cfg.global_batch_size / (time.perf_counter() - t)
    device_batches = [run.to_global(b) for b in batches]
    state, metrics = run.step(run.state, device_batches[0])  # compile
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for i in range(args.steps):
        state, metrics = run.step(state, device_batches[1 + i % args.batches])
    jax.block_until_ready(metrics)
    step_rate = args.steps * cfg.global_batch_size / (time.perf_counter() - t)

    print(f"{'what':<34} {'pairs/s':>9} {'pairs/cpu-s':>12}")
    print(f"{'input pipeline (' + str(args.batches) + ' batches)':<34} {pipeline_rate:9.0f} "
          f"{args.batches * cfg.global_batch_size / cpu:12.0f}")
    if pack_rate is not None:
        print(f"{'packing (the train loop thread)':<34} {pack_rate:9.0f}")
    print(f"{'train step (' + str(args.steps) + ' steps)':<34} {step_rate:9.1f}")
    print(f"headroom: the pipeline produces {pipeline_rate / step_rate:.1f}x what the step consumes; feeding the "
          f"step takes {step_rate / (args.batches * cfg.global_batch_size / cpu):.1%} of one core")


if __name__ == "__main__":
    main()
