"""Matryoshka embeddings: MiniLM trained further on the standard-library code pairs with and without
LossConfig.matryoshka_dims, then held-out code search (stdlib_code/test) at every nested dimension.

Two runs of configs/experiments/minilm_code.gin, same steps, batch and seed (each scored on the
validation split every --eval_every steps during training, the best step kept; bench/eval_curve.py
draws the curves): one with the loss also
computed on the first 256, 128, 64 and 32 values (normalised again), one without; each scored by
`python -m cpt_jax.evaluate --dims` (embeddings cut to each dimension and normalised again; the run
without Matryoshka is cut the same way, which is what a user of an ordinary model gets). The start
(all-MiniLM-L6-v2, itself cut) and BM25 come with the first. A finished run is not trained again.

    python bench/matryoshka.py --steps 120
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402
from hard_negatives import last_metrics, run  # noqa: E402

DIMS = (384, 256, 128, 64, 32)


EVAL_METRIC = "stdlib_code/validation/ndcg@10"


def train_flags(output_dir: str, matryoshka: bool, args: argparse.Namespace) -> list[str]:
    """minilm_code.gin with or without the nested dims; both scored on stdlib_code's validation split
    during training (TrainConfig.evaluation), the best step kept."""
    dims = f"({', '.join(map(str, DIMS))})" if matryoshka else "()"
    return [
        "cpt_jax.train", "--gin_file=configs/experiments/minilm_code.gin",
        f"--gin.LossConfig.matryoshka_dims={dims}",
        f"--gin.EvalConfig.every={args.eval_every}", "--gin.EvalConfig.tasks=('stdlib_code',)",
        f"--gin.EvalConfig.best_metric='{EVAL_METRIC}'",
        f"--gin.TrainConfig.num_steps={args.steps}",
        f"--gin.TrainConfig.global_batch_size={args.batch}",
        f"--gin.TrainConfig.checkpoint_every={args.steps}",
        f"--gin.TrainConfig.output_dir={output_dir}",
    ]


def table(results: dict[str, tuple[dict, dict]]) -> str:
    """nDCG@10 (and MRR) per dimension: the start, the run without, the run with Matryoshka."""
    from cpt_jax.eval.suite import START, TRAINED

    (task, without), = results["without"][0].items()
    (_, with_), = results["with"][0].items()
    rows = {"all-MiniLM-L6-v2 (start), cut": (without, START),
            "trained without Matryoshka, cut": (without, TRAINED),
            "trained with Matryoshka": (with_, TRAINED)}
    head = " | ".join(f"nDCG@10 {d}" for d in DIMS)
    lines = [task, f"| system | {head} | MRR 384 | MRR 64 | last train loss |",
             "| --- |" + " ---: |" * (len(DIMS) + 3)]
    for label, (scores, system) in rows.items():
        name = lambda d: system if d == DIMS[0] else f"{system} @{d}"  # noqa: E731
        cells = " | ".join(f"{scores[name(d)]['ndcg@10']:.4f}" for d in DIMS)
        logged = results["with" if scores is with_ else "without"][1]
        loss = f"{logged['loss']:.4f}" if system == TRAINED else ""
        lines.append(f"| {label} | {cells} | {scores[name(384)]['mrr']:.4f} | {scores[name(64)]['mrr']:.4f} | {loss} |")
    bm25 = without["BM25"]
    lines.append(f"| BM25 | {bm25['ndcg@10']:.4f} (no dimension) |" + " |" * (len(DIMS) - 1)
                 + f" {bm25['mrr']:.4f} | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--eval_every", type=int, default=20, help="steps between evaluations during training")
    p.add_argument("--workdir", default="outputs/matryoshka")
    p.add_argument("--data_dir", default="outputs/tfds")
    args = p.parse_args()
    print(header(f"MiniLM on stdlib_code with and without Matryoshka dims {DIMS}, {args.steps} steps at batch "
                 f"{args.batch}, in {args.workdir}"), flush=True)
    results = {}
    for name, matryoshka in (("without", False), ("with", True)):
        output_dir = os.path.join(args.workdir, f"minilm_code_{name}_matryoshka")
        run(train_flags(output_dir, matryoshka, args))  # a finished run only restores and stops
        path = os.path.join(output_dir, "eval_matryoshka.json")
        baselines = ["--no_baselines"] if name == "with" else []  # the start and BM25 are the same for both
        run(["cpt_jax.evaluate", "--checkpoint", output_dir, "--tasks", "stdlib_code", "--data_dir", args.data_dir,
             "--dims", ",".join(map(str, DIMS[1:])), "--output", path, *baselines])
        with open(path) as f:
            results[name] = (json.load(f), last_metrics(output_dir))
    print(table(results))


if __name__ == "__main__":
    main()
