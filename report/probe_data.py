"""The linear-probe task: a standard-library function's top-level package from its docstring.

Examples are the (docstring, function) pairs of every stdlib_code split (data/stdlib_corpus.py);
the text is the docstring, the label its top-level package ("email", "asyncio", ...). Train,
dev and test are disjoint by source file (``split_files``), so the probe is scored on files it
never saw and its C is chosen on other unseen files (a cross-validation inside train would mix
docstrings of one file across folds); a package with too few files for three sides is left out.
The `classes` packages with the most examples (at least MIN_EXAMPLES on each side) are kept,
each capped at max_train / max_held_out examples per side, taken in sha256 order of their keys,
so no class dominates. All of it is a function of the running interpreter's standard library.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from typing import Any

from cpt_jax.data import stdlib_corpus

TASK_NAME = "stdlib_packages"
SPLITS = ("train", "dev", "test")
HELD_OUT = {"test": 0.25, "dev": 0.15}  # target share of a package's examples, by file
MIN_EXAMPLES = {"train": 20, "dev": 5, "test": 5}


def _order(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_files(examples_per_file: dict[str, int]) -> dict[str, str]:
    """The held-out side ("test" or "dev") of each file of one package that gets one; the others
    are train. Files are taken in sha256 order; each goes to the held-out side furthest below
    its HELD_OUT share of the package's examples that it keeps under twice that share."""
    total = sum(examples_per_file.values())
    held = dict.fromkeys(HELD_OUT, 0)
    sides = {}
    for name in sorted(examples_per_file, key=_order):
        n = examples_per_file[name]
        fits = [s for s, share in HELD_OUT.items() if held[s] < share * total and held[s] + n <= 2 * share * total]
        if fits:
            side = max(fits, key=lambda s: 1 - held[s] / (HELD_OUT[s] * total))  # ties: the first (test)
            sides[name] = side
            held[side] += n
    return sides


def build_examples(
    pairs: list[tuple[str, dict[str, str]]], classes: int, max_train: int, max_held_out: int
) -> dict[str, list[dict[str, str]]]:
    """``{"train": [...], "dev": [...], "test": [...]}`` of ``{"text", "label", "module"}`` rows from
    ``(key, {"x", "module"})`` pairs; see the module docstring for the rules."""
    by_package: dict[str, list[tuple[str, dict[str, str]]]] = collections.defaultdict(list)
    for key, pair in pairs:
        by_package[pair["module"].split(".", 1)[0]].append((key, pair))
    splits: dict[str, dict[str, list[tuple[str, dict[str, str]]]]] = {}
    for package, items in by_package.items():
        held_out = split_files(collections.Counter(pair["module"] for _, pair in items))
        sides: dict[str, list[tuple[str, dict[str, str]]]] = {split: [] for split in SPLITS}
        for key, pair in sorted(items, key=lambda item: _order(item[0])):
            sides[held_out.get(pair["module"], "train")].append((key, pair))
        if all(len(sides[split]) >= MIN_EXAMPLES[split] for split in SPLITS):
            splits[package] = sides
    kept = sorted(splits, key=lambda p: (-sum(len(s) for s in splits[p].values()), p))[:classes]
    caps = {"train": max_train, "dev": max_held_out, "test": max_held_out}
    return {
        split: [
            {"text": pair["x"], "label": package, "module": pair["module"]}
            for package in sorted(kept)
            for _, pair in splits[package][split][: caps[split]]
        ]
        for split in SPLITS
    }


def write_task(out_dir: str, classes: int, max_train: int, max_held_out: int) -> tuple[str, dict[str, Any]]:
    """Builds the task from the stdlib into ``<out_dir>/<TASK_NAME>/{train,dev,test}.jsonl``; returns
    the folder and its statistics (counts per class and split, and the share of examples whose
    package is in stdlib_code's training split, i.e. whose docstrings contrastive training saw)."""
    pairs = [pair for split in stdlib_corpus.SPLITS for pair in stdlib_corpus.iter_code_pairs(split)]
    examples = build_examples(pairs, classes, max_train, max_held_out)
    folder = os.path.join(out_dir, TASK_NAME)
    os.makedirs(folder, exist_ok=True)
    for split, rows in examples.items():
        with open(os.path.join(folder, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows)
    rows = [r for split_rows in examples.values() for r in split_rows]
    stats = {
        "task": TASK_NAME,
        "classes": sorted({r["label"] for r in rows}),
        "counts": {
            split: dict(sorted(collections.Counter(r["label"] for r in split_rows).items()))
            for split, split_rows in examples.items()
        },
        "seen_in_training_fraction": sum(stdlib_corpus.module_split(r["module"]) == "train" for r in rows) / len(rows),
    }
    return folder, stats
