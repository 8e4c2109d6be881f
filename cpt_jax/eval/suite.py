"""Score named encoders under one EvalSpec: pair tasks, BEIR folders, classification tasks.

Every system is an :class:`cpt_jax.eval.common.Encoder`; the baselines (BM25 for pair tasks
and BEIR, a TF-IDF bag of words fitted on each classification task's train.jsonl) are added
here when ``spec.baselines``. Results are ``{task: {system: {metric: value}}}`` in a fixed
order (pair tasks, then BEIR, then classification; the given systems, then the baseline), and
:func:`format_table` prints them as the evaluate CLI does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cpt_jax.data import builders, probe_tasks
from cpt_jax.eval.bag_of_words import TfidfEncoder
from cpt_jax.eval.beir import evaluate_beir, evaluate_beir_bm25
from cpt_jax.eval.classification import classification_files, evaluate_classification, read_labelled
from cpt_jax.eval.common import Encoder, for_task
from cpt_jax.eval.spec import EvalSpec
from cpt_jax.eval.tasks import load_pair_task, score_bm25, score_dense

Results = dict[str, dict[str, dict[str, float]]]  # {task: {system: {metric: value}}}

# System names, as they appear in results and tables (the README and RESULTS.md quote them).
TRAINED, RANDOM, BM25 = "cpt-jax (trained)", "random init", "BM25"
START = "pretrained start"  # the model a run was initialised from, as imported (its checkpoint 0)
BAG_OF_WORDS = "bag of words (TF-IDF)"
SENTENCE_TRANSFORMER = "sentence-transformers"


def _sized(metrics: Mapping[str, float], *counts: str) -> tuple[tuple[int, ...], dict[str, float]]:
    """Split size entries (e.g. num_docs) off a metrics dict: they label the task, not a system."""
    return tuple(int(metrics[c]) for c in counts), {k: v for k, v in metrics.items() if k not in counts}


def _folder_name(folder: str) -> str:
    return os.path.basename(os.path.normpath(folder))


def evaluate_pair_tasks(systems: Mapping[str, Encoder], spec: EvalSpec) -> Results:
    """Pair-task metrics of every system (and BM25), keyed "<dataset>/<split> (Q queries, D docs)"."""
    results: Results = {}
    for dataset in spec.tasks:
        builders.prepare(dataset, spec.data_dir)
        task = load_pair_task(dataset, spec.split, spec.data_dir, limit=spec.max_pairs)
        # A run with per-source instructions encodes a task with its source's (Embedder.for_task).
        scores = {name: score_dense(task, for_task(e, dataset), spec.batch_size) for name, e in systems.items()}
        if spec.baselines:
            scores[BM25] = score_bm25(task)
        results[f"{task.name} ({len(task.queries)} queries, {len(task.docs)} docs)"] = scores
    return results


def evaluate_beir_systems(systems: Mapping[str, Encoder], spec: EvalSpec) -> Results:
    """BEIR metrics of every system (and BM25) on each folder, keyed "beir:<name>/<split> (Q queries, D docs)"."""
    results: Results = {}
    for folder in spec.beir:
        scores = {}
        for name, encoder in systems.items():
            sizes, scores[name] = _sized(
                evaluate_beir(encoder, folder, spec.split, chunk_size=spec.chunk_size, batch_size=spec.batch_size),
                "num_queries", "num_docs",
            )
        if spec.baselines:
            sizes, scores[BM25] = _sized(evaluate_beir_bm25(folder, spec.split), "num_queries", "num_docs")
        results[f"beir:{_folder_name(folder)}/{spec.split} ({sizes[0]} queries, {sizes[1]} docs)"] = scores
    return results


def classification_folder(entry: str, data_dir: str) -> str:
    """The folder of one EvalSpec.classification entry: a built-in task's (built under data_dir
    when missing, probe_tasks.prepare), else the entry itself."""
    return probe_tasks.prepare(entry, data_dir) if entry in probe_tasks.CLASSIFICATION_TASKS else entry


def evaluate_classification_systems(systems: Mapping[str, Encoder], spec: EvalSpec) -> Results:
    """Linear-probe metrics of every system (and of TF-IDF vectors fitted on the task's training
    texts) on each folder or built-in task, keyed "classification:<name> (N train, M test)"."""
    results: Results = {}
    for entry in spec.classification:
        folder = classification_folder(entry, spec.data_dir)
        scores = {}
        folder_systems = dict(systems)
        if spec.baselines:
            folder_systems[BAG_OF_WORDS] = TfidfEncoder(read_labelled(classification_files(folder)["train"])[0])
        for name, encoder in folder_systems.items():
            sizes, scores[name] = _sized(
                evaluate_classification(encoder, folder, batch_size=spec.batch_size, folds=spec.folds),
                "num_train", "num_test",
            )
        results[f"classification:{_folder_name(folder)} ({sizes[0]} train, {sizes[1]} test)"] = scores
    return results


def evaluate(systems: Mapping[str, Encoder], spec: EvalSpec) -> Results:
    """``{task: {system: {metric: value}}}`` of every system on everything ``spec`` names.

    ``systems`` maps a display name to an Encoder (at least one unless ``spec.baselines``);
    the baselines' names (:data:`BM25`, :data:`BAG_OF_WORDS`) are reserved.
    """
    if not isinstance(spec, EvalSpec):
        raise TypeError(f"spec must be an EvalSpec, got {type(spec).__name__}; build one with EvalSpec(...).")
    reserved = sorted({BM25, BAG_OF_WORDS} & set(systems)) if spec.baselines else []
    if reserved:
        raise ValueError(f"systems {reserved} clash with the baselines' names; rename them or set baselines=False.")
    if not systems and not spec.baselines:
        raise ValueError("no systems to evaluate: pass at least one Encoder, or keep baselines=True.")
    missing = [name for name, e in systems.items() if not callable(getattr(e, "encode", None))]
    if missing:
        raise TypeError(f"systems {missing} have no encode(texts, side, batch_size) method; pass Encoders.")
    results = evaluate_pair_tasks(systems, spec)
    results.update(evaluate_beir_systems(systems, spec))
    results.update(evaluate_classification_systems(systems, spec))
    return results


def format_table(results: Results) -> str:
    """One block per task; its columns are the metrics its systems report, in first-seen order."""
    lines = []
    for task, scores in results.items():
        metrics = list(dict.fromkeys(m for values in scores.values() for m in values))
        widths = [max(11, len(m) + 2) for m in metrics]
        name_width = max(20, *(len(system) + 1 for system in scores))
        lines.append(task)
        lines.append(f"  {'system':<{name_width}}" + "".join(f"{m:>{w}}" for m, w in zip(metrics, widths)))
        for system, values in scores.items():
            cells = (f"{values[m]:>{w}.4f}" if m in values else f"{'-':>{w}}" for m, w in zip(metrics, widths))
            lines.append(f"  {system:<{name_width}}" + "".join(cells))
    return "\n".join(lines)
