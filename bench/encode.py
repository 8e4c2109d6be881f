"""Encoding throughput: cpt_jax.Embedder.encode vs sentence-transformers' encode of the exported model.

    python -m cpt_jax.train --gin_file=configs/experiments/minilm_code.gin   # once: the run to load
    python bench/encode.py --checkpoint outputs/minilm_code --docs 2000 --rounds 3

Loads a training run with `Embedder.load`, exports it with `cpt_jax.interop.export` (into a temp dir),
loads that with `sentence_transformers.SentenceTransformer`, and encodes the same documents
(function bodies of the held-out standard-library split, repeated to --docs, document side at the
run's y length) with both, alternating in one process: round 0 is a warm-up (it includes
cpt-jax's compiles, one per length bucket) and is printed but not in the median. Both use
--batch_size and sort by length. Also checks the two agree (max |difference| of the embeddings).

GFLOP/s and MFU count the model FLOPs (cpt_jax/model/flops.py) of the tokens each system computes:
cpt-jax pads each sorted batch to a length bucket (on CPU a batch holds at most CPU_BATCH_TOKENS
tokens, so long buckets have fewer rows), sentence-transformers to the batch's longest text. MFU
divides by the 2048^3 matmul peak of the dtype the system computes in, the larger of JAX's and
PyTorch's, measured at the start of the run.

--dtype bfloat16 encodes with `Embedder.load(..., dtype="bfloat16")` and loads the exported model
in bfloat16 too (--st_dtype float32 keeps sentence-transformers at its float32 default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header, matmul_peak_gflops  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="outputs/minilm_code")
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data_dir", default="outputs/tfds")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="cpt-jax compute dtype")
    p.add_argument("--st_dtype", default=None, choices=("float32", "bfloat16"),
                   help="sentence-transformers' model dtype (default: --dtype)")
    args = p.parse_args()
    args.st_dtype = args.st_dtype or args.dtype
    if not os.path.isdir(args.checkpoint):
        sys.exit(f"--checkpoint {args.checkpoint} is not a training run; create it with "
                 "python -m cpt_jax.train --gin_file=configs/experiments/minilm_code.gin")

    import jax
    import torch
    from sentence_transformers import SentenceTransformer

    from cpt_jax import Embedder
    from cpt_jax.embedder import padded_batches
    from cpt_jax.eval.tasks import load_pair_task
    from cpt_jax.interop.export import export
    from cpt_jax.model.flops import encoder_forward_flops

    torch.set_num_threads(os.cpu_count() or 1)
    docs = load_pair_task("stdlib_code", "test", args.data_dir).docs
    docs = (docs * (args.docs // len(docs) + 1))[: args.docs]
    embedder = Embedder.load(args.checkpoint, dtype=args.dtype)
    tmp = tempfile.TemporaryDirectory()
    st = SentenceTransformer(export(args.checkpoint, os.path.join(tmp.name, "export")), device="cpu",
                             model_kwargs={"dtype": getattr(torch, args.st_dtype)})
    lengths = np.sort(embedder.tokenizer.encode(docs, "y", embedder.max_len["y"])[1].sum(axis=1))[::-1]
    tokens = int(lengths.sum())
    # The padded [rows, width] shapes each system computes, batch by batch (cpt-jax's as
    # embedder.padded_batches makes them: on CPU at most embedder.batch_tokens tokens a batch).
    batches = [lengths[i : i + args.batch_size] for i in range(0, len(lengths), args.batch_size)]
    mask = (np.arange(embedder.max_len["y"])[None, :] < lengths[:, None]).astype(np.int32)
    ours = [t.shape for _, t, _ in padded_batches(mask, mask, embedder.max_len["y"], args.batch_size,
                                                   embedder.batch_tokens, len(jax.local_devices()))]
    shapes = {"cpt-jax": ours, "sentence-transformers": [(len(batch), int(batch.max())) for batch in batches]}
    m = embedder.model
    flops = {name: sum(rows * encoder_forward_flops(m, width) for rows, width in sizes) for name, sizes in shapes.items()}
    dtypes = {"cpt-jax": args.dtype, "sentence-transformers": args.st_dtype}
    # Each system's MFU is against the matmul peak of the dtype it computes in.
    peaks = {dt: max(matmul_peak_gflops(fw, dtype=dt) for fw in ("jax", "torch")) for dt in sorted(set(dtypes.values()))}
    systems = {
        "cpt-jax Embedder.encode": lambda: embedder.encode(docs, side="document", batch_size=args.batch_size),
        "sentence-transformers encode_document": lambda: st.encode_document(docs, batch_size=args.batch_size),
    }
    print(header(f"{args.checkpoint}: {m.num_layers} layers, width {m.d_model}; {len(docs)} documents, "
                 f"{tokens / len(docs):.0f} tokens each on average (max {embedder.max_len['y']}), batch {args.batch_size}"))
    print(f"# cpt-jax computes in {args.dtype}, sentence-transformers in {args.st_dtype}; matmul peak (2048^3, the "
          "better of jax and torch): " + ", ".join(f"{dt} {peak:.0f} GFLOP/s" for dt, peak in peaks.items()))
    print(f"{'round':>5} {'system':<38} {'seconds':>8} {'docs/s':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'MFU':>6}")
    rates: dict[str, list[float]] = {name: [] for name in systems}
    outputs = {}
    for r in range(args.rounds + 1):
        for name, run in systems.items():
            t = time.perf_counter()
            outputs[name] = np.asarray(run())
            seconds = time.perf_counter() - t
            if r:
                rates[name].append(len(docs) / seconds)
            system = name.split()[0]
            gflops, peak = flops[system] / seconds / 1e9, peaks[dtypes[system]]
            print(f"{r:>5} {name:<38} {seconds:8.2f} {len(docs) / seconds:8.1f} {tokens / seconds:9.0f} {gflops:8.1f} "
                  f"{gflops / peak:6.1%}" + ("  (warm-up)" if not r else ""), flush=True)
    a, b = (np.asarray(o, np.float32) for o in outputs.values())
    ours, theirs = (statistics.median(v) for v in rates.values())
    print(f"median docs/s: cpt-jax {ours:.1f}, sentence-transformers {theirs:.1f}; ratio {ours / theirs:.2f}; "
          f"max |embedding difference| {np.abs(a - b).max():.1e}")
    padded = {name: sum(rows * width for rows, width in sizes) / tokens for name, sizes in shapes.items()}
    print(f"padded tokens / real tokens: cpt-jax buckets {padded['cpt-jax']:.3f}, "
          f"sentence-transformers {padded['sentence-transformers']:.3f}")

if __name__ == "__main__":
    main()
