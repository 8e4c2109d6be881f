"""Built-in linear-probe classification tasks, written as {"text", "label"} JSONL folders.

``stdlib_packages``: predict a standard-library function's top-level package ("email", "asyncio",
...) from its docstring. Examples are the (docstring, function) pairs of every stdlib_code split
(data/stdlib_corpus.py). Train, dev and test are disjoint by source file (``split_files``), so the
probe is scored on files it never saw and its C is chosen on other unseen files (a
cross-validation inside train would mix docstrings of one file across folds); a package with too
few files for three sides is left out. The ``classes`` packages with the most examples (at least
MIN_EXAMPLES on each side) are kept, each capped at max_train / max_held_out examples per side,
taken in sha256 order of their keys, so no class dominates. All of it is a function of the
running interpreter's standard library.

``prepare(name, data_dir)`` builds a task of CLASSIFICATION_TASKS once into
``<data_dir>/classification/<name>/`` (train.jsonl, dev.jsonl, test.jsonl and STATS_FILE) through
``atomic.staged_dir``: the folder appears whole or not at all, so an interrupted build is never
trusted later. A folder whose stats record other sizes or rules (VERSION) is rebuilt.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import platform
from typing import Any, ClassVar

from cpt_jax import atomic
from cpt_jax.typecheck import Bound, at_least, check_field_types

STDLIB_PACKAGES = "stdlib_packages"
SPLITS = ("train", "dev", "test")
HELD_OUT = {"test": 0.25, "dev": 0.15}  # target share of a package's examples, by file
MIN_EXAMPLES = {"train": 20, "dev": 5, "test": 5}
STATS_FILE = "stats.json"
VERSION = 1  # of the rules above; a folder built under another version is rebuilt

Example = dict[str, str]  # {"text", "label", "module"}


@dataclasses.dataclass(frozen=True)
class StdlibPackages:
    """The stdlib_packages task at one size (the defaults are the built-in task's).

    classes:      at most this many packages, those with the most examples.
    max_train:    training examples per class at most.
    max_held_out: dev and test examples per class at most (each).
    """

    classes: int = 15
    max_train: int = 150
    max_held_out: int = 50

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "classes": at_least(2, "a probe needs at least two classes"),
        "max_train": at_least(MIN_EXAMPLES["train"], "training examples per class; a kept class has this many"),
        "max_held_out": at_least(MIN_EXAMPLES["test"], "dev / test examples per class; a kept class has this many"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)

    def examples(self) -> dict[str, list[Example]]:
        """The task's rows from the running interpreter's standard library (build_examples)."""
        from cpt_jax.data import stdlib_corpus  # deferred: EvalSpec reads the registry names only

        pairs = [pair for split in stdlib_corpus.SPLITS for pair in stdlib_corpus.iter_code_pairs(split)]
        return build_examples(pairs, self.classes, self.max_train, self.max_held_out)


# Every built-in task, by the name `--classification` / EvalSpec.classification accept.
CLASSIFICATION_TASKS: dict[str, StdlibPackages] = {STDLIB_PACKAGES: StdlibPackages()}


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
) -> dict[str, list[Example]]:
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


def task_stats(examples: dict[str, list[Example]], task: StdlibPackages) -> dict[str, Any]:
    """Classes, counts per class and split, and the share of examples whose package is in the
    training split of stdlib_code and site_code (both split by top-level package through
    stdlib_corpus.module_split), i.e. whose docstrings contrastive training saw, without labels."""
    from cpt_jax.data import stdlib_corpus

    rows = [r for split_rows in examples.values() for r in split_rows]
    if not rows:
        raise ValueError(f"{task} kept no class: no package of this standard library has enough files and examples.")
    return {
        "task": STDLIB_PACKAGES,
        "version": VERSION,
        "sizes": dataclasses.asdict(task),
        "python": platform.python_version(),
        "classes": sorted({r["label"] for r in rows}),
        "counts": {
            split: dict(sorted(collections.Counter(r["label"] for r in split_rows).items()))
            for split, split_rows in examples.items()
        },
        "seen_in_training_fraction": sum(stdlib_corpus.module_split(r["module"]) == "train" for r in rows) / len(rows),
    }


def read_stats(folder: str) -> dict[str, Any] | None:
    """The folder's STATS_FILE, or None when it is missing or unreadable (then the folder is rebuilt)."""
    try:
        with open(os.path.join(folder, STATS_FILE), encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return stats if isinstance(stats, dict) else None


def _is_current(folder: str, stats: dict[str, Any] | None, task: StdlibPackages) -> bool:
    """Whether a folder holds the task as these rules and sizes build it, every file present."""
    return (
        stats is not None
        and stats.get("version") == VERSION
        and stats.get("sizes") == dataclasses.asdict(task)
        and all(os.path.isfile(os.path.join(folder, f"{split}.jsonl")) for split in SPLITS)
    )


def write_task(folder: str, task: StdlibPackages) -> dict[str, Any]:
    """Builds the task into ``folder`` ({train,dev,test}.jsonl of {"text", "label"}, STATS_FILE),
    replacing what it held, atomically; returns the stats (task_stats)."""
    examples = task.examples()
    stats = task_stats(examples, task)
    with atomic.staged_dir(folder) as staging:
        for split, rows in examples.items():
            with open(os.path.join(staging, f"{split}.jsonl"), "w", encoding="utf-8") as f:
                f.writelines(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows)
        with open(os.path.join(staging, STATS_FILE), "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=1)
    return stats


def ensure_task(folder: str, task: StdlibPackages) -> dict[str, Any]:
    """The stats of ``folder``, built first (write_task) unless it already holds this task."""
    stats = read_stats(folder)
    return stats if _is_current(folder, stats, task) else write_task(folder, task)


def task_dir(data_dir: str, name: str) -> str:
    """Where the built-in task ``name`` lives under a data dir."""
    return os.path.join(data_dir, "classification", name)


def prepare(name: str, data_dir: str) -> str:
    """The folder of the built-in task ``name`` under ``data_dir``, built there once (ensure_task)."""
    if name not in CLASSIFICATION_TASKS:
        raise ValueError(f"{name!r} is not a built-in classification task; choose from {tuple(CLASSIFICATION_TASKS)}.")
    folder = task_dir(data_dir, name)
    ensure_task(folder, CLASSIFICATION_TASKS[name])
    return folder
