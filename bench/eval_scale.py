"""Time and peak memory of BEIR evaluation (exact chunked search) against the corpus size.

For each N a fresh process writes a BEIR folder of N documents and Q queries (text = an id),
then runs cpt_jax.eval.beir.evaluate_beir with a fake encoder: document i is a fixed random
unit vector in R^d (generated per block of ids, so any chunking sees the same vector) and a
query is its target document's vector plus noise, renormalised. Everything the real CLI does
happens: the validation pass over corpus.jsonl, chunked reading and encoding, the running
top-100 merge, the metrics. Peak RSS is sampled with psutil (every 10 ms) and read from
getrusage; "all embeddings" is what holding the corpus's vectors at once would take.

  python bench/eval_scale.py [--docs 10000,100000,1000000] [--dim 256] [--queries 1000] [--chunk 10000]
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
import tempfile
import threading
import time
from collections.abc import Sequence

import numpy as np
import psutil

MiB = 2**20
BLOCK = 4096  # ids per generated block of document vectors


class RandomUnitEncoder:
    """Document "i" -> random unit vector v_i; query "i" -> normalise(v_i + noise * unit noise)."""

    def __init__(self, dim: int, noise: float, seed: int = 0) -> None:
        self.dim, self.noise, self.seed = dim, noise, seed
        self.seconds = 0.0  # time spent encoding, to separate it from search
        self._last: tuple[int, np.ndarray] = (-1, np.empty(0))  # chunks share their boundary block

    def _block(self, b: int) -> np.ndarray:
        if self._last[0] != b:
            v = np.random.default_rng([self.seed, b]).standard_normal((BLOCK, self.dim), dtype=np.float32)
            self._last = (b, v / np.linalg.norm(v, axis=1, keepdims=True))
        return self._last[1]

    def _docs(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((ids.size, self.dim), np.float32)
        for b in np.unique(ids // BLOCK):
            sel = ids // BLOCK == b
            out[sel] = self._block(int(b))[ids[sel] % BLOCK]
        return out

    def encode(self, texts: Sequence[str], side: str, batch_size: int) -> np.ndarray:
        t = time.perf_counter()
        v = self._docs(np.fromiter(map(int, texts), np.int64, len(texts)))
        if side == "query":
            z = np.random.default_rng([self.seed, 1 << 40]).standard_normal(v.shape, dtype=np.float32)
            v = v + self.noise * z / np.linalg.norm(z, axis=1, keepdims=True)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
        self.seconds += time.perf_counter() - t
        return v


def write_folder(folder: str, num_docs: int, num_queries: int, seed: int = 0) -> None:
    """corpus.jsonl of num_docs ids (written in blocks), queries naming a random target doc each."""
    targets = np.random.default_rng(seed).choice(num_docs, num_queries, replace=False)
    with open(os.path.join(folder, "corpus.jsonl"), "w") as f:
        for start in range(0, num_docs, 100_000):
            f.write("".join(f'{{"_id": "d{i}", "title": "", "text": "{i}"}}\n'
                            for i in range(start, min(num_docs, start + 100_000))))
    with open(os.path.join(folder, "queries.jsonl"), "w") as f:
        f.writelines(f'{{"_id": "q{j}", "text": "{t}"}}\n' for j, t in enumerate(targets))
    os.makedirs(os.path.join(folder, "qrels"))
    with open(os.path.join(folder, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"q{j}\td{t}\t1\n" for j, t in enumerate(targets))


def measure(num_docs: int, dim: int, num_queries: int, chunk: int, noise: float) -> dict:
    """Runs in a child process: build the folder, then evaluate while sampling RSS."""
    from cpt_jax.eval.beir import evaluate_beir

    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as folder:
        t = time.perf_counter()
        write_folder(folder, num_docs, num_queries)
        write_s = time.perf_counter() - t
        before = proc.memory_info().rss
        peak, done = [before], threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                peak[0] = max(peak[0], proc.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        encoder = RandomUnitEncoder(dim, noise)
        t = time.perf_counter()
        metrics = evaluate_beir(encoder, folder, chunk_size=chunk, batch_size=chunk)
        total = time.perf_counter() - t
        done.set()
        sampler.join()
    return {
        "write_s": write_s, "total_s": total, "encode_s": encoder.seconds,
        "rss_before": before, "rss_peak_psutil": max(peak[0], proc.memory_info().rss),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, **metrics,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--docs", default="1000000", help="comma-separated corpus sizes")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--noise", type=float, default=3.0, help="query = doc + noise * random unit vector")
    p.add_argument("--child", action="store_true")
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.docs), args.dim, args.queries, args.chunk, args.noise)))
        return
    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}; d={args.dim}, {args.queries} queries, chunk {args.chunk}, top-100")
    print(f"{'docs':>9} {'total s':>8} {'encode s':>9} {'search+read s':>14} {'RSS before MiB':>15} "
          f"{'peak RSS MiB':>13} {'all embeddings MiB':>19} {'ndcg@10':>8} {'recall@100':>11}")
    for n in map(int, args.docs.split(",")):
        cmd = [sys.executable, __file__, "--child", f"--docs={n}", f"--dim={args.dim}", f"--queries={args.queries}",
               f"--chunk={args.chunk}", f"--noise={args.noise}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"{n:>9} error: {(proc.stderr.strip().splitlines() or ['killed'])[-1][:120]}", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = max(r["rss_peak_psutil"], r["ru_maxrss"])
        print(f"{n:>9} {r['total_s']:8.1f} {r['encode_s']:9.1f} {r['total_s'] - r['encode_s']:14.1f} "
              f"{r['rss_before'] / MiB:15.0f} {peak / MiB:13.0f} {n * args.dim * 4 / MiB:19.0f} "
              f"{r['ndcg@10']:8.4f} {r['recall@100']:11.4f}", flush=True)


if __name__ == "__main__":
    main()
