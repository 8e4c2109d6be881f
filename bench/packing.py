"""The train step on real pairs with and without sequence packing (TrainConfig.pack_sequences).

    python bench/packing.py --gin_file configs/experiments/tiny_code.gin --tokenizer outputs/tiny_code/tokenizer

Builds the experiment's data path and train step from its gin file (as bench/pipeline.py does),
takes --steps real global batches, and times the compiled step on them, one layout after the
other for --rounds rounds: "padded" (every sequence padded to its side's max_len, the default)
and "packed" (data/packing.BatchPacker, as train() packs with pack_sequences). A warm-up pass
packs every batch once, so the packed rows have reached the run's high-water mark and every
shape is compiled before timing. "positions / real" is the token positions the encoder computes
per real token; "pairs/s" and "real tokens/s" are per wall-clock second of the step alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import experiment, header  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gin_file", default="configs/experiments/tiny_code.gin")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    import jax

    from cpt_jax.train.run import build_run, packer

    cfg, tokenizer, tmp = experiment(args.gin_file, args.tokenizer)  # tmp: the run dir, alive until main() returns
    run = build_run(dataclasses.replace(cfg, pack_sequences=False))
    produced = run.open_data(tokenizer).produce(0)
    batches = [next(produced).batch for _ in range(args.steps)]
    produced.close()

    pack = packer(run.mesh, run.grad_cache_chunks)  # as train() packs with pack_sequences
    for b in batches:  # warm-up: the rows reach their high-water mark
        pack(b)
    layouts = {"padded": batches, "packed": [pack(b) for b in batches]}
    real = sum(int(b.x.mask.sum() + b.y.mask.sum()) for b in batches)
    positions = {name: sum(int(b.x.tokens.size + b.y.tokens.size) for b in bs) for name, bs in layouts.items()}

    state, step, shards = run.state, run.step, pack.groups
    device_batches = {name: [jax.device_put(b, run.batch_sharding) for b in bs] for name, bs in layouts.items()}
    for bs in device_batches.values():  # compile every shape
        for b in {tuple(v.shape for v in jax.tree.leaves(b)): b for b in bs}.values():
            state, metrics = step(state, b)
    jax.block_until_ready(metrics)

    print(header(f"{args.gin_file}: global batch {cfg.global_batch_size}, x/y lengths {cfg.data.max_len_x}/"
                 f"{cfg.data.max_len_y}, {args.steps} real batches, {jax.device_count()} devices; packed rows x/y "
                 f"{pack.rows['x']}/{pack.rows['y']} per group of {cfg.global_batch_size // shards}"))
    print(f"{'round':>5} {'layout':<7} {'seconds':>8} {'steps/s':>8} {'pairs/s':>8} {'real tokens/s':>14} "
          f"{'positions / real':>17}")
    rates: dict[str, list[float]] = {name: [] for name in layouts}
    for r in range(args.rounds):
        for name, bs in device_batches.items():
            t = time.perf_counter()
            for b in bs:
                state, metrics = step(state, b)
            jax.block_until_ready(metrics)
            seconds = time.perf_counter() - t
            rates[name].append(args.steps / seconds)
            print(f"{r:>5} {name:<7} {seconds:>8.2f} {args.steps / seconds:>8.2f} "
                  f"{args.steps * cfg.global_batch_size / seconds:>8.1f} {real / seconds:>14.0f} "
                  f"{positions[name] / real:>17.3f}")
    med = {name: statistics.median(v) for name, v in rates.items()}
    print(f"median steps/s: padded {med['padded']:.2f}, packed {med['packed']:.2f}; "
          f"speed-up {med['packed'] / med['padded']:.2f}")


if __name__ == "__main__":
    main()
