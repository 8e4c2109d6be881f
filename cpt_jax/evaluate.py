"""python -m cpt_jax.evaluate --checkpoint RUN_DIR — held-out search metrics beside baselines.

For each task (default: code search on stdlib_code, text search on stdlib_text) it scores
the trained encoder, the same architecture at random initialisation, and BM25, by exact
search over the whole held-out corpus; prints a table and writes <RUN_DIR>/eval_<split>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cpt_jax import checkpoint
from cpt_jax.data import builders
from cpt_jax.embedder import Embedder
from cpt_jax.eval.tasks import load_pair_task, score_bm25, score_dense

METRICS = ("mrr", "mrr@10", "ndcg@10", "recall@10")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpt_jax.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a training run's output_dir")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--tasks", default=",".join(builders.DATASETS), help="comma-separated pair datasets")
    p.add_argument("--split", default="test", help="held-out split to search (default: test)")
    p.add_argument("--data_dir", default=None, help="TFDS data dir (default: the run's)")
    p.add_argument("--no_baselines", action="store_true", help="skip random init and BM25")
    p.add_argument("--batch_size", type=int, default=128)
    return p.parse_args(argv)


def evaluate(args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {system: {metric: value}}}."""
    trained = Embedder.load(args.checkpoint, args.step)
    _, meta = checkpoint.read_meta(args.checkpoint, args.step)
    data_dir = args.data_dir or meta["data_config"]["data_dir"]
    systems = {"cpt-jax (trained)": trained}
    if not args.no_baselines:
        systems["random init"] = Embedder.random_init(trained.model, trained.tokenizer, trained.max_len)
    results = {}
    for dataset in args.tasks.split(","):
        builders.prepare(dataset, data_dir)
        task = load_pair_task(dataset, args.split, data_dir)
        scores = {
            name: score_dense(task, lambda texts, side, e=e: e.encode(texts, side, args.batch_size))
            for name, e in systems.items()
        }
        if not args.no_baselines:
            scores["BM25"] = score_bm25(task)
        results[f"{task.name} ({len(task.queries)} queries, {len(task.docs)} docs)"] = scores
    return results


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    for task, scores in results.items():
        lines.append(task)
        lines.append(f"  {'system':<20}" + "".join(f"{m:>11}" for m in METRICS))
        for system, values in scores.items():
            lines.append(f"  {system:<20}" + "".join(f"{values[m]:>11.4f}" for m in METRICS))
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    results = evaluate(args)
    print(format_table(results), flush=True)
    path = os.path.join(args.checkpoint, f"eval_{args.split}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
