"""Time from launch to the first training step, and the step's compile time, of real runs.

    python bench/startup.py --tokenizer outputs/tiny_code/tokenizer

Launches `python -m cpt_jax.train` for each experiment twice (one step into a temp dir; the
prepared TFDS data under outputs/tfds is reused): "cold" with an empty persistent compilation
cache, then "cached" with the cache the first launch wrote, as a resume or restart finds it and reads the loop's own line
"first step 1: A s to compile and run it, B s after train() started". Columns: launch to first
step (wall, seen from here), of which interpreter start and imports (launch to train()), setup
inside train() (data, tokenizer, state init or import, checkpoint 0), and the first step
(compile + one run). --tokenizer skips training the tiny run's tokenizer (a run resumed or
started from an existing tokenizer); without it the tiny row includes learning the vocabulary.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402

FIRST = re.compile(r"first step 1: ([\d.]+)s to compile and run it, ([\d.]+)s after train\(\) started")
EXPERIMENTS = ("configs/experiments/tiny_code.gin", "configs/experiments/minilm_code.gin")


def launch(gin_file: str, out_dir: str, cache_dir: str, extra: list[str]) -> tuple[float, float, float]:
    """(launch to first step, first-step seconds, train() to first step) of one real run."""
    cmd = [sys.executable, "-m", "cpt_jax.train", f"--gin_file={gin_file}", f"--gin.TrainConfig.output_dir='{out_dir}'",
           "--gin.TrainConfig.num_steps=1", "--gin.TrainConfig.log_every=1", f"--compilation_cache_dir={cache_dir}",
           *extra]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = None
    for line in proc.stdout:
        match = FIRST.search(line)
        if match and found is None:
            found = (time.perf_counter() - t, float(match.group(1)), float(match.group(2)))
    if proc.wait() or found is None:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}) or printed no first-step line")
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", default=None, help="tokenizer for the tiny run (skips learning one)")
    args = p.parse_args()
    print(header("one process, all CPU devices; one step of each experiment"))
    print(f"{'experiment':<24} {'cache':<7} {'launch->step 1 s':>16} {'imports s':>9} {'setup s':>8} {'compile+step s':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, gin_file in enumerate(EXPERIMENTS):
            extra = [f"--gin.TrainConfig.tokenizer_path='{args.tokenizer}'"] if args.tokenizer and "tiny" in gin_file else []
            cache = os.path.join(tmp, f"cache{i}")
            for label in ("cold", "cached"):
                total, first, since_train = launch(gin_file, os.path.join(tmp, f"{i}{label}"), cache, extra)
                print(f"{os.path.basename(gin_file):<24} {label:<7} {total:16.1f} {total - since_train:9.1f} "
                      f"{since_train - first:8.1f} {first:14.1f}", flush=True)


if __name__ == "__main__":
    main()
