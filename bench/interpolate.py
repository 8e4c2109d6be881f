"""Weight interpolation between a run's pretrained start and its last checkpoint (WiSE-FT,
Wortsman et al. 2022): validation MRR and nDCG@10 of (1 - a) * start + a * trained for each a,
scored as the evaluate CLI scores the site tasks (the first --max_pairs pairs of the split, each
task with its source's instruction, a document equal to its query never retrieved). a = 0 is the
start, a = 1 the run; a > 1 extrapolates along the run's update.

    python bench/interpolate.py outputs/recipe/b256_gc64_lr1e-4_by_source_instructions_tau20_steps6
    python bench/interpolate.py RUN --alphas 0.5,0.75,1 --split validation --max_len 256
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402

from cpt_jax.embedder import Embedder  # noqa: E402
from cpt_jax.eval.tasks import load_pair_task, score_dense  # noqa: E402

TASKS = ("site_code", "site_text")


def interpolated(start: Embedder, trained: Embedder, alpha: float) -> Embedder:
    """An Embedder of the trained run's model, tokenizer and instructions with mixed parameters."""
    params = jax.tree.map(lambda s, t: (1 - alpha) * s + alpha * t, start.params, trained.params)
    return Embedder(trained.model, params, trained.tokenizer, trained.max_len, trained.instructions)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run directory that started from a pretrained model (TrainConfig.init_from)")
    p.add_argument("--alphas", default="0,0.5,0.75,1", help="comma-separated weights of the trained parameters")
    p.add_argument("--split", default="validation")
    p.add_argument("--data_dir", default="outputs/tfds")
    p.add_argument("--max_pairs", type=int, default=1000)
    p.add_argument("--max_len", type=int, default=256, help="tokens per text, as evaluate --max_len")
    args = p.parse_args()
    alphas = [float(a) for a in args.alphas.split(",") if a]
    if not alphas:
        p.error("--alphas is empty; pass weights such as 0.5,1")
    trained = Embedder.load(args.run)
    start = Embedder.pretrained_start(args.run)
    if start is None:
        p.error(f"{args.run} did not start from a pretrained model: nothing to interpolate with")
    tasks = {name: load_pair_task(name, args.split, args.data_dir, limit=args.max_pairs) for name in TASKS}
    print(header(f"{args.run}, {args.split} splits (first {args.max_pairs} pairs each, scored at {args.max_len} tokens)"))
    print("| a (weight of the trained parameters) | code MRR | code nDCG@10 | text MRR | text nDCG@10 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for alpha in alphas:
        encoder = interpolated(start, trained, alpha).with_max_len(args.max_len)
        scores = [score_dense(task, encoder.for_task(name)) for name, task in tasks.items()]
        cells = " | ".join(f"{s['mrr']:.4f} | {s['ndcg@10']:.4f}" for s in scores)
        print(f"| {alpha:g} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
