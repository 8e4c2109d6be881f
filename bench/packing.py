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
    import numpy as np

    from cpt_jax.data.packing import BatchPacker
    from cpt_jax.data.pipeline import make_batches
    from cpt_jax.parallel.mesh import BATCH_AXES, make_mesh
    from cpt_jax.parallel.rules import batch_sharding, rules_from_config
    from cpt_jax.train.optimizer import learning_rate, make_optimizer
    from cpt_jax.train.state import create_train_state
    from cpt_jax.train.step import StepContext, make_train_step

    cfg, tokenizer, tmp = experiment(args.gin_file, args.tokenizer)  # tmp: the run dir, alive until main() returns
    data = make_batches(cfg.data, tokenizer, cfg.global_batch_size)
    produced = data.produce(0)
    batches = [next(produced).batch for _ in range(args.steps)]
    getattr(produced, "close", lambda: None)()

    mesh = make_mesh(cfg.mesh)
    shards = int(np.prod([mesh.shape[a] for a in BATCH_AXES]))
    packer = BatchPacker(shards)
    for b in batches:  # warm-up: the rows reach their high-water mark
        packer(b)
    layouts = {"padded": batches, "packed": [packer(b) for b in batches]}
    real = sum(int(b[f"{s}_mask"].sum()) for b in batches for s in "xy")
    positions = {name: sum(int(b[f"{s}_tokens"].size) for b in bs for s in "xy") for name, bs in layouts.items()}

    rules = rules_from_config(cfg.sharding_rules)
    tx = make_optimizer(cfg.optimizer, cfg.num_steps)
    state, shardings = create_train_state(cfg.model, cfg.temperature, tx, mesh, rules, cfg.seed)
    lr = lambda s: learning_rate(cfg.optimizer, cfg.num_steps, s)  # noqa: E731
    step = make_train_step(StepContext(cfg.model, cfg.temperature, tx, mesh, rules, cfg.seed), shardings, lr)
    sharding = batch_sharding(mesh, BATCH_AXES)
    device_batches = {
        name: [{k: jax.device_put(v, sharding) for k, v in b.items()} for b in bs] for name, bs in layouts.items()
    }
    for bs in device_batches.values():  # compile every shape
        for b in {tuple(v.shape for v in b.values()): b for b in bs}.values():
            state, metrics = step(state, b)
    jax.block_until_ready(metrics)

    print(header(f"{args.gin_file}: global batch {cfg.global_batch_size}, x/y lengths {cfg.data.max_len_x}/"
                 f"{cfg.data.max_len_y}, {args.steps} real batches, {jax.device_count()} devices; packed rows x/y "
                 f"{packer.rows['x']}/{packer.rows['y']} per group of {cfg.global_batch_size // shards}"))
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
