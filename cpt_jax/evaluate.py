"""python -m cpt_jax.evaluate --checkpoint RUN_DIR — held-out search metrics beside baselines.

Pair tasks (default: code search on stdlib_code, text search on stdlib_text; ``--tasks none``
skips them) score the trained encoder, the same architecture at random initialisation, and
BM25 by exact search over the whole held-out corpus. ``--beir DIR[,DIR...]`` adds BEIR-format
folders (nDCG@10, MRR@10, Recall@100; trained, random init, BM25) and ``--classification
DIR[,DIR...]`` folders of {"text", "label"} JSONL (linear-probe accuracy and macro-F1; trained,
random init, and a TF-IDF bag of words fitted on the folder's train.jsonl). Prints a table and
writes <RUN_DIR>/eval_<split>.json (eval_<split>_step<N>.json for an explicit --step, and
eval_<split>_<dtype>.json for an explicit --dtype, e.g. --dtype bfloat16 to score the run as it
encodes in bfloat16).

``--sentence_transformer DIR`` evaluates a sentence-transformers model directory instead of a
run (an exported run reproduces the run's numbers; a published model gives a reference row),
with BM25 as the baseline; pair-task data comes from --data_dir (default outputs/tfds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping

from cpt_jax import checkpoint
from cpt_jax.data import builders
from cpt_jax.embedder import Embedder
from cpt_jax.eval.bag_of_words import TfidfEncoder
from cpt_jax.eval.beir import evaluate_beir, evaluate_beir_bm25
from cpt_jax.eval.classification import classification_files, evaluate_classification, read_labelled
from cpt_jax.eval.common import Encoder
from cpt_jax.eval.sentence_transformer import SentenceTransformerEncoder
from cpt_jax.eval.tasks import load_pair_task, score_bm25, score_dense
from cpt_jax.model.config import DTYPES
from cpt_jax.parallel import runtime

Results = dict[str, dict[str, dict[str, float]]]  # {task: {system: {metric: value}}}
TRAINED, RANDOM, BM25 = "cpt-jax (trained)", "random init", "BM25"
BAG_OF_WORDS = "bag of words (TF-IDF)"
SENTENCE_TRANSFORMER = "sentence-transformers"
DEFAULT_DATA_DIR = "outputs/tfds"


def _list(value: str) -> list[str]:
    """A comma-separated flag value; "" or "none" is the empty list."""
    return [] if value.strip().lower() in ("", "none") else [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpt_jax.evaluate", description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a training run's output_dir")
    source.add_argument(
        "--sentence_transformer", help="a sentence-transformers model directory instead (e.g. an exported run)"
    )
    p.add_argument("--output", default=None, help="results JSON (default: eval_<split>[_step<N>][_<dtype>].json in the model dir)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument(
        "--tasks", default=",".join(builders.DATASETS), help="comma-separated pair datasets; '' or 'none' for none"
    )
    p.add_argument("--beir", default="", help="comma-separated BEIR-format folders")
    p.add_argument("--classification", default="", help="comma-separated folders with train/test(/dev).jsonl")
    p.add_argument("--split", default="test", help="held-out split of the pair tasks and BEIR qrels (default: test)")
    p.add_argument("--data_dir", default=None, help="TFDS data dir (default: the run's, else outputs/tfds)")
    p.add_argument("--no_baselines", action="store_true", help="skip random init, BM25 and the bag of words")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--dtype", default=None, choices=DTYPES, help="compute dtype of --checkpoint (default: the run's)")
    p.add_argument("--chunk_size", type=int, default=10_000, help="BEIR documents encoded and searched per step")
    p.add_argument("--folds", type=int, default=5, help="classification CV folds for C when there is no dev.jsonl")
    args = p.parse_args(argv)
    if not (_list(args.tasks) or _list(args.beir) or _list(args.classification)):
        p.error("nothing to evaluate: give --tasks, --beir or --classification.")
    for folder in _list(args.beir) + _list(args.classification):
        if not os.path.isdir(folder):
            p.error(f"{folder} is not a folder.")
    if args.chunk_size < 1 or args.batch_size < 1:
        p.error("--chunk_size and --batch_size must be >= 1.")
    return args


def _sized(metrics: Mapping[str, float], *counts: str) -> tuple[tuple[int, ...], dict[str, float]]:
    """Split size entries (e.g. num_docs) off a metrics dict: they label the task, not a system."""
    return tuple(int(metrics[c]) for c in counts), {k: v for k, v in metrics.items() if k not in counts}


def evaluate_beir_systems(
    systems: Mapping[str, Encoder], folders: list[str], split: str, chunk_size: int, batch_size: int, bm25: bool
) -> Results:
    """BEIR metrics of every system (and BM25) on each folder, keyed "beir:<name>/<split> (Q queries, D docs)"."""
    results: Results = {}
    for folder in folders:
        scores = {}
        for name, encoder in systems.items():
            sizes, scores[name] = _sized(
                evaluate_beir(encoder, folder, split, chunk_size=chunk_size, batch_size=batch_size),
                "num_queries", "num_docs",
            )
        if bm25:
            sizes, scores[BM25] = _sized(evaluate_beir_bm25(folder, split), "num_queries", "num_docs")
        name = os.path.basename(os.path.normpath(folder))
        results[f"beir:{name}/{split} ({sizes[0]} queries, {sizes[1]} docs)"] = scores
    return results


def evaluate_classification_systems(
    systems: Mapping[str, Encoder], folders: list[str], batch_size: int, folds: int, bag_of_words: bool = False
) -> Results:
    """Linear-probe metrics of every system (and, with bag_of_words, of TF-IDF vectors fitted on
    the folder's training texts) on each folder, keyed "classification:<name> (N train, M test)"."""
    results: Results = {}
    for folder in folders:
        scores = {}
        folder_systems = dict(systems)
        if bag_of_words:
            folder_systems[BAG_OF_WORDS] = TfidfEncoder(read_labelled(classification_files(folder)["train"])[0])
        for name, encoder in folder_systems.items():
            sizes, scores[name] = _sized(
                evaluate_classification(encoder, folder, batch_size=batch_size, folds=folds), "num_train", "num_test"
            )
        name = os.path.basename(os.path.normpath(folder))
        results[f"classification:{name} ({sizes[0]} train, {sizes[1]} test)"] = scores
    return results


def evaluate(args: argparse.Namespace) -> Results:
    """{task: {system: {metric: value}}} for the pair tasks, BEIR folders and classification folders.

    ``args`` as from :func:`parse_args`; a namespace without the BEIR / classification
    fields (built for the pair tasks alone) still works.
    """
    tasks = _list(args.tasks)
    beir = _list(getattr(args, "beir", ""))
    classification = _list(getattr(args, "classification", ""))
    systems: dict[str, Encoder] = {}
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    if getattr(args, "sentence_transformer", None):
        systems[SENTENCE_TRANSFORMER] = SentenceTransformerEncoder(args.sentence_transformer)
    else:
        trained = systems[TRAINED] = Embedder.load(args.checkpoint, args.step, getattr(args, "dtype", None))
        if not args.no_baselines:
            systems[RANDOM] = Embedder.random_init(trained.model, trained.tokenizer, trained.max_len)
        if tasks and not args.data_dir:
            _, meta = checkpoint.read_meta(args.checkpoint, args.step)
            data_dir = meta["data_config"].get("data_dir", data_dir)
    results: Results = {}
    for dataset in tasks:
        builders.prepare(dataset, data_dir)
        task = load_pair_task(dataset, args.split, data_dir)
        scores = {
            name: score_dense(task, lambda texts, side, e=e: e.encode(texts, side, args.batch_size))
            for name, e in systems.items()
        }
        if not args.no_baselines:
            scores[BM25] = score_bm25(task)
        results[f"{task.name} ({len(task.queries)} queries, {len(task.docs)} docs)"] = scores
    chunk_size = getattr(args, "chunk_size", 10_000)
    results.update(
        evaluate_beir_systems(systems, beir, args.split, chunk_size, args.batch_size, not args.no_baselines)
    )
    results.update(
        evaluate_classification_systems(
            systems, classification, args.batch_size, getattr(args, "folds", 5), bag_of_words=not args.no_baselines
        )
    )
    return results


def format_table(results: Results) -> str:
    """One block per task; its columns are the metrics its systems report, in first-seen order."""
    lines = []
    for task, scores in results.items():
        metrics = list(dict.fromkeys(m for values in scores.values() for m in values))
        widths = [max(11, len(m) + 2) for m in metrics]
        lines.append(task)
        lines.append(f"  {'system':<20}" + "".join(f"{m:>{w}}" for m, w in zip(metrics, widths)))
        for system, values in scores.items():
            cells = (f"{values[m]:>{w}.4f}" if m in values else f"{'-':>{w}}" for m, w in zip(metrics, widths))
            lines.append(f"  {system:<20}" + "".join(cells))
    return "\n".join(lines)


def output_path(args: argparse.Namespace) -> str:
    """eval_<split>.json beside the model; eval_<split>_step<N>.json for an explicit --step, _<dtype> for --dtype."""
    suffix = f"_step{args.step}" if args.step is not None else ""
    suffix += f"_{args.dtype}" if getattr(args, "dtype", None) else ""
    return os.path.join(args.checkpoint or args.sentence_transformer, f"eval_{args.split}{suffix}.json")


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    runtime.enable_compilation_cache(runtime.default_compilation_cache_dir())
    runtime.print_malloc_advice()
    results = evaluate(args)
    print(format_table(results), flush=True)
    path = args.output or output_path(args)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
