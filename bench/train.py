"""Training throughput and MFU: cpt-jax vs sentence-transformers on the same model, alternating.

    python bench/train.py --shape minilm --batch 64 --seq 64 --rounds 3
    python bench/train.py --shape tiny --batch 4096 --seq 64 --chunk 256 --rounds 1 --steps 2 --warmup 1

Both frameworks train the same randomly initialised BERT-family encoder (bench/common.py
BERT_SHAPES; cpt-jax imports the very weights PyTorch starts from), mean (or --pooling eos: the
last token, sentence-transformers' "lasttoken") pooling, dropout 0, AdamW,
on the same random token batches padded to --seq on both sides, with the symmetric in-batch loss:
cpt-jax's train step (learned temperature) and sentence-transformers' MultipleNegativesRankingLoss
with directions query_to_doc + doc_to_query, partition_mode per_direction (scale 20), or with
--chunk its CachedMultipleNegativesRankingLoss at mini_batch_size=--chunk against cpt-jax's
GradCache with chunks of --chunk pairs. Each (round, framework) is a fresh process: --warmup
untimed steps, then --steps steps timed together (one host sync at the end, as in the training
loop). Rounds alternate jax, torch, jax, torch... so background load hits both alike. Both children
inherit this process's malloc, which the header names: LD_PRELOAD=libtcmalloc_minimal.so.4 python
bench/train.py ... compares the two on tcmalloc.

MFU = model FLOPs (cpt_jax/model/flops.py: matmuls, attention, logits; forward + backward) per
second / the float32 matmul peak measured at the start of this run (the best of JAX and PyTorch
on a 2048^3 multiply); with --pooling eos, the FLOPs EOS pooling needs (the last layer at the last
token only, which cpt-jax computes and sentence-transformers exceeds). Tokenisation is not timed
here (bench/pipeline.py measures it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    BERT_SHAPES, header, matmul_peak_gflops, peak_rss_bytes, random_pairs, run_child, synthetic_run, write_bert,
)

FRAMEWORKS = ("cpt-jax", "sentence-transformers")


def token_batch(vocab: int, batch: int, seq: int, seed: int) -> Any:
    """The same random pairs for both frameworks (ids from 1000: past BERT's special tokens)."""
    return random_pairs(vocab, batch, seq, seq, seed, low=1000)


def run_jax(args: argparse.Namespace) -> dict:
    import jax

    from cpt_jax.interop.hf_weights import load_hf_checkpoint
    from cpt_jax.train.optimizer import OptimizerConfig

    model, params, _ = load_hf_checkpoint(args.model_dir, dropout=0.0, scan_layers=bool(args.scan_layers),
                                          scan_unroll=args.scan_unroll or BERT_SHAPES[args.shape]["num_hidden_layers"])
    model = dataclasses.replace(model, pooling=args.pooling, max_len=args.seq, dtype=args.dtype, remat=args.remat)
    params["position_embedding"] = params["position_embedding"][: args.seq]
    opt = OptimizerConfig(learning_rate=1e-4, warmup_steps=0, decay="constant", weight_decay=0.01)
    total = args.warmup + args.steps
    run = synthetic_run(model, args.batch, args.seq, args.chunk, opt, total, devices=jax.devices(), init_params=params)
    state, step = run.state, run.step
    batches = [token_batch(model.vocab_size, args.batch, args.seq, i) for i in range(2)]
    t = time.perf_counter()
    compiled = step.lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t
    for i in range(args.warmup):
        state, metrics = compiled(state, batches[i % 2])
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for i in range(args.steps):
        state, metrics = compiled(state, batches[i % 2])
    jax.block_until_ready(metrics)
    return {"step_s": (time.perf_counter() - t) / args.steps, "compile_s": compile_s,
            "loss": float(metrics["loss"]), "peak_rss": peak_rss_bytes()}


def run_torch(args: argparse.Namespace) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.set_num_threads(os.cpu_count() or 1)
    transformer = Transformer(args.model_dir, max_seq_length=args.seq)
    pooling = {"mean": "mean", "eos": "lasttoken"}[args.pooling]
    model = SentenceTransformer(modules=[transformer, Pooling(BERT_SHAPES[args.shape]["hidden_size"], pooling)])
    model.train()
    both = dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")
    if args.chunk:
        loss_fn = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=args.chunk, **both)
    else:
        loss_fn = losses.MultipleNegativesRankingLoss(model, **both)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def features(b: Any, side: str) -> dict[str, torch.Tensor]:
        padded = getattr(b, side)
        ids = torch.from_numpy(padded.tokens.astype(np.int64))
        return {"input_ids": ids, "attention_mask": torch.from_numpy(padded.mask.astype(np.int64)),
                "token_type_ids": torch.zeros_like(ids)}

    batches = [token_batch(BERT_SHAPES[args.shape]["vocab_size"], args.batch, args.seq, i) for i in range(2)]
    feats = [[features(b, "x"), features(b, "y")] for b in batches]

    def step(i: int) -> float:
        loss = loss_fn(feats[i % 2], None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for i in range(args.warmup):
        step(i)
    t = time.perf_counter()
    for i in range(args.steps):
        value = step(i)
    return {"step_s": (time.perf_counter() - t) / args.steps, "loss": value, "peak_rss": peak_rss_bytes()}


def _layers(args: argparse.Namespace) -> str:
    if not args.scan_layers:
        return "unrolled layers"
    return f"scanned layers, scan_unroll {args.scan_unroll or 'all'}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(BERT_SHAPES), default="minilm")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--chunk", type=int, default=0, help="GradCache / CachedMNRL mini-batch (0: plain)")
    p.add_argument("--dtype", default="float32", help="cpt-jax compute dtype")
    p.add_argument("--remat", default="none", help="cpt-jax ModelConfig.remat")
    p.add_argument("--pooling", default="mean", choices=("mean", "eos"),
                   help="mean, or the paper's EOS (last-token) pooling, in both frameworks")
    p.add_argument("--scan_layers", type=int, default=1, help="cpt-jax ModelConfig.scan_layers (1: nn.scan, 0: unrolled)")
    p.add_argument("--scan_unroll", type=int, default=0, help="cpt-jax ModelConfig.scan_unroll (0: all layers)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--model_dir", help="where the shared random BERT is written (default: a temp dir)")
    p.add_argument("--child", choices=FRAMEWORKS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_jax(args) if args.child == "cpt-jax" else run_torch(args)))
        return

    from cpt_jax.model.flops import train_step_flops
    from cpt_jax.interop.hf_families import model_config_from_hf

    tmp = tempfile.TemporaryDirectory()
    args.model_dir = write_bert(args.model_dir or tmp.name, args.shape)
    with open(os.path.join(args.model_dir, "config.json")) as f:
        cfg = dataclasses.replace(model_config_from_hf(json.load(f)), pooling=args.pooling)
    flops = train_step_flops(cfg, args.batch, args.seq, args.seq)
    peaks = {fw: matmul_peak_gflops(fw) for fw in ("jax", "torch")}
    peak = max(peaks.values())
    mode = f"GradCache/CachedMNRL mini-batch {args.chunk}" if args.chunk else "plain step / MNRL"
    print(header(f"{args.shape} BERT, batch {args.batch}, seq {args.seq}+{args.seq}, {mode}, {args.pooling} pooling, cpt-jax {args.dtype}, "
                 f"{_layers(args)}, remat {args.remat}"))
    print(f"# float32 matmul peak (2048^3): jax {peaks['jax']:.0f} GFLOP/s, torch {peaks['torch']:.0f} GFLOP/s; "
          f"model FLOPs per step {flops / 1e9:.1f} G")
    print(f"{'round':>5} {'framework':<22} {'step s':>8} {'pairs/s':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'MFU':>6} "
          f"{'compile s':>9} {'peak RSS GiB':>12} {'loss':>7}")
    rates: dict[str, list[float]] = {fw: [] for fw in FRAMEWORKS}
    child_args = [f"--{k}={v}" for k, v in vars(args).items() if k not in ("child", "rounds") and v is not None]
    for r in range(args.rounds):
        for fw in FRAMEWORKS:
            res = run_child(__file__, [*child_args, f"--child={fw}"])
            if "error" in res:
                print(f"{r:>5} {fw:<22} error: {res['error']}", flush=True)
                continue
            pairs = args.batch / res["step_s"]
            rates[fw].append(pairs)
            gflops = flops / res["step_s"] / 1e9
            compile_s = f"{res['compile_s']:9.1f}" if "compile_s" in res else f"{'-':>9}"
            print(f"{r:>5} {fw:<22} {res['step_s']:8.3f} {pairs:8.1f} {pairs * 2 * args.seq:9.0f} {gflops:8.1f} "
                  f"{gflops / peak:6.1%} {compile_s} {res['peak_rss'] / 2**30:12.2f} {res['loss']:7.3f}", flush=True)
    if all(rates.values()):
        ratio = statistics.median(rates["cpt-jax"]) / statistics.median(rates["sentence-transformers"])
        print(f"median pairs/s: cpt-jax {statistics.median(rates['cpt-jax']):.1f}, sentence-transformers "
              f"{statistics.median(rates['sentence-transformers']):.1f}; ratio cpt-jax / sentence-transformers = {ratio:.2f}")


if __name__ == "__main__":
    main()
