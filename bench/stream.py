"""Streams a multi-GB text corpus through the data pipeline: pairs/s per core and flat memory.

    python bench/stream.py --gb 1 --files 64     # --dir DIR keeps the corpus (else a temp dir)

Writes --gb of synthetic prose (paragraphs of Zipf-distributed made-up words, blank-line
separated) into --files files, half gzip'd, unless DIR already holds them; trains a small
tokenizer on a sample; then reads the corpus through Batches over TextFilesSource
(blank-line documents cut into span pairs, then tokenised; --mode read skips tokenisation)
until every reader has finished its first epoch (the whole corpus once) or --max_seconds
pass. Prints one row per --every batches: pairs so far, wall and per-core rates (pairs /
CPU-second of this process, all its threads), current RSS (psutil) and peak RSS since the
stream started (VmHWM, reset after setup), and the epochs the readers are in. Not a test.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import platform
import resource
import shutil
import tempfile
import time

import jax
import numpy as np
import psutil

from cpt_jax.data.config import DataConfig
from cpt_jax.data.pipeline import Batches, iter_source_texts
from cpt_jax.data.sources import TextFilesSource
from cpt_jax.data.tokenizer import Tokenizer


def write_corpus(directory: str, gigabytes: float, num_files: int, seed: int = 0) -> None:
    """num_files files (every other one .gz) of about gigabytes GB of paragraphs in total."""
    rng = np.random.default_rng(seed)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"]
    vocab = np.array(["".join(rng.choice(syllables, n)) for n in rng.integers(1, 5, 50_000)])
    zipf = 1 / np.arange(1, len(vocab) + 1)
    words = vocab[rng.choice(len(vocab), 4_000_000, p=zipf / zipf.sum())]
    # A pool of distinct paragraphs (100-1500 words), written in a new random order into each file.
    pool, start = [], 0
    while start < len(words) - 1500:
        n = int(rng.integers(100, 1500))
        pool.append(" ".join(words[start : start + n]).capitalize() + ".\n\n")
        start += n
    per_file = int(gigabytes * 1e9 / num_files)
    for i in range(num_files):
        path = os.path.join(directory, f"part-{i:04d}.txt" + (".gz" if i % 2 else ""))
        with gzip.open(path, "wt", compresslevel=1) if i % 2 else open(path, "w") as f:
            written = 0
            for j in itertools.cycle(rng.permutation(len(pool))):
                f.write(pool[j])
                written += len(pool[j])
                if written >= per_file:
                    break


class NullTokenizer:
    """--mode read: zeros instead of token ids, so the rate is that of reading and span cutting."""

    def encode(self, texts: list[str], side: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(texts), max_len), np.int32), np.zeros((len(texts), max_len), np.int32)


def _reset_peak_rss() -> None:
    """Linux: restart the peak-RSS counter (VmHWM), so setup (tokenizer training) does not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0, help="corpus size (uncompressed text)")
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--dir", default=None, help="corpus directory (kept); default a temp dir (deleted)")
    parser.add_argument("--batch", type=int, default=512, help="global batch (pairs per step)")
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--every", type=int, default=200, help="print a row every this many batches")
    parser.add_argument("--max_seconds", type=float, default=3600)
    parser.add_argument("--mode", choices=("full", "read"), default="full",
                        help="full: spans + tokenisation; read: spans only (NullTokenizer)")
    args = parser.parse_args()

    directory = args.dir or tempfile.mkdtemp(prefix="cpt_stream_bench_")
    os.makedirs(directory, exist_ok=True)
    try:
        if not any(name.startswith("part-") for name in os.listdir(directory)):
            t = time.perf_counter()
            write_corpus(directory, args.gb, args.files)
            print(f"wrote {args.gb} GB in {args.files} files to {directory} in {time.perf_counter() - t:.0f} s", flush=True)
        on_disk = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory)) / 1e9
        source = TextFilesSource(paths=(os.path.join(directory, "part-*"),), documents="blank_line", name="prose")
        tok_dir = os.path.join(directory, "tokenizer")
        if not os.path.exists(tok_dir):
            Tokenizer.train(iter_source_texts([source.build()], 20_000), 8000, tok_dir)
        tokenizer = Tokenizer.load(tok_dir) if args.mode == "full" else NullTokenizer()
        config = DataConfig(
            max_len_x=128, max_len_y=128, sources=(source,), stream_readers=args.readers,
            shuffle_window=args.window, prefetch_batches=args.prefetch,
        )
        run(config, tokenizer, args, on_disk)
    finally:
        if args.dir is None:
            shutil.rmtree(directory)


def run(config: DataConfig, tokenizer: Tokenizer | NullTokenizer, args: argparse.Namespace, on_disk_gb: float) -> None:
    process = psutil.Process()
    _reset_peak_rss()
    batches = Batches(config, tokenizer, args.batch)
    produced = batches.produce()
    print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {platform.machine()} {os.cpu_count()} cores, python "
          f"{platform.python_version()}, jax {jax.__version__}; corpus {args.gb} GB text ({on_disk_gb:.2f} GB on disk, "
          f"{args.files} files, half gzip), span pairs 32-128 words, max_len 128/128, batch {args.batch}, "
          f"{args.readers} readers, window {args.window}, prefetch {args.prefetch}, mode {args.mode}")
    print(f"{'batches':>8} {'pairs':>10} {'s':>7} {'pairs/s':>9} {'pairs/cpu-s':>12} {'RSS MB':>8} {'peak MB':>8} {'epochs':>7}")
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    step = 0
    while True:
        item = next(produced)
        step += 1
        epochs = [state[0] for readers in item.position.readers.values() for state in readers]
        done = min(epochs) >= 1 or time.perf_counter() - t0 > args.max_seconds
        if step % args.every == 0 or done:
            seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
            pairs = step * args.batch
            rss = process.memory_info().rss / 2**20
            peak = _peak_rss_mb()
            print(f"{step:>8} {pairs:>10} {seconds:>7.0f} {pairs / seconds:>9.0f} {pairs / cpu:>12.0f} {rss:>8.0f} "
                  f"{peak:>8.0f} {min(epochs):>3}-{max(epochs)}", flush=True)
        if done:
            break
    produced.close()
    print("drop statistics:", {name: {**stats} for name, stats in item.position.drop_stats.items()})


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
