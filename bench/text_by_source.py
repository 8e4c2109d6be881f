"""Where a run gains or loses on site_text: MRR per text source (docstrings, package descriptions,
documentation files, pydoc topics) for BM25 and each run, scored exactly as the evaluate CLI scores
the task (the first --max_pairs pairs of the split, a document equal to its query never retrieved).

    python bench/text_by_source.py outputs/recipe/b256_gc64_lr1e-4_by_source_instructions_tau20
    python bench/text_by_source.py RUN [RUN ...] --split validation --max_len 512
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import header  # noqa: E402

from cpt_jax.data.pipeline import iter_split_texts  # noqa: E402
from cpt_jax.data.site_corpus import source_kind  # noqa: E402
from cpt_jax.embedder import Embedder  # noqa: E402
from cpt_jax.eval.bm25 import BM25Index  # noqa: E402
from cpt_jax.eval.common import encode_checked  # noqa: E402
from cpt_jax.eval.retrieval import rank_of_gold  # noqa: E402
from cpt_jax.eval.tasks import load_pair_task  # noqa: E402

DATASET = "site_text"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories (their last checkpoint)")
    p.add_argument("--split", default="validation")
    p.add_argument("--data_dir", default="outputs/tfds")
    p.add_argument("--max_pairs", type=int, default=1000)
    p.add_argument("--max_len", type=int, default=256, help="tokens per text, as evaluate --max_len")
    args = p.parse_args()
    task = load_pair_task(DATASET, args.split, args.data_dir, args.max_pairs)
    records = iter_split_texts(DATASET, args.split, args.data_dir)
    kinds = np.array([source_kind(r["module"], "text") for _, r in zip(task.queries, records)])
    ranks = {"BM25": BM25Index(task.docs).rank_of_gold(task.queries, task.gold, exclude=task.identical)}
    for run in args.runs:
        encoder = Embedder.load(run).with_max_len(args.max_len).for_task(DATASET)
        q = encode_checked(encoder, task.queries, "query", 128)
        d = encode_checked(encoder, task.docs, "document", 128)
        ranks[os.path.basename(os.path.normpath(run))] = rank_of_gold(q, d, task.gold, exclude=task.identical)
    print(header(f"{task.name}, first {len(task.queries)} pairs, MRR by text source, scored at {args.max_len} tokens"))
    print("| source | queries | " + " | ".join(ranks) + " |")
    print("| --- | ---: |" + " ---: |" * len(ranks))
    for kind in [*sorted(set(kinds)), "all"]:
        rows = kinds == kind if kind != "all" else np.ones(len(kinds), bool)
        cells = " | ".join(f"{np.mean(1.0 / r[rows]):.4f}" for r in ranks.values())
        print(f"| {kind} | {int(rows.sum())} | {cells} |")


if __name__ == "__main__":
    main()
