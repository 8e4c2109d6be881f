"""What an evaluation scores: the pair tasks, BEIR folders and classification tasks, and how.

`EvalSpec` is frozen and checked when built: each bad field raises an error that names the
field (``EvalSpec.<field>=<value>``) and what to pass instead, so a CLI can show it as is.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import ClassVar

from cpt_jax.data.probe_tasks import CLASSIFICATION_TASKS
from cpt_jax.typecheck import Bound, at_least, check_field_types

DEFAULT_DATA_DIR = "outputs/tfds"


def pair_datasets(every: bool = False) -> tuple[str, ...]:
    """The default pair tasks (the stdlib datasets), or with `every` all the built-in prepared pair
    datasets a task can name (imports TFDS, hence not at import time)."""
    from cpt_jax.data import builders

    return tuple(builders.BUILT_IN if every else builders.DATASETS)


def _as_tuple(spec: EvalSpec, name: str) -> tuple[str, ...]:
    """The field as a tuple of non-empty strings (a list is accepted; a bare string is not)."""
    value = getattr(spec, name)
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise TypeError(
            f"EvalSpec.{name}={value!r} must be a tuple of strings, e.g. {name}=({value!r},); "
            f"pass {name}=() for none."
        )
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        raise TypeError(f"EvalSpec.{name} holds {bad!r}; every entry must be a non-empty string.")
    if len(set(value)) != len(value):
        raise ValueError(f"EvalSpec.{name}={tuple(value)!r} names an entry twice; list each once.")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """One evaluation: what to score and the settings every system is scored under.

    tasks:          pair datasets (x -> y search over a held-out split), e.g. ("stdlib_code",);
                    default: every dataset cpt_jax.data.builders provides; () for none.
    data_dir:       the TFDS data dir holding (or to prepare) the pair datasets.
    split:          the held-out split of the pair tasks and the BEIR qrels file.
    beir:           BEIR-format folders (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
    classification: folders with train.jsonl, test.jsonl (and dev.jsonl) of {"text", "label"}, or
                    names of built-in tasks (cpt_jax.data.probe_tasks.CLASSIFICATION_TASKS, e.g.
                    "stdlib_packages"), built once under <data_dir>/classification/<name>/. A
                    built-in name always means the built-in task (write ./NAME for a folder of it).
    baselines:      add BM25 (pair tasks, BEIR) and a TF-IDF bag of words (classification).
    batch_size:     texts per encode call.
    chunk_size:     BEIR documents encoded and searched per step (bounds memory).
    folds:          classification cross-validation folds for C when a folder has no dev.jsonl.
    max_pairs:      score each pair task on the first N pairs of its split (None: all of them). A
                    prepared split is stored in a fixed hash order of its keys, so its first N pairs
                    are a deterministic sample across its packages, the same for every system.
    """

    tasks: tuple[str, ...] = dataclasses.field(default_factory=pair_datasets)
    data_dir: str = DEFAULT_DATA_DIR
    split: str = "test"
    beir: tuple[str, ...] = ()
    classification: tuple[str, ...] = ()
    baselines: bool = True
    batch_size: int = 128
    chunk_size: int = 10_000
    folds: int = 5
    max_pairs: int | None = None

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "batch_size": at_least(1, "texts per encode call"),
        "chunk_size": at_least(1, "BEIR documents encoded and searched per step"),
        "folds": at_least(2, "cross-validation needs at least two folds"),
        "max_pairs": at_least(1, "pairs scored per pair task; None for the whole split"),
    }

    def __post_init__(self) -> None:
        check_field_types(self)  # types, then the BOUNDS above
        for name in ("tasks", "beir", "classification"):
            object.__setattr__(self, name, _as_tuple(self, name))
        for name in ("data_dir", "split"):
            if not getattr(self, name).strip():
                raise ValueError(f"EvalSpec.{name}={getattr(self, name)!r} is empty; give a {name}.")
        if not (self.tasks or self.beir or self.classification):
            raise ValueError(
                "EvalSpec: nothing to evaluate; tasks, beir and classification are all empty. "
                "Name at least one pair dataset, BEIR folder, or classification folder or task."
            )
        self._check_folders()
        self._check_tasks()

    def _check_folders(self) -> None:
        for folder in self.beir:
            if not os.path.isdir(folder):
                raise ValueError(f"EvalSpec.beir: {folder} is not a folder; pass an existing directory.")
        built_in = tuple(CLASSIFICATION_TASKS)
        for entry in self.classification:
            if entry not in built_in and not os.path.isdir(entry):
                close = difflib.get_close_matches(entry, built_in, n=1)
                raise ValueError(
                    f"EvalSpec.classification: {entry} is neither an existing folder nor a built-in task; pass "
                    f"a folder with train.jsonl and test.jsonl (and dev.jsonl) of {{\"text\", \"label\"}}, or one "
                    f"of the built-in tasks {built_in}." + (f" Did you mean {close[0]!r}?" if close else "")
                )

    def _check_tasks(self) -> None:
        if not self.tasks:
            return
        known = pair_datasets(every=True)
        unknown = [t for t in self.tasks if t not in known]
        if unknown:
            raise ValueError(
                f"EvalSpec.tasks: unknown pair dataset(s) {unknown}; choose from {known}, or () for none."
            )
