"""Encoding batches bounded by tokens vs fixed rows: the evaluation's own texts, side by side.

    python bench/encode_batching.py --checkpoint outputs/minilm_cpt --rounds 2

Encodes what the main job's evaluation encodes for one system (the first --max_pairs queries and
documents of site_code/test and site_text/test, with the run's instructions, at --max_len tokens)
with `Embedder.encode(batch_size=128)` (the evaluation's rows) twice per round, alternating: every
batch 128 rows whatever its width (`with_batch_tokens(None)`), and batches of at most
--batch_tokens tokens (`with_batch_tokens(N)`, CPU_BATCH_TOKENS by default on CPU). Round 0 (the
compiles) is printed but left out of the medians. Then, unless --no_widths, tokens/s of one compiled
batch per width and bound (rows = bound / width), which is where the choice of the bound comes from.
The header names the malloc (glibc's mmap threshold is what the bound works around) and whether the
CPU has AVX-512.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402

TASKS = ("site_code", "site_text")


def _isa() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return "AVX-512" if "avx512f" in f.read() else "no AVX-512"
    except OSError:
        return "unknown ISA"


def _texts(embedder, data_dir: str, max_pairs: int) -> list[tuple[object, list[str], str]]:
    """(the task's encoder, texts, side) of everything one system encodes for the retrieval tasks."""
    from cpt_jax.eval.tasks import load_pair_task

    out = []
    for name in TASKS:
        task = load_pair_task(name, "test", data_dir, max_pairs)
        enc = embedder.for_task(name)
        out += [(enc, task.queries, "query"), (enc, task.docs, "document")]
    return out


def _end_to_end(embedder, parts, bound: int, rounds: int) -> None:
    from cpt_jax.embedder import SIDES

    tokens = 0
    for enc, texts, side in parts:
        s = SIDES[side]
        tokens += int(enc.tokenizer.encode([enc.prefix[s] + t for t in texts], s, enc.max_len[s])[1].sum())
    systems = {"128 rows per batch": None, f"<= {bound} tokens per batch": bound}
    seconds: dict[str, list[float]] = {name: [] for name in systems}
    outputs: dict[str, list[np.ndarray]] = {}
    print(f"{'round':>5} {'batches':<28} {'seconds':>8} {'tokens/s':>9}")
    for r in range(rounds + 1):
        for name, b in systems.items():
            t0 = time.perf_counter()
            outs = []
            for enc, texts, side in parts:
                enc = enc.with_batch_tokens(b)
                enc._recent.clear()  # the copies share a cache of recent results: encode for real
                outs.append(enc.encode(texts, side, batch_size=128))
            dt = time.perf_counter() - t0
            outputs[name] = outs
            if r:
                seconds[name].append(dt)
            print(f"{r:>5} {name:<28} {dt:8.1f} {tokens / dt:9.0f}" + ("  (warm-up, compiles)" if not r else ""), flush=True)
    (a, old), (b, new) = ((k, statistics.median(v)) for k, v in seconds.items())
    diff = max(float(np.abs(x - y).max()) for x, y in zip(*outputs.values()))
    print(f"median seconds: {a} {old:.1f}, {b} {new:.1f}; speed-up {old / new:.2f}x; "
          f"{tokens} real tokens; max |embedding difference| {diff:.1e}")


def _widths(embedder, widths: list[int], bounds: list[int]) -> None:
    e = embedder.with_batch_tokens(None)
    print("\ntokens/s of one batch, by padded width and tokens per batch (rows = bound / width; 'rows 128': 128 rows)")
    print(f"{'width':>5} " + " ".join(f"{b:>8}" for b in bounds) + f" {'rows 128':>9}")
    for w in widths:
        row = []
        for rows in [max(1, b // w) for b in bounds] + [128]:
            t = np.ones((rows, w), np.int32)
            m = np.ones((rows, w), np.int32)
            np.asarray(e._embed(e.params, t, m))  # compile
            n = max(2, 16384 // (rows * w))
            t0 = time.perf_counter()
            for _ in range(n):
                np.asarray(e._embed(e.params, t, m))
            row.append(rows * w * n / (time.perf_counter() - t0))
        print(f"{w:>5} " + " ".join(f"{v:8.0f}" for v in row[:-1]) + f" {row[-1]:9.0f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="outputs/minilm_cpt")
    p.add_argument("--data_dir", default="outputs/tfds")
    p.add_argument("--max_pairs", type=int, default=1000)
    p.add_argument("--max_len", type=int, default=256)
    p.add_argument("--batch_tokens", type=int, default=None, help="the bound to compare (default: CPU_BATCH_TOKENS)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no_widths", action="store_true")
    args = p.parse_args()
    if args.rounds < 1:
        sys.exit(f"--rounds {args.rounds}: pass 1 or more (round 0, the warm-up, is not timed).")
    if not os.path.isdir(args.checkpoint):
        sys.exit(f"--checkpoint {args.checkpoint} is not a training run; create it with the README's first command "
                 "(python -m cpt_jax.train --gin_file=configs/experiments/minilm_cpt.gin)")
    from cpt_jax import Embedder
    from cpt_jax.embedder import CPU_BATCH_TOKENS

    bound = args.batch_tokens or CPU_BATCH_TOKENS
    embedder = Embedder.load(args.checkpoint).with_max_len(args.max_len)
    parts = _texts(embedder, args.data_dir, args.max_pairs)
    m = embedder.model
    print(header(f"{_isa()}; {args.checkpoint}: {m.num_layers} layers, width {m.d_model}; the test splits of "
                 f"{', '.join(TASKS)} (first {args.max_pairs} pairs, queries and documents) at {args.max_len} tokens"))
    _end_to_end(embedder, parts, bound, args.rounds)
    if not args.no_widths:
        _widths(embedder, [256, 176, 112, 64, 32, 16], [1024, 2048, 4096])


if __name__ == "__main__":
    main()
